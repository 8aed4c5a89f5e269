"""Opening a product's FITS file with one clear error when it is not one.

:func:`open_fits` refuses, before any data is read, a file that is empty,
not FITS, or shorter than its headers say (a truncated copy);
:func:`require_keywords` checks a header has the keywords a reader needs,
with the right types.  Every refusal is a
:class:`~obsflow.exceptions.ProductFileError` whose message names the file,
the HDU or keyword, and what was expected, in one line.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path

from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning

from obsflow.exceptions import ObsflowError, ProductFileError

__all__ = ["BLOCK_BYTES", "hdu_names", "open_fits", "require_keywords"]

BLOCK_BYTES = 2880
"""A FITS file is a whole number of 2880-byte blocks."""

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a logical (T/F)"}


def _first_sentence(exc: BaseException) -> str:
    return str(exc).split(". ")[0].rstrip(".") or type(exc).__name__


def open_fits(path: Path, expected: str,
              error: type[ObsflowError] = ProductFileError) -> fits.HDUList:
    """Open ``path`` (every header read, no data yet), checking it is a whole FITS file.

    Parameters
    ----------
    path : Path
        The file.
    expected : str
        What the caller expects, for the message, e.g. ``"a Level-1 _uncal.fits product"``.
    error : type
        The error to raise (default :class:`ProductFileError`; reference
        files use :class:`~obsflow.exceptions.ReferenceFileError`).

    Returns
    -------
    astropy.io.fits.HDUList
        Open; use it in a ``with`` block.

    Raises
    ------
    error
        The file cannot be read, is empty, is not FITS, or is truncated
        (its size is not a whole number of 2880-byte blocks, or an HDU's
        data runs past its end).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}; expected {expected}") from exc
    if size == 0:
        raise error(f"{path}: empty file (0 bytes); expected {expected}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)  # truncation is checked below
            hdul = fits.open(path, memmap=False, lazy_load_hdus=False)
    except OSError as exc:
        raise error(f"{path}: not a FITS file ({_first_sentence(exc)}); "
                    f"expected {expected}") from exc
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise error(f"{path}: unreadable FITS headers ({_first_sentence(exc)}); "
                    f"expected {expected}") from exc
    last = hdul.fileinfo(len(hdul) - 1)  # HDUs follow one another: the last one ends the file
    end = last["datLoc"] + last["datSpan"]  # (one call: each fileinfo walks every HDU)
    if size % BLOCK_BYTES or end > size:
        hdul.close()
        raise error(f"{path}: truncated: {size} bytes, expected a whole number of "
                    f"{BLOCK_BYTES}-byte FITS blocks holding every HDU's data "
                    f"({max(end, math.ceil(size / BLOCK_BYTES) * BLOCK_BYTES)} bytes at least)")
    return hdul


def hdu_names(hdul: fits.HDUList) -> str:
    """The HDU names of a file, comma-separated (for messages)."""
    return ", ".join(hdu.name or f"#{k}" for k, hdu in enumerate(hdul))


def require_keywords(header: fits.Header, where: str,
                     keywords: Mapping[str, type | tuple[type, ...]]) -> None:
    """Check ``header`` holds every keyword of ``keywords`` with a value of its type.

    An integer is accepted where a number (float) is expected; a logical is
    never taken for a number.  ``where`` names the file and HDU, e.g.
    ``"x_uncal.fits: PRIMARY header"``.

    Raises
    ------
    ProductFileError
        Keywords are missing (all are listed) or one has a value of another type.
    """
    missing = [key for key in keywords if key not in header]
    if len(missing) > 3:
        raise ProductFileError(f"{where}: missing {len(missing)} of the {len(keywords)} "
                               f"keywords expected ({', '.join(missing)})")
    if missing:
        raise ProductFileError(f"{where}: missing keyword{'s' * (len(missing) > 1)} "
                               f"{', '.join(missing)}; expected "
                               + "; ".join(f"{k} = {_TYPE_NAMES[_main_type(keywords[k])]}"
                                           for k in missing))
    for key, wanted in keywords.items():
        value = header[key]
        types = wanted if isinstance(wanted, tuple) else (wanted,)
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if float in types and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise ProductFileError(f"{where}: keyword {key} = {value!r}: expected "
                                   f"{_TYPE_NAMES[_main_type(wanted)]}")


def _main_type(wanted: type | tuple[type, ...]) -> type:
    return wanted[0] if isinstance(wanted, tuple) else wanted
