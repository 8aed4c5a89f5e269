"""Decode an obsflow CCSDS packet stream into a table of header fields.

The packet chain is walked sequentially by a numba kernel (each packet's
length field gives the offset of the next packet), then every header field is
gathered for all packets at once and every CRC is checked in one compiled pass.

Strict mode (default) raises :class:`~obsflow.exceptions.PacketError` at the
first framing error. Tolerant mode skips to the next plausible packet and
records what it skipped in :attr:`PacketTable.skipped`. A CRC mismatch is not
a framing error: the packet is decoded and flagged ``crc_ok=False``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from numba import njit

from obsflow.exceptions import PacketError, TelemetryError, TelemetryTypeError, TruncatedPacketError
from obsflow.telemetry.crc import _crc16_span, _Int, crc16_many
from obsflow.telemetry.packets import (
    CRC_SIZE,
    HEADER_DTYPE,
    HEADER_SIZE,
    MIN_PACKET_SIZE,
    PRIMARY_HEADER_SIZE,
    SECONDARY_HEADER_SIZE,
    join_time,
)

__all__ = ["PacketTable", "SkippedRange", "decode", "decode_file"]

# Framing problem codes returned by the numba kernels.
_OK = 0
_BAD_VERSION = 1
_BAD_TYPE = 2
_NO_SECONDARY = 3
_BAD_SEQ_FLAGS = 4
_TOO_SHORT = 5
_PAST_END = 6
_SHORT_TAIL = 7
_UNFRAMED_CRC = 8
_MIN_DATA_LENGTH = SECONDARY_HEADER_SIZE + CRC_SIZE - 1  # smallest valid length field


class SkippedRange(NamedTuple):
    """A range of the stream that tolerant decoding could not frame as packets.

    Attributes
    ----------
    offset : int
        Byte offset of the first skipped byte.
    nbytes : int
        Number of bytes skipped.
    reason : str
        Why the first packet header at ``offset`` was rejected.
    """

    offset: int
    nbytes: int
    reason: str


@njit(cache=True, nogil=True)
def _header_problem(buf: np.ndarray, pos: _Int, n: _Int) -> int:  # pragma: no cover
    """Framing problem code of the packet header at ``pos`` (0 if it is plausible)."""
    if n - pos < PRIMARY_HEADER_SIZE:
        return _SHORT_TAIL
    b0 = np.int64(buf[pos])
    if (b0 >> 5) != 0:
        return _BAD_VERSION
    if (b0 >> 4) & 1:
        return _BAD_TYPE
    if not (b0 >> 3) & 1:
        return _NO_SECONDARY
    if (np.int64(buf[pos + 2]) >> 6) != 3:
        return _BAD_SEQ_FLAGS
    dlen = (np.int64(buf[pos + 4]) << 8) | np.int64(buf[pos + 5])
    if dlen < _MIN_DATA_LENGTH:
        return _TOO_SHORT
    if pos + dlen + 7 > n:
        return _PAST_END
    return _OK


@njit(cache=True, nogil=True)
def _packet_size(buf: np.ndarray, pos: _Int) -> np.int64:  # pragma: no cover
    """Total size in bytes of the packet at ``pos`` from its length field."""
    return ((np.int64(buf[pos + 4]) << 8) | np.int64(buf[pos + 5])) + 7


@njit(cache=True, nogil=True)
def _crc_matches(buf: np.ndarray, pos: _Int, size: _Int) -> bool:  # pragma: no cover
    """Whether the stored CRC of the packet at ``pos`` (``size`` bytes) is right."""
    end = pos + size
    stored = (np.int64(buf[end - 2]) << 8) | np.int64(buf[end - 1])
    return _crc16_span(buf, pos, end - 2, 0xFFFF) == stored


@njit(cache=True, nogil=True)
def _resync(buf: np.ndarray, start: _Int, n: _Int) -> _Int:  # pragma: no cover
    """First offset >= start holding a plausible header with a correct CRC (else n)."""
    for c in range(start, n - MIN_PACKET_SIZE + 1):
        if _header_problem(buf, c, n) == _OK and _crc_matches(buf, c, _packet_size(buf, c)):
            return c
    return n


@njit(cache=True, nogil=True)
def _implausible_next(buf: np.ndarray, pos: _Int, n: _Int) -> bool:  # pragma: no cover
    """Whether the bytes at ``pos`` (< n) cannot start a packet, not even a truncated one."""
    code = _header_problem(buf, pos, n)
    return code != _OK and code != _PAST_END and code != _SHORT_TAIL


@njit(cache=True, nogil=True)
def _grow(arr: np.ndarray, count: _Int) -> np.ndarray:  # pragma: no cover
    """Return ``arr`` or a copy twice as large when it is full."""
    if count < arr.size:
        return arr
    out = np.empty(2 * arr.size, dtype=arr.dtype)
    out[: arr.size] = arr
    return out


@njit(cache=True, nogil=True)
def _walk(buf: np.ndarray, tolerant: bool) -> tuple:  # pragma: no cover
    """Walk the packet chain of ``buf`` (1-D uint8).

    Returns ``(offsets, skipped, error_code, error_offset)``: (N,) int64 packet
    offsets, (S, 3) int64 skipped ranges (offset, nbytes, code), and in
    strict mode the code and offset of the first framing problem (``_OK``, -1
    if none; the walk stops there).
    """
    n = buf.size
    offsets = np.empty(max(16, min(n // MIN_PACKET_SIZE + 1, 1 << 16)), dtype=np.int64)
    sk_off = np.empty(16, dtype=np.int64)
    sk_len = np.empty(16, dtype=np.int64)
    sk_code = np.empty(16, dtype=np.int64)
    count, nsk, pos = 0, 0, np.int64(0)
    while pos < n:
        code = _header_problem(buf, pos, n)
        if code == _OK:
            size = _packet_size(buf, pos)
            if (
                tolerant
                and pos + size < n
                and _implausible_next(buf, pos + size, n)
                and not _crc_matches(buf, pos, size)
            ):
                code = _UNFRAMED_CRC
            else:
                offsets = _grow(offsets, count)
                offsets[count] = pos
                count += 1
                pos += size
                continue
        if not tolerant:
            return offsets[:count].copy(), np.empty((0, 3), dtype=np.int64), code, pos
        resume = np.int64(_resync(buf, pos + 1, n))
        sk_off, sk_len, sk_code = _grow(sk_off, nsk), _grow(sk_len, nsk), _grow(sk_code, nsk)
        sk_off[nsk], sk_len[nsk], sk_code[nsk] = pos, resume - pos, code
        nsk += 1
        pos = resume
    skipped = np.column_stack((sk_off[:nsk], sk_len[:nsk], sk_code[:nsk]))
    return offsets[:count].copy(), skipped, _OK, np.int64(-1)


@njit(cache=True, nogil=True)
def _gather_into(buf: np.ndarray, starts: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
    """Copy ``buf[starts[i] : starts[i] + W]`` into row i of ``out`` (N, W)."""
    width = out.shape[1]
    for i in range(starts.size):
        s = starts[i]
        out[i, :] = buf[s : s + width]


def _gather(buf: npt.NDArray[np.uint8], starts: npt.NDArray[np.int64], width: int) -> npt.NDArray[np.uint8]:
    """(N, width) uint8 copy of ``width`` bytes of ``buf`` from each of the (N,) ``starts``.

    Evenly spaced starts (one fixed-size packet type back to back) are copied
    through a strided view; anything else through a numba kernel. Starts and
    widths must lie inside ``buf`` (guaranteed by the packet walk).
    """
    n = starts.size
    if n == 0 or width == 0:
        return np.empty((n, width), dtype=np.uint8)
    step = int(starts[1] - starts[0]) if n > 1 else width
    if step >= width and (n < 3 or bool(np.all(np.diff(starts) == step))):
        view = np.lib.stride_tricks.as_strided(
            buf[int(starts[0]) :], shape=(n, width), strides=(step, 1), writeable=False
        )
        return view.copy()
    out = np.empty((n, width), dtype=np.uint8)
    _gather_into(buf, starts, out)
    return out


def _describe(buf: npt.NDArray[np.uint8], pos: int, code: int) -> str:
    """Human-readable reason for framing problem ``code`` at ``pos``."""
    n = buf.size
    if code == _SHORT_TAIL:
        return f"{n - pos} trailing byte(s), fewer than the {PRIMARY_HEADER_SIZE}-byte primary header"
    b0 = int(buf[pos])
    dlen = (int(buf[pos + 4]) << 8) | int(buf[pos + 5])
    reasons = {
        _BAD_VERSION: f"packet version {b0 >> 5}, expected 0",
        _BAD_TYPE: "packet type 1 (telecommand), expected 0 (telemetry)",
        _NO_SECONDARY: "secondary header flag is 0, expected 1",
        _BAD_SEQ_FLAGS: f"sequence flags {int(buf[pos + 2]) >> 6}, expected 3 (unsegmented)",
        _TOO_SHORT: (
            f"data length field {dlen} is shorter than secondary header + CRC "
            f"(minimum {_MIN_DATA_LENGTH})"
        ),
        _PAST_END: (
            f"packet of {dlen + 7} bytes (length field {dlen}) runs past the end of the "
            f"data ({n - pos} bytes left)"
        ),
        _UNFRAMED_CRC: "CRC mismatch and no valid packet header follows (corrupt header)",
    }
    return reasons[code]


def _array_fields() -> tuple[str, ...]:
    """Names of the per-packet (N,) array attributes of PacketTable."""
    return tuple(f.name for f in dataclasses.fields(PacketTable) if f.name not in _NOT_ARRAYS)


_NOT_ARRAYS = frozenset({"source", "buffer", "skipped"})


@dataclasses.dataclass(frozen=True, eq=False)
class PacketTable:
    """Header fields of N decoded packets, as parallel (N,) arrays.

    Attributes
    ----------
    source : str
        Label of the stream (file name), used in error messages.
    buffer : numpy.ndarray
        Shape (B,), uint8, read-only: the whole stream the packets live in.
    offset : numpy.ndarray
        (N,) int64: byte offset of each packet in ``buffer``.
    apid, seq_count : numpy.ndarray
        (N,) uint16: APID (11 bits) and 14-bit sequence count.
    seq_flags : numpy.ndarray
        (N,) uint8: sequence flags (always 3 for accepted packets).
    length : numpy.ndarray
        (N,) int64: total packet size in bytes (headers + payload + CRC).
    time_coarse, exposure_id, packet_index : numpy.ndarray
        (N,) uint32: secondary header fields (seconds since the mission epoch,
        TAI; exposure id; packet index within the exposure).
    time_fine, group, row : numpy.ndarray
        (N,) uint16: secondary header fields (units of 2**-16 s; group or
        frame index; first detector row / tile index).
    crc : numpy.ndarray
        (N,) uint16: CRC stored in each packet's trailer.
    crc_ok : numpy.ndarray
        (N,) bool: whether the stored CRC equals the one computed over the packet.
    skipped : list of SkippedRange
        Byte ranges of the stream tolerant decoding skipped (empty in strict
        mode). Describes the whole source stream; carried unchanged by
        :meth:`select` and :meth:`split_by_apid`.
    """

    source: str
    buffer: npt.NDArray[np.uint8]
    offset: npt.NDArray[np.int64]
    apid: npt.NDArray[np.uint16]
    seq_count: npt.NDArray[np.uint16]
    seq_flags: npt.NDArray[np.uint8]
    length: npt.NDArray[np.int64]
    time_coarse: npt.NDArray[np.uint32]
    time_fine: npt.NDArray[np.uint16]
    exposure_id: npt.NDArray[np.uint32]
    group: npt.NDArray[np.uint16]
    row: npt.NDArray[np.uint16]
    packet_index: npt.NDArray[np.uint32]
    crc: npt.NDArray[np.uint16]
    crc_ok: npt.NDArray[np.bool_]
    skipped: list[SkippedRange] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return int(self.offset.size)

    def select(self, mask_or_index: Any) -> PacketTable:
        """A table of a subset of the packets.

        Parameters
        ----------
        mask_or_index : array_like of bool or int, int, or slice
            (N,) boolean mask, integer indices (any order, repeats allowed),
            a single index, or a slice.

        Returns
        -------
        PacketTable
            Same ``source``, ``buffer`` and ``skipped``; per-packet arrays
            selected (copies, except for slices).
        """
        key = mask_or_index
        if not isinstance(key, slice):
            key = np.asarray(key)
            if key.ndim == 0:
                key = key.reshape(1)
            if key.dtype == np.bool_ and key.shape != (len(self),):
                raise TelemetryError(f"mask has shape {key.shape}, table has {len(self)} packets")
        return dataclasses.replace(self, **{name: getattr(self, name)[key] for name in _array_fields()})

    def split_by_apid(self) -> dict[int, PacketTable]:
        """One table per APID, in increasing APID order, arrival order kept within each."""
        return {int(a): self.select(self.apid == a) for a in np.unique(self.apid)}

    @property
    def payload_size(self) -> npt.NDArray[np.int64]:
        """(N,) int64: payload size of each packet in bytes (``length - 26``)."""
        return self.length - MIN_PACKET_SIZE

    def payloads(self) -> npt.NDArray[np.uint8]:
        """Payload bytes of all packets as an (N, L) uint8 array (a copy).

        Raises
        ------
        TelemetryError
            If the packets do not all have the same payload size.
        """
        sizes = self.payload_size
        if sizes.size == 0:
            return np.empty((0, 0), dtype=np.uint8)
        width = int(sizes[0])
        if np.any(sizes != width):
            raise TelemetryError(
                f"{self.source}: payload sizes differ ({sorted(set(sizes.tolist()))[:5]}...); "
                "select or split_by_apid first"
            )
        return _gather(self.buffer, self.offset + HEADER_SIZE, width)

    def payload(self, i: int) -> bytes:
        """Payload bytes of packet ``i``."""
        start = int(self.offset[i]) + HEADER_SIZE
        return self.buffer[start : start + int(self.payload_size[i])].tobytes()

    def packet_bytes(self, i: int) -> bytes:
        """Raw bytes of packet ``i`` (headers, payload and CRC)."""
        start = int(self.offset[i])
        return self.buffer[start : start + int(self.length[i])].tobytes()

    def time_seconds(self) -> npt.NDArray[np.float64]:
        """(N,) float64 seconds since the mission epoch (TAI): coarse + fine / 65536."""
        return join_time(self.time_coarse, self.time_fine)


def _as_buffer(buf: bytes | bytearray | memoryview | np.ndarray) -> npt.NDArray[np.uint8]:
    """Read-only 1-D uint8 view of the input (copies only non-contiguous arrays)."""
    if isinstance(buf, np.ndarray):
        if buf.dtype != np.uint8:
            raise TelemetryTypeError(f"expected a uint8 array, got dtype {buf.dtype}")
        arr = np.ascontiguousarray(buf).reshape(-1).view()
    else:
        arr = np.frombuffer(buf, dtype=np.uint8).view()
    arr.flags.writeable = False
    return arr


def _table(source: str, arr: npt.NDArray[np.uint8], offsets: np.ndarray) -> PacketTable:
    """Gather every header field and check every CRC for packets at ``offsets``."""
    hdr = _gather(arr, offsets, HEADER_SIZE).view(HEADER_DTYPE).reshape(-1)
    pid = hdr["packet_id"].astype(np.uint16)
    psc = hdr["sequence_control"].astype(np.uint16)
    length = hdr["data_length"].astype(np.int64) + 7
    end = offsets + length
    stored = ((arr[end - 2].astype(np.uint16) << 8) | arr[end - 1]).astype(np.uint16)
    computed = crc16_many(arr, offsets, length - CRC_SIZE)
    return PacketTable(
        source=source,
        buffer=arr,
        offset=offsets,
        apid=pid & np.uint16(0x7FF),
        seq_count=psc & np.uint16(0x3FFF),
        seq_flags=(psc >> 14).astype(np.uint8),
        length=length,
        time_coarse=hdr["time_coarse"].astype(np.uint32),
        time_fine=hdr["time_fine"].astype(np.uint16),
        exposure_id=hdr["exposure_id"].astype(np.uint32),
        group=hdr["group"].astype(np.uint16),
        row=hdr["row"].astype(np.uint16),
        packet_index=hdr["packet_index"].astype(np.uint32),
        crc=stored,
        crc_ok=stored == computed,
    )


def decode(
    buf: bytes | bytearray | memoryview | np.ndarray,
    *,
    source: str = "<bytes>",
    tolerant: bool = False,
) -> PacketTable:
    """Decode a stream of obsflow CCSDS packets (any mix of APIDs and sizes).

    Parameters
    ----------
    buf : bytes-like or numpy.ndarray
        The stream; an array must be uint8 (read in C order). Not modified,
        and not copied when contiguous: the table keeps a read-only view.
    source : str, optional
        Label used in error messages and stored in the table.
    tolerant : bool, optional
        If False (default) raise at the first framing error. If True skip to
        the next offset holding a plausible header (version 0, type 0,
        secondary header flag 1, sequence flags 3, length field >= 19 and
        within the data) whose CRC is correct, record the skipped range in
        ``skipped`` and go on. In tolerant mode a packet with a bad CRC that
        is not followed by a plausible header (or the end of the data) is
        treated as a corrupt header and skipped too.

    Returns
    -------
    PacketTable
        One row per packet in stream order; ``crc_ok`` flags CRC mismatches.

    Raises
    ------
    PacketError
        (strict mode) wrong version, type 1, secondary header flag 0,
        sequence flags != 3, or a length field shorter than secondary header
        + CRC; the message names ``source`` and the packet's byte offset.
    TruncatedPacketError
        (strict mode) a length field runs past the end of the data, or 1..5
        bytes are left after the last packet.
    """
    arr = _as_buffer(buf)
    offsets, skips, code, pos = _walk(arr, tolerant)
    if code != _OK:
        err = TruncatedPacketError if code in (_PAST_END, _SHORT_TAIL) else PacketError
        raise err(source, int(pos), _describe(arr, int(pos), int(code)))
    table = _table(source, arr, offsets)
    skipped = [
        SkippedRange(int(o), int(nb), _describe(arr, int(o), int(c))) for o, nb, c in skips
    ]
    return dataclasses.replace(table, skipped=skipped)


def decode_file(path: str | os.PathLike[str], *, tolerant: bool = False) -> PacketTable:
    """Read a packet file and :func:`decode` it, with the path as ``source``."""
    with open(path, "rb") as fh:
        data = fh.read()
    return decode(data, source=os.fspath(path), tolerant=tolerant)
