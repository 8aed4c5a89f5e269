"""What obsflow packets carry: every payload layout, defined once.

The simulator encodes and ingest decodes with these functions, so the two
can never disagree about a byte.  Three kinds of payload exist; which APID
carries which kind comes from the observatory profile (:func:`apid_kinds`):

science
    ``rows`` whole detector rows of one group, ``rows * nx`` pixels as
    big-endian uint16 (DN), row-major (:data:`SCIENCE_PIXEL_DTYPE`).  The
    secondary header says where they belong (:func:`science_header_fields`):
    ``group`` = integration * NGROUPS + group, ``row`` = first row (0-based,
    subarray frame), ``packet_index`` = group-major running index, so packet
    ``k`` holds flat-cube pixels ``k * P .. (k + 1) * P - 1`` with
    ``P = rows * nx``.
engineering
    one big-endian float32 per profile channel, in the profile's channel
    order, in the channel's own unit (:func:`engineering_dtype`); the packet
    time is the sample time, ``packet_index`` a running count.
observation log
    one UTF-8 JSON object per planned product (:class:`ObservationLogRecord`):
    ``record`` (``"exposure"``), ``apid``, ``packets_expected``,
    ``rows_per_packet`` and every :class:`~obsflow.models.ExposureMeta`
    field, keys sorted; ``exposure_id`` in the secondary header.

Every function here takes and returns arrays or bytes; nothing opens a file.
A malformed payload raises ``ValueError`` naming the field and what was
expected.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from obsflow.exceptions import TelemetryError
from obsflow.telemetry.apids import PayloadKind, apid_kinds

__all__ = [
    "OBSLOG_FIELDS",
    "OBSLOG_RECORD",
    "SCIENCE_PIXEL_DTYPE",
    "ObservationLogRecord",
    "PayloadKind",
    "apid_kinds",
    "decode_engineering",
    "decode_obslog",
    "decode_science",
    "encode_engineering",
    "encode_obslog",
    "encode_science",
    "engineering_dtype",
    "rows_per_packet",
    "science_header_fields",
    "science_packet_count",
]


# -- science ---------------------------------------------------------------------------

SCIENCE_PIXEL_DTYPE = np.dtype(">u2")
"""One science pixel on the wire: big-endian uint16, DN."""


def rows_per_packet(nx: int, ny: int, target_payload_bytes: int) -> int:
    """Rows of ``nx`` pixels one science packet carries.

    The largest divisor of ``ny`` whose rows fit in ``target_payload_bytes``
    (2 bytes per pixel); at least 1, so a row wider than the target still
    travels, one per packet.
    """
    best = 1
    for r in range(1, ny + 1):
        if ny % r == 0 and r * nx * SCIENCE_PIXEL_DTYPE.itemsize <= target_payload_bytes:
            best = r
    return best


def science_packet_count(nints: int, ngroups: int, ny: int, rows: int) -> int:
    """Science packets of an exposure: ``nints * ngroups * ny / rows``.

    Raises
    ------
    TelemetryError
        ``rows`` does not divide ``ny``.
    """
    if rows < 1 or ny % rows:
        raise TelemetryError(f"rows_per_packet: expected a divisor of the {ny} detector rows, "
                         f"got {rows}")
    return nints * ngroups * (ny // rows)


def science_header_fields(nints: int, ngroups: int, ny: int,
                          rows: int) -> dict[str, npt.NDArray[np.int64]]:
    """Secondary-header fields of an exposure's science packets, in packet order.

    Returns
    -------
    dict
        ``group`` (integration * ngroups + group), ``row`` (first detector
        row of the packet, 0-based) and ``packet_index`` (0 .. N-1), each
        (N,) int64 with N = :func:`science_packet_count`.
    """
    per_group = ny // rows
    n = science_packet_count(nints, ngroups, ny, rows)
    return {"group": np.repeat(np.arange(nints * ngroups, dtype=np.int64), per_group),
            "row": np.tile(np.arange(per_group, dtype=np.int64) * rows, nints * ngroups),
            "packet_index": np.arange(n, dtype=np.int64)}


def encode_science(cube: npt.ArrayLike, rows: int) -> npt.NDArray[np.uint8]:
    """Science payloads of one exposure's ramp cube.

    Parameters
    ----------
    cube : array_like
        (nints, ngroups, ny, nx) integer DN in 0 .. 65535.
    rows : int
        Rows per packet; must divide ny.

    Returns
    -------
    numpy.ndarray
        (N, rows * nx * 2) uint8, packet order of :func:`science_header_fields`.
    """
    arr = np.asarray(cube)
    if arr.ndim != 4:
        raise TelemetryError(f"pixels: expected a (nints, ngroups, ny, nx) cube, got shape {arr.shape}")
    if arr.dtype != np.uint16:
        if arr.dtype.kind not in "ui":
            raise TelemetryError(f"pixels: expected uint16 DN, got dtype {arr.dtype}")
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 0xFFFF):
            raise TelemetryError("pixels: expected uint16 DN in 0..65535")
    nints, ngroups, ny, nx = arr.shape
    n = science_packet_count(nints, ngroups, ny, rows)
    return arr.astype(SCIENCE_PIXEL_DTYPE).view(np.uint8).reshape(n, rows * nx * 2)


def decode_science(payloads: npt.NDArray[np.uint8],
                   pixels_per_packet: int) -> npt.NDArray[np.uint16]:
    """Pixels of science payloads.

    Parameters
    ----------
    payloads : numpy.ndarray
        (N, L) uint8, one payload per row (rows may be strided slices of a
        packet buffer; each row must be contiguous).
    pixels_per_packet : int
        P = rows_per_packet * nx, from the observation log.

    Returns
    -------
    numpy.ndarray
        (N, P) big-endian uint16 DN, a view of ``payloads`` (read-only use).

    Raises
    ------
    TelemetryError
        ``L`` is not ``2 * P`` bytes.
    """
    arr = np.asarray(payloads)
    if arr.ndim != 2 or arr.dtype != np.uint8:
        raise TelemetryError(f"science payload: expected (N, L) uint8 bytes, got {arr.dtype} "
                         f"shape {arr.shape}")
    expected = pixels_per_packet * SCIENCE_PIXEL_DTYPE.itemsize
    if arr.shape[1] != expected:
        raise TelemetryError(f"science payload: field 'pixels' has {arr.shape[1]} bytes, expected "
                         f"{expected} ({pixels_per_packet} big-endian uint16 pixels)")
    return arr.view(SCIENCE_PIXEL_DTYPE)


# -- engineering -----------------------------------------------------------------------


def engineering_dtype(channels: Sequence[str]) -> np.dtype:
    """One engineering payload as a packed record: a big-endian float32 per channel.

    Field names are the channel names (FITS keywords), in the profile's order;
    values are in each channel's own unit.
    """
    return np.dtype([(str(ch), ">f4") for ch in channels])


def encode_engineering(values: npt.ArrayLike, channels: Sequence[str]) -> npt.NDArray[np.uint8]:
    """Engineering payloads of N samples.

    Parameters
    ----------
    values : array_like
        (N, C) float, channel values in the channels' units.
    channels : sequence of str
        The C channel names, in payload order.

    Returns
    -------
    numpy.ndarray
        (N, 4 * C) uint8.
    """
    arr = np.asarray(values)
    if arr.ndim != 2 or arr.shape[1] != len(channels):
        raise TelemetryError(f"engineering values: expected shape (N, {len(channels)}) for channels "
                         f"{list(channels)}, got {arr.shape}")
    dtype = engineering_dtype(channels)
    records = np.empty(arr.shape[0], dtype)
    for k, name in enumerate(dtype.names or ()):
        records[name] = arr[:, k]
    return records.view(np.uint8).reshape(arr.shape[0], dtype.itemsize)


def decode_engineering(payloads: npt.NDArray[np.uint8],
                       channels: Sequence[str]) -> npt.NDArray[np.float64]:
    """Channel values of engineering payloads.

    Parameters
    ----------
    payloads : numpy.ndarray
        (N, L) uint8.
    channels : sequence of str
        The C channel names the payloads carry, in order.

    Returns
    -------
    numpy.ndarray
        (N, C) float64, channel values in their units.

    Raises
    ------
    TelemetryError
        ``L`` is not ``4 * C`` bytes.
    """
    arr = np.asarray(payloads)
    dtype = engineering_dtype(channels)
    if arr.ndim != 2 or arr.dtype != np.uint8 or arr.shape[1] != dtype.itemsize:
        raise TelemetryError(f"engineering payload: carries {arr.shape[-1] if arr.ndim else 0} "
                         f"bytes, expected {dtype.itemsize} (float32 x {len(channels)} "
                         f"channels {', '.join(dtype.names or ())})")
    records = np.ascontiguousarray(arr).view(dtype).reshape(arr.shape[0])
    out = np.empty((arr.shape[0], len(channels)), np.float64)
    for k, name in enumerate(dtype.names or ()):
        out[:, k] = records[name]
    return out


# -- observation log -------------------------------------------------------------------

OBSLOG_RECORD = "exposure"
"""Value of ``record`` in an exposure's observation-log record (others are ignored)."""

