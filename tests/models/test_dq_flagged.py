"""DQ flag tests on the flags themselves and on DQ as a FITS file stores it (memory-mapped,
unscaled: int32 with BZERO 2^31)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from obsflow.exceptions import DataModelError
from obsflow.models.dq import DQ, NO_SCIENCE, flagged


def _dq() -> np.ndarray:
    values = [0, DQ.DO_NOT_USE, DQ.REFERENCE_PIXEL, DQ.REFERENCE_PIXEL | DQ.JUMP_DET,
              DQ.NON_SCIENCE, DQ.SATURATED, DQ.OUTLIER | DQ.DO_NOT_USE, 0xFFFFFFFF]
    return np.array(values, np.uint64).astype(np.uint32).reshape(2, 4)


def test_flags_and_their_stored_form_agree(tmp_path: Path) -> None:
    dq = _dq()
    path = tmp_path / "dq.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(dq, name="DQ")]).writeto(path)
    with fits.open(path, memmap=True, do_not_scale_image_data=True) as hdul:
        stored = np.array(hdul["DQ"].data)
    assert stored.dtype.kind == "i" and stored.dtype.itemsize == 4  # (the stored form)
    for bits in (NO_SCIENCE, DQ.REFERENCE_PIXEL, DQ.DO_NOT_USE, DQ.JUMP_DET | DQ.SATURATED):
        # the truth from Python integers, bit by bit
        expect = np.array([[int(v) & int(bits) != 0 for v in row] for row in dq.tolist()])
        np.testing.assert_array_equal(flagged(dq, bits), expect)
        np.testing.assert_array_equal(flagged(stored, bits), expect)
    # NO_SCIENCE: DO_NOT_USE, NON_SCIENCE and reference pixels, nothing else
    np.testing.assert_array_equal(flagged(dq, NO_SCIENCE),
                                  [[False, True, True, True], [True, False, True, True]])


def test_other_dtypes_are_a_clear_error() -> None:
    with pytest.raises(DataModelError, match="DQ must be"):
        flagged(np.zeros(3, np.float32), DQ.DO_NOT_USE)
