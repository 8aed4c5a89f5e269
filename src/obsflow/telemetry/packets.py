"""obsflow CCSDS telemetry packet layout and vectorised encoders.

Every obsflow packet is a CCSDS 133.0-B-2 space packet, all fields big-endian::

    offset  size  field
    0       6     primary header (version 0, type 0 = TM, sec. header flag 1,
                  APID, sequence flags 3, 14-bit sequence count, data length)
    6       18    secondary header (SECONDARY_HEADER_DTYPE)
    24      L     payload
    24+L    2     CRC-16/CCITT-FALSE over bytes 0 .. 24+L-1

so a packet is ``L + 26`` bytes and its data length field is ``L + 19``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from obsflow.exceptions import TelemetryError, TelemetryTypeError
from obsflow.telemetry.apids import IDLE_APID

__all__ = [
    "APID_MAX",
    "IDLE_APID",
    "CRC_SIZE",
    "HEADER_DTYPE",
    "HEADER_SIZE",
    "MAX_PAYLOAD_SIZE",
    "MIN_PACKET_SIZE",
    "PRIMARY_HEADER_DTYPE",
    "PRIMARY_HEADER_SIZE",
    "SECONDARY_HEADER_DTYPE",
    "SECONDARY_HEADER_SIZE",
    "SEQUENCE_COUNT_MODULUS",
    "TIME_FINE_PER_SECOND",
    "encode_packets",
    "encode_variable_packets",
    "join_time",
    "packet_size",
    "secondary_headers",
    "split_time",
]

PRIMARY_HEADER_SIZE = 6
"""Bytes in the CCSDS primary header."""
SECONDARY_HEADER_SIZE = 18
"""Bytes in the obsflow secondary header."""
CRC_SIZE = 2
"""Bytes in the CRC trailer."""
HEADER_SIZE = PRIMARY_HEADER_SIZE + SECONDARY_HEADER_SIZE
"""Bytes before the payload (primary + secondary header), 24."""
MIN_PACKET_SIZE = HEADER_SIZE + CRC_SIZE
"""Smallest valid obsflow packet (empty payload), 26 bytes."""
MAX_PAYLOAD_SIZE = 65536 - SECONDARY_HEADER_SIZE - CRC_SIZE
"""Largest payload the 16-bit data length field can describe, 65516 bytes."""
APID_MAX = 0x7FF
"""Largest 11-bit APID."""
SEQUENCE_COUNT_MODULUS = 1 << 14
"""Sequence counts are 14 bits and wrap from 16383 to 0."""

PRIMARY_HEADER_DTYPE = np.dtype(
    [("packet_id", ">u2"), ("sequence_control", ">u2"), ("data_length", ">u2")]
)
"""Primary header as three big-endian 16-bit words (itemsize 6).

``packet_id`` = version (3 bits) | type (1) | secondary header flag (1) | APID (11);
``sequence_control`` = sequence flags (2) | sequence count (14);
``data_length`` = bytes in the packet data field minus 1.
"""

SECONDARY_HEADER_DTYPE = np.dtype(
    [
        ("time_coarse", ">u4"),
        ("time_fine", ">u2"),
        ("exposure_id", ">u4"),
        ("group", ">u2"),
        ("row", ">u2"),
        ("packet_index", ">u4"),
    ]
)
"""obsflow secondary header, big-endian, packed (itemsize 18).

``time_coarse`` whole TAI seconds since the mission epoch; ``time_fine`` units
of 2**-16 s; ``exposure_id`` (0 for non-science packets); ``group`` group or
frame index; ``row`` first detector row / tile index; ``packet_index`` index of
the packet within its exposure (running record index for non-science packets).
"""

HEADER_DTYPE = np.dtype(PRIMARY_HEADER_DTYPE.descr + SECONDARY_HEADER_DTYPE.descr)
"""Primary + secondary header as one packed big-endian record (itemsize 24)."""

assert PRIMARY_HEADER_DTYPE.itemsize == PRIMARY_HEADER_SIZE
assert SECONDARY_HEADER_DTYPE.itemsize == SECONDARY_HEADER_SIZE
assert HEADER_DTYPE.itemsize == HEADER_SIZE

TIME_FINE_PER_SECOND = 65536
"""``time_fine`` ticks per second (a tick is 2**-16 s)."""


def split_time(seconds: npt.ArrayLike) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint16]]:
    """Packet time fields of mission times.

    Parameters
    ----------
    seconds : array_like
        Mission seconds (TAI since the mission epoch), 0 <= t < 2**32.

    Returns
    -------
    (time_coarse, time_fine)
        uint32 whole seconds and uint16 ticks of 2**-16 s (rounded down),
        each of the shape of ``seconds``.
    """
    t = np.asarray(seconds, dtype=np.float64)
    if t.size and not (np.all(np.isfinite(t)) and t.min() >= 0 and t.max() < 2.0**32):
        raise TelemetryError("time: expected mission seconds in 0 .. 2**32")
    whole = np.floor(t)
    fine = np.minimum(np.floor((t - whole) * TIME_FINE_PER_SECOND), TIME_FINE_PER_SECOND - 1)
    return whole.astype(np.uint32), fine.astype(np.uint16)


def join_time(coarse: npt.ArrayLike, fine: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Mission seconds (TAI) of packet time fields: ``coarse + fine / 65536``."""
    return (np.asarray(coarse).astype(np.float64)
            + np.asarray(fine).astype(np.float64) / TIME_FINE_PER_SECOND)