OBSLOG_FIELDS = ("record", "apid", "packets_expected", "rows_per_packet")
"""Keys of an observation-log record that are not ExposureMeta fields."""


@dataclass(frozen=True)
class ObservationLogRecord:
    """One planned product as the observation log announces it.

    Attributes
    ----------
    apid : int
        Science APID carrying the exposure's pixels.
    packets_expected : int
        Science packets to expect (0 when the exposure was skipped or failed).
    rows_per_packet : int
        Detector rows per science packet.
    meta : mapping
        Every ExposureMeta field (``ExposureMeta.to_dict()``), including
        ``exposure_id`` and ``status``.
    """

    apid: int
    packets_expected: int
    rows_per_packet: int
    meta: Mapping[str, Any]

    @property
    def exposure_id(self) -> int:
        """Onboard exposure id (``meta["exposure_id"]``)."""
        return int(self.meta["exposure_id"])

    @property
    def status(self) -> str:
        """``executed``, ``skipped`` or ``failed`` (``meta["status"]``)."""
        return str(self.meta["status"])


def encode_obslog(record: ObservationLogRecord) -> bytes:
    """The housekeeping payload of one observation-log record (UTF-8 JSON, keys sorted)."""
    clash = sorted(set(OBSLOG_FIELDS) & set(record.meta))
    if clash:
        raise TelemetryError(f"observation-log record: meta field(s) {clash} clash with the "
                         f"record's own fields {list(OBSLOG_FIELDS)}")
    body = {"record": OBSLOG_RECORD, "apid": record.apid,
            "packets_expected": record.packets_expected,
            "rows_per_packet": record.rows_per_packet, **record.meta}
    return json.dumps(body, sort_keys=True).encode()


