"""Compiled pass over an array's 32-bit words for FITS writers: big-endian copy and DATASUM.

Kept apart from :mod:`obsflow.fitschecksum` so that importing that module
(products, the CLI) does not import numba; writers call it lazily.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def swapped_words_sum(words: np.ndarray, flip: np.uint32, out: np.ndarray) -> np.uint64:
    """Write ``words ^ flip`` (1-D uint32, native order) byte-swapped into ``out`` and return
    the plain sum of ``words ^ flip`` (uint64): the value of the big-endian 32-bit words
    ``out`` holds, summed as the FITS DATASUM sums them before folding the carries.

    One read of ``words`` and one write of ``out`` instead of numpy's byte swap, then a
    second pass summing a big-endian view.  Exact for up to 2**32 words.
    """
    total = np.uint64(0)
    for i in range(words.size):
        w = words[i] ^ flip
        total += np.uint64(w)
        out[i] = (((w >> np.uint32(24)) & np.uint32(0xFF))
                  | ((w >> np.uint32(8)) & np.uint32(0xFF00))
                  | ((w << np.uint32(8)) & np.uint32(0xFF0000))
                  | (w << np.uint32(24)))
    return total
