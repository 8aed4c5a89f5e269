"""Keep freed memory in the process, so each exposure does not pay the kernel to map it again.

A calibration job allocates and frees a few hundred MB of arrays per
exposure (cubes, rate images, their FITS copies).  glibc's ``malloc`` gives
blocks above ``M_MMAP_THRESHOLD`` back to the kernel on ``free`` and trims
the heap's top above ``M_TRIM_THRESHOLD``; the next exposure then maps the
same memory again and takes a page fault for every 4 KiB page it touches
(about 100,000 per full-frame exposure: a third of a second of system time
on one core).  :func:`keep_freed_memory` raises both thresholds for the
life of a worker process, so freed arrays stay in the heap for the next job.
The process's peak is unchanged (it is the same arrays); its resident size
stays at that peak between jobs instead of dropping.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD_BYTES = 32 * 2**20
"""Blocks at least this large still come from ``mmap`` (and go back on free): 32 MiB, the
largest glibc accepts, so a job's full-frame planes (16 MiB) are reused."""


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory (never trim the heap; mmap only blocks of
    32 MiB and more); whether it took.  A no-op returning False off glibc (macOS, musl)."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    trimmed = mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    mapped = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    return bool(trimmed and mapped)