def _field(obj: Mapping[str, Any], name: str, kind: type) -> Any:
    """``obj[name]``, checked to be a ``kind`` (bool is not an int)."""
    if name not in obj:
        raise TelemetryError(f"observation-log record: field {name!r} missing; expected "
                         f"{kind.__name__}")
    value = obj[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TelemetryError(f"observation-log record: field {name!r} is {value!r}; expected "
                         f"{kind.__name__}")
    return value


def decode_obslog(payload: bytes | bytearray | memoryview) -> ObservationLogRecord | None:
    """Parse one housekeeping payload.

    Returns
    -------
    ObservationLogRecord or None
        None for a record of another kind (``record`` other than ``"exposure"``).

    Raises
    ------
    TelemetryError
        Not UTF-8 JSON, not an object, or a field missing or of the wrong type.
    """
    try:
        obj = json.loads(bytes(payload).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TelemetryError(f"observation-log record is not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise TelemetryError(f"observation-log record: expected a JSON object, got "
                         f"{type(obj).__name__}")
    if obj.get("record") != OBSLOG_RECORD:
        return None
    _field(obj, "exposure_id", int)
    _field(obj, "status", str)
    return ObservationLogRecord(
        apid=_field(obj, "apid", int), packets_expected=_field(obj, "packets_expected", int),
        rows_per_packet=_field(obj, "rows_per_packet", int),
        meta={k: v for k, v in obj.items() if k not in OBSLOG_FIELDS})
