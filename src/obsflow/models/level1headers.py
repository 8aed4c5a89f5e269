"""A Level-1 product's exposure metadata read from its headers without astropy.

For ``obsflow refs best``, which needs a product's selectors (telescope,
instrument, detector, filter, readout pattern, subarray, EXPSTART) and
nothing of its data.  :func:`level1_meta` reads the headers with
:func:`obsflow.models.fitsheaders.read_headers` and returns the
:class:`~obsflow.models.metadata.ExposureMeta` only when they are plainly a
Level-1 product's: the header checks of :func:`obsflow.models.level1.check_uncal`
all pass (product kind and data model, every exposure keyword with its type,
positive sizes, SCI uint16 of the announced shape, GROUPDQ uint8 of the same).
Otherwise it returns None and the caller reads the product with
:func:`~obsflow.models.level1.read_uncal`, which says what is wrong, as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from obsflow.exceptions import DataModelError
from obsflow.models.fitsheaders import read_headers
from obsflow.models.metadata import ExposureMeta, header_keywords

__all__ = ["level1_meta"]

_DATAMODELS = (None, "RampModel", "Level1")
"""``DATAMODL`` values of a Level-1 product (as :data:`obsflow.models.level1.UNCAL_DATAMODEL`,
and ``Level1`` in older files)."""


def _typed(value: Any, wanted: type | tuple[type, ...]) -> bool:
    """The rule of :func:`obsflow.models.fitsfile.require_keywords` (an int is a float)."""
    types = wanted if isinstance(wanted, tuple) else (wanted,)
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types) or (float in types and isinstance(value, int))


def _shape(header: dict[str, Any]) -> tuple[int, ...]:
    naxis = int(header.get("NAXIS", 0))
    return tuple(int(header.get(f"NAXIS{k}", 0)) for k in range(naxis, 0, -1))


def _plainly_level1(headers: list[dict[str, Any]]) -> bool:
    primary = headers[0]
    if primary.get("PRODKIND", "uncal") != "uncal" or primary.get("DATAMODL") not in _DATAMODELS:
        return False
    if not all(key in primary and _typed(primary[key], wanted)
               for key, wanted in header_keywords().items()):
        return False
    expected = tuple(primary[k] for k in ("NINTS", "NGROUPS", "SUBSIZE2", "SUBSIZE1"))
    if min(expected) < 1:
        return False
    named = {h.get("EXTNAME"): h for h in reversed(headers[1:])}  # the first of a name wins
    sci, dq = named.get("SCI"), named.get("GROUPDQ")
    if sci is None or (sci.get("BITPIX"), sci.get("BZERO", 0), sci.get("BSCALE", 1)) != (16, 32768, 1):
        return False
    if _shape(sci) != expected:
        return False
    return dq is None or (dq.get("BITPIX") == 8 and _shape(dq) == expected)


def level1_meta(path: Path) -> ExposureMeta | None:
    """The exposure metadata of the Level-1 product ``path``, or None (see the module
    docstring: read the product with :func:`~obsflow.models.level1.read_uncal`)."""
    headers = read_headers(Path(path))
    if not headers or not _plainly_level1(headers):
        return None
    try:
        return ExposureMeta.from_header(headers[0])
    except (DataModelError, TypeError):
        return None
