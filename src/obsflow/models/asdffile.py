"""Products as pure ASDF files: the same content as the FITS product, in ASDF.

:func:`write_asdf_copy` writes beside a FITS product (``x_cal.fits``) its
ASDF form (``x_cal.asdf``): the tree of its ``ASDF`` extension
(:func:`obsflow.models.asdfmeta.product_tree`: ``meta`` with the gwcs
``meta.wcs`` where the product has a celestial WCS) with the arrays
themselves instead of references to FITS extensions, and every primary
keyword under ``extra_fits.PRIMARY.header`` (``[keyword, value, comment]``
rows, stdatamodels' place for keywords its schema does not define), so
nothing of the FITS form is lost.  ``asdf.open`` and
``stdatamodels.jwst.datamodels.open`` read it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from obsflow.fileio import Written, atomic_path, sha256_file
from obsflow.models.asdfmeta import ASDF_EXTNAME, asdf_file, product_tree
from obsflow.models.fitsfile import open_fits
from obsflow.models.gwcsmodel import gwcs_from_fits

__all__ = ["asdf_name", "write_asdf_copy"]


def asdf_name(fits_path: Path) -> Path:
    """``x_cal.fits`` -> ``x_cal.asdf``."""
    return Path(fits_path).with_suffix(".asdf")


def _tree(hdul: fits.HDUList) -> dict[str, Any]:
    headers = [h.header for h in hdul if h.name != ASDF_EXTNAME]
    sci = hdul["SCI"].header if "SCI" in hdul else None
    extra: dict[str, Any] = {}
    if sci is not None and str(sci.get("CTYPE1", "")).startswith("RA---TAN"):
        extra["wcs"] = gwcs_from_fits(WCS(sci, naxis=2))
    tree = product_tree(headers, extra)
    for index, hdu in enumerate(hdul):
        if index and hdu.is_image and hdu.data is not None:
            key = "data" if hdu.name == "SCI" else hdu.name.lower()
            tree[key] = np.ascontiguousarray(hdu.data)  # native order, scaling applied
    tree["extra_fits"] = {"PRIMARY": {"header": [
        [card.keyword, card.value, card.comment] for card in hdul[0].header.cards
        if card.keyword not in ("", "COMMENT", "HISTORY", "CHECKSUM", "DATASUM")]}}
    return tree


def write_asdf_copy(fits_path: Path, path: Path | None = None) -> Written:
    """Write the ASDF form of the FITS product ``fits_path`` atomically (default name:
    :func:`asdf_name`); its path, sha256 and size.

    Raises
    ------
    ProductFileError
        ``fits_path`` is not a whole FITS file.
    """
    path = asdf_name(fits_path) if path is None else Path(path)
    with open_fits(Path(fits_path), "a FITS product") as hdul:
        tree = _tree(hdul)
        af = asdf_file(tree)
        with atomic_path(path) as tmp:
            af.write_to(tmp)
    return Written(path, sha256_file(path), path.stat().st_size)
