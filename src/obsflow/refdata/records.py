"""A reference file as the selection rules see it (:class:`RefRecord`), without astropy.

Defined here, apart from :mod:`obsflow.refdata.validate` (which reads FITS
files), so that listing contexts and choosing files (``obsflow refs best``)
import neither astropy nor numpy; :mod:`obsflow.refdata.validate` re-exports
it (and ``ANY`` and ``REFTYPES``, from :mod:`obsflow.models.reftypes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from obsflow.models.reftypes import ANY, REFTYPES

__all__ = ["ANY", "REFTYPES", "RefRecord"]


@dataclass(frozen=True)
class RefRecord:
    """One reference file as the selection rules see it (a registry row or a scanned file).

    ``filter`` and ``readpatt`` are ``ANY`` when the file applies to all;
    ``useafter`` is an ISO UTC string; ``delivered`` the delivery time (ISO
    UTC, empty for unregistered files); ``path`` where the file is now.
    """

    reftype: str
    telescope: str
    instrument: str
    detector: str
    filter: str
    readpatt: str
    subarray: str
    useafter: str
    delivered: str
    name: str
    path: Path
    sha256: str
    pedigree: str = ""
    description: str = ""