def secondary_headers(time: npt.ArrayLike, exposure_id: npt.ArrayLike, group: npt.ArrayLike,
                      row: npt.ArrayLike, packet_index: npt.ArrayLike) -> npt.NDArray[np.void]:
    """(N,) SECONDARY_HEADER_DTYPE records from mission seconds and the integer fields.

    ``time`` (N,) mission seconds is split by :func:`split_time`; the other
    fields are (N,) or scalars, stored as they are (what each means for each
    kind of packet is in :mod:`obsflow.telemetry.payloads`).
    """
    coarse, fine = split_time(time)
    sec = np.zeros(coarse.size, SECONDARY_HEADER_DTYPE)
    sec["time_coarse"] = coarse.reshape(-1)
    sec["time_fine"] = fine.reshape(-1)
    sec["exposure_id"] = exposure_id
    sec["group"] = group
    sec["row"] = row
    sec["packet_index"] = packet_index
    return sec


_PACKET_ID_BASE = 0x0800  # version 0, type 0 (TM), secondary header flag 1
_SEQ_FLAGS_UNSEGMENTED = 0xC000


def packet_size(payload_size: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Total packet size in bytes for a payload size.

    Parameters
    ----------
    payload_size : array_like
        Payload size(s) in bytes.

    Returns
    -------
    numpy.ndarray
        int64, same shape: ``payload_size + 26``.
    """
    return np.asarray(payload_size, dtype=np.int64) + MIN_PACKET_SIZE


def _field_array(values: Any, name: str, n: int, dtype: np.dtype) -> npt.NDArray[Any]:
    """Check an integer field fits ``dtype`` and broadcast it to shape (n,)."""
    arr = np.asarray(values)
    if arr.size == 0:
        arr = arr.astype(np.int64)  # e.g. np.asarray([]) is float64
    if arr.dtype.kind not in "ui":
        raise TelemetryTypeError(f"{name}: expected integers, got dtype {arr.dtype}")
    info = np.iinfo(dtype)
    if arr.size and (int(arr.min()) < info.min or int(arr.max()) > info.max):
        raise TelemetryError(f"{name}: values must lie in {info.min}..{info.max}")
    try:
        return np.broadcast_to(arr, (n,))
    except ValueError:
        raise TelemetryError(f"{name}: shape {arr.shape} does not match {n} packets") from None


def _build_headers(
    apid: npt.ArrayLike,
    seq_count: npt.ArrayLike,
    secondary: Any,
    payload_sizes: npt.NDArray[np.int64],
) -> npt.NDArray[np.void]:
    """Fill (N,) HEADER_DTYPE records; validates every field.

    ``secondary`` is anything indexable by field name (structured array, dict
    of arrays, data frame). ``payload_sizes`` is (N,) int64 bytes.
    """
    n = payload_sizes.size
    if n and (payload_sizes.min() < 0 or payload_sizes.max() > MAX_PAYLOAD_SIZE):
        raise TelemetryError(f"payload sizes must lie in 0..{MAX_PAYLOAD_SIZE} bytes")
    apids = _field_array(apid, "apid", n, np.dtype(np.uint16))
    if n and int(apids.max()) > APID_MAX:
        raise TelemetryError(f"apid: values must lie in 0..{APID_MAX}")
    seq = _field_array(seq_count, "seq_count", n, np.dtype(np.int64))
    hdr = np.zeros(n, dtype=HEADER_DTYPE)
    hdr["packet_id"] = _PACKET_ID_BASE | apids.astype(np.uint16)
    hdr["sequence_control"] = _SEQ_FLAGS_UNSEGMENTED | (seq & 0x3FFF).astype(np.uint16)
    hdr["data_length"] = payload_sizes + (SECONDARY_HEADER_SIZE + CRC_SIZE - 1)
    for name in SECONDARY_HEADER_DTYPE.names or ():
        try:
            values = secondary[name]
        except (KeyError, ValueError, IndexError) as exc:
            raise TelemetryError(f"secondary header field {name!r} missing") from exc
        ftype = SECONDARY_HEADER_DTYPE.fields[name][0]  # type: ignore[index]
        hdr[name] = _field_array(values, name, n, ftype.newbyteorder("="))
    return hdr


def _payload_bytes(payloads: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """(N, L) payload array as (N, L') big-endian bytes; never copies back to the caller."""
    arr = np.asarray(payloads)
    if arr.ndim != 2:
        raise TelemetryError(f"payloads: expected a 2-D (N, L) array, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind not in "uif":
        raise TelemetryTypeError(f"payloads: expected a numeric array, got dtype {arr.dtype}")
    big = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder(">"))
    return big.view(np.uint8).reshape(arr.shape[0], -1)


def _fill_crcs(out: npt.NDArray[np.uint8], offsets: np.ndarray, sizes: np.ndarray) -> None:
    """Compute and store the CRC trailer of every packet in ``out`` (1-D, ours)."""
    from obsflow.telemetry.crc import crc16_many  # numba: compiled kernels load on first use

    crc = crc16_many(out, offsets, sizes - CRC_SIZE)
    end = offsets + sizes
    out[end - 2] = (crc >> 8).astype(np.uint8)
    out[end - 1] = (crc & 0xFF).astype(np.uint8)


def encode_packets(
    apid: npt.ArrayLike,
    seq_count: npt.ArrayLike,
    secondary: Any,
    payloads: npt.ArrayLike,
) -> npt.NDArray[np.uint8]:
    """Encode N packets with equal-length payloads, vectorised.

    Parameters
    ----------
    apid : int or array_like
        APID (0 .. 2047), scalar or shape (N,).
    seq_count : int or array_like
        Sequence count, scalar or shape (N,); masked to its low 14 bits.
    secondary : structured array or mapping
        Shape (N,) (or broadcastable): the fields of SECONDARY_HEADER_DTYPE,
        e.g. a SECONDARY_HEADER_DTYPE array or a dict of integer arrays.
        Values must fit the field's unsigned width.
    payloads : array_like
        Shape (N, L). uint8 bytes are copied verbatim; any other numeric dtype
        is written big-endian (e.g. uint16 pixels -> 2 bytes each).

    Returns
    -------
    numpy.ndarray
        Shape (N * (L + 26),), uint8: the concatenated packets with CRCs.

    Raises
    ------
    TelemetryError
        A field out of range, an APID above 2047, L above 65516 or
        mismatched shapes.
    """
    data = _payload_bytes(payloads)
    n, length = data.shape
    sizes = np.full(n, length, dtype=np.int64)
    hdr = _build_headers(apid, seq_count, secondary, sizes)
    size = length + MIN_PACKET_SIZE
    out = np.empty((n, size), dtype=np.uint8)
    out[:, :HEADER_SIZE] = hdr.view(np.uint8).reshape(n, HEADER_SIZE)
    out[:, HEADER_SIZE : HEADER_SIZE + length] = data
    flat = out.reshape(-1)
    _fill_crcs(flat, np.arange(n, dtype=np.int64) * size, sizes + MIN_PACKET_SIZE)
    return flat


def _one_payload(payload: Any) -> npt.NDArray[np.uint8]:
    """One variable payload (bytes-like or numeric array) as 1-D big-endian bytes."""
    if isinstance(payload, np.ndarray):
        return _payload_bytes(payload.reshape(1, -1)).reshape(-1)
    return np.frombuffer(payload, dtype=np.uint8)


def encode_variable_packets(
    apid: npt.ArrayLike,
    seq_count: npt.ArrayLike,
    secondary: Any,
    payloads: Sequence[bytes | bytearray | memoryview | np.ndarray],
) -> npt.NDArray[np.uint8]:
    """Encode N packets whose payloads may differ in length.

    Parameters
    ----------
    apid, seq_count, secondary
        As for :func:`encode_packets`, with N = ``len(payloads)``.
    payloads : sequence of bytes-like or numpy.ndarray
        N payloads. Bytes are copied verbatim; numeric arrays are written
        big-endian.

    Returns
    -------
    numpy.ndarray
        Shape (sum(len(p) + 26),), uint8: the concatenated packets with CRCs.
    """
    chunks = [_one_payload(p) for p in payloads]
    sizes = np.array([c.size for c in chunks], dtype=np.int64)
    hdr = _build_headers(apid, seq_count, secondary, sizes)
    head = hdr.view(np.uint8).reshape(len(chunks), HEADER_SIZE)
    total = sizes + MIN_PACKET_SIZE
    offsets = np.zeros(len(chunks), dtype=np.int64)
    np.cumsum(total[:-1], out=offsets[1:])
    out = np.empty(int(total.sum()), dtype=np.uint8)
    for i, chunk in enumerate(chunks):
        start = int(offsets[i])
        out[start : start + HEADER_SIZE] = head[i]
        out[start + HEADER_SIZE : start + HEADER_SIZE + chunk.size] = chunk
    _fill_crcs(out, offsets, total)
    return out
