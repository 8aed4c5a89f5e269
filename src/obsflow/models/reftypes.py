"""The reference types and the ``ANY`` selector, without numpy or astropy.

Part of the reference-file layout of :mod:`obsflow.models.reffiles` (which
re-exports both and builds its :data:`~obsflow.models.reffiles.LAYOUTS` on
:data:`REFTYPES`), apart so that listing and choosing reference files
(``obsflow refs best``) need not import the FITS reader.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["ANY", "REFTYPES"]

ANY = "ANY"
"""FILTER / READPATT value of a file that applies to every filter / readout pattern."""

REFTYPES: Mapping[str, str] = MappingProxyType({
    "SUPERBIAS": "SCI", "DARK": "SCI", "GAIN": "SCI", "READNOISE": "SCI", "SATURATION": "SCI",
    "FLAT": "SCI", "MASK": "DQ", "LINEARITY": "COEFFS", "PHOTOM": "PHOTOM",
    "ASTROCAT": "ASTROCAT",
})
"""REFTYPE -> name of the extension holding its data."""
