"""Data-quality flags: the JWST bit values, defined once.

Products store these bits in ``DQ`` (pixel) and ``GROUPDQ`` (per group)
arrays so that the community's tools (stcal, jwst, ds9 region scripts) read
them unchanged.  Import :class:`DQ` everywhere a flag is needed; never write
the numbers again.
"""

from __future__ import annotations

import enum

import numpy as np

from obsflow.exceptions import DataModelError

__all__ = ["DQ", "NO_SCIENCE", "flagged"]


class DQ(enum.IntFlag):
    """JWST data-quality bits (``stdatamodels.jwst.datamodels.dqflags``)."""

    GOOD = 0
    DO_NOT_USE = 1 << 0
    SATURATED = 1 << 1
    JUMP_DET = 1 << 2
    DROPOUT = 1 << 3
    OUTLIER = 1 << 4
    PERSISTENCE = 1 << 5
    AD_FLOOR = 1 << 6
    CHARGELOSS = 1 << 7
    UNRELIABLE_ERROR = 1 << 8
    NON_SCIENCE = 1 << 9
    DEAD = 1 << 10
    HOT = 1 << 11
    WARM = 1 << 12
    LOW_QE = 1 << 13
    RC = 1 << 14
    TELEGRAPH = 1 << 15
    NONLINEAR = 1 << 16
    BAD_REF_PIXEL = 1 << 17
    NO_FLAT_FIELD = 1 << 18
    NO_GAIN_VALUE = 1 << 19
    NO_LIN_CORR = 1 << 20
    NO_SAT_CHECK = 1 << 21
    UNRELIABLE_BIAS = 1 << 22
    UNRELIABLE_DARK = 1 << 23
    UNRELIABLE_SLOPE = 1 << 24
    UNRELIABLE_FLAT = 1 << 25
    OPEN = 1 << 26
    ADJ_OPEN = 1 << 27
    FLUX_ESTIMATED = 1 << 28
    MSA_FAILED_OPEN = 1 << 29
    OTHER_BAD_PIXEL = 1 << 30
    REFERENCE_PIXEL = 1 << 31


NO_SCIENCE = DQ.DO_NOT_USE | DQ.NON_SCIENCE | DQ.REFERENCE_PIXEL
"""Pixels that hold no usable sky: what resampling, sky matching and source finding leave
out (a reference pixel is ~0 and, without DO_NOT_USE, would otherwise read as dark sky)."""

_TOP = 1 << 31


def flagged(dq: np.ndarray, bits: int) -> np.ndarray:
    """True where ``dq`` has any of ``bits`` set.

    ``dq`` is either the flags themselves (unsigned) or a DQ array as a FITS file stores it
    and a memory map without scaling reads it (``int32`` with ``BZERO`` = 2^31: the stored
    number is the flags minus 2^31, i.e. their top bit flipped and every other bit as is), so
    a signed array is taken to be that stored form: its top flag is set where it is >= 0.
    """
    a = np.asarray(dq)
    if a.dtype.kind == "u":
        return np.asarray((a & a.dtype.type(bits)) != 0)
    if a.dtype.kind != "i" or a.dtype.itemsize != 4:
        raise DataModelError(f"DQ must be an unsigned or a stored int32 array, got {a.dtype}")
    out = np.asarray((a & np.int32(bits & (_TOP - 1))) != 0)
    if bits & _TOP:
        out |= a >= 0
    return out
