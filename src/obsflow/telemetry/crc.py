"""CRC-16/CCITT-FALSE, the packet trailer checksum.

Parameters of the CRC (the "CRC-16/CCITT-FALSE", a.k.a. "CRC-16/IBM-3740",
catalogue entry): polynomial ``0x1021``, initial value ``0xFFFF``, no input or
output reflection, final XOR ``0x0000``; check value ``crc16(b"123456789") ==
0x29B1``.

The kernels are compiled with numba and use slicing-by-8 tables (eight table
look-ups per 8 input bytes), which runs at well over 1 GB/s on one core.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

from obsflow.exceptions import TelemetryError, TelemetryTypeError

__all__ = ["CRC16_INIT", "CRC16_POLY", "crc16", "crc16_many"]

CRC16_POLY = 0x1021
"""Generator polynomial of CRC-16/CCITT-FALSE (x^16 + x^12 + x^5 + 1)."""
CRC16_INIT = 0xFFFF
"""Initial register value of CRC-16/CCITT-FALSE."""


def _make_tables() -> npt.NDArray[np.uint16]:
    """Build the slicing-by-8 look-up tables.

    Returns
    -------
    numpy.ndarray
        Shape (8, 256), uint16. ``tables[k, x]`` is the CRC register (started
        at zero) after processing byte ``x`` followed by ``k`` zero bytes.
    """
    tables = np.zeros((8, 256), dtype=np.uint16)
    for x in range(256):
        reg = x << 8
        for _ in range(8):
            reg = ((reg << 1) ^ CRC16_POLY) if reg & 0x8000 else (reg << 1)
            reg &= 0xFFFF
        tables[0, x] = reg
    for k in range(1, 8):
        prev = tables[k - 1].astype(np.int64)
        tables[k] = ((prev << 8) & 0xFFFF) ^ tables[0][prev >> 8]
    return tables


_TABLES = _make_tables()

_Int = int | np.integer[Any]
"""Integer scalar accepted by the numba kernels (Python int or numpy integer)."""


@njit(cache=True, nogil=True)
def _crc16_span(buf: np.ndarray, start: _Int, stop: _Int, init: _Int) -> np.int64:  # pragma: no cover
    """CRC of ``buf[start:stop]`` (numba kernel, no bounds checks)."""
    t = _TABLES
    crc = np.int64(init)
    i = np.int64(start)
    end8 = stop - 7
    while i < end8:
        b0 = np.int64(buf[i]) ^ (crc >> 8)
        b1 = np.int64(buf[i + 1]) ^ (crc & 0xFF)
        crc = (
            np.int64(t[7, b0])
            ^ np.int64(t[6, b1])
            ^ np.int64(t[5, buf[i + 2]])
            ^ np.int64(t[4, buf[i + 3]])
            ^ np.int64(t[3, buf[i + 4]])
            ^ np.int64(t[2, buf[i + 5]])
            ^ np.int64(t[1, buf[i + 6]])
            ^ np.int64(t[0, buf[i + 7]])
        )
        i += 8
    while i < stop:
        idx = ((crc >> 8) ^ np.int64(buf[i])) & 0xFF
        crc = ((crc << 8) & 0xFFFF) ^ np.int64(t[0, idx])
        i += 1
    return crc


@njit(cache=True, nogil=True)
def _crc16_many_kernel(
    buf: np.ndarray, offsets: np.ndarray, lengths: np.ndarray
) -> np.ndarray:  # pragma: no cover
    """CRC of each ``buf[offsets[i] : offsets[i] + lengths[i]]`` (numba kernel)."""
    out = np.empty(offsets.size, dtype=np.uint16)
    for k in range(offsets.size):
        out[k] = _crc16_span(buf, offsets[k], offsets[k] + lengths[k], 0xFFFF)
    return out


def _as_byte_array(data: bytes | bytearray | memoryview | np.ndarray) -> npt.NDArray[np.uint8]:
    """View bytes-like data or a uint8 array as a 1-D uint8 array (no copy if possible)."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise TelemetryTypeError(f"expected a uint8 array, got dtype {data.dtype}")
        return np.ascontiguousarray(data).reshape(-1)
    return np.frombuffer(data, dtype=np.uint8)


def crc16(data: bytes | bytearray | memoryview | np.ndarray, initial: int = CRC16_INIT) -> int:
    """CRC-16/CCITT-FALSE of a byte string.

    Parameters
    ----------
    data : bytes-like or numpy.ndarray
        The bytes to check. An array must have dtype uint8 (any shape; it is
        read in C order). Not modified.
    initial : int, optional
        Initial register value, ``0xFFFF`` by default. Pass the CRC of a
        previous chunk to continue a running CRC over several chunks.

    Returns
    -------
    int
        The CRC, 0 .. 65535. It is written big-endian after the data it covers.

    Examples
    --------
    >>> hex(crc16(b"123456789"))
    '0x29b1'
    """
    if not 0 <= initial <= 0xFFFF:
        raise TelemetryError(f"initial CRC value must be in 0..65535, got {initial}")
    arr = _as_byte_array(data)
    return int(_crc16_span(arr, 0, arr.size, initial))


def crc16_many(
    buf: npt.NDArray[np.uint8],
    offsets: npt.ArrayLike,
    lengths: npt.ArrayLike,
) -> npt.NDArray[np.uint16]:
    """CRC-16/CCITT-FALSE of many spans of one buffer at once.

    Parameters
    ----------
    buf : numpy.ndarray
        Shape (B,), uint8: the byte stream. Not modified.
    offsets : array_like
        Shape (N,), integers: byte offset of the start of each span.
    lengths : array_like
        Shape (N,), integers (or a scalar, broadcast): number of bytes in each
        span. For a packet this is the packet size minus the 2 CRC bytes.

    Returns
    -------
    numpy.ndarray
        Shape (N,), uint16: ``crc16(buf[offsets[i]:offsets[i] + lengths[i]])``.

    Raises
    ------
    TelemetryError
        If a span is negative or reaches outside ``buf``.
    """
    arr = _as_byte_array(buf)
    off = np.ascontiguousarray(offsets, dtype=np.int64).reshape(-1)
    lens = np.ascontiguousarray(np.broadcast_to(np.asarray(lengths, dtype=np.int64), off.shape))
    if off.size and (
        off.min() < 0 or lens.min() < 0 or int((off + lens).max()) > arr.size
    ):
        raise TelemetryError("crc16_many: a span lies outside the buffer or has a negative length")
    return _crc16_many_kernel(arr, off, lens)
