"""From cubes and records to one time-ordered CCSDS packet stream.

Each source of packets (an exposure's science cube, the engineering channel
samples, the observation-log records) is a :class:`Batch`.  :func:`assemble`
merges batches in time order, numbers the packets per APID (14-bit counts
that wrap), encodes each batch with the project's vectorised codec and lays
the packets end to end as a :class:`PacketStream`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from obsflow.models.metadata import ExposureMeta
from obsflow.telemetry import (
    MIN_PACKET_SIZE,
    SEQUENCE_COUNT_MODULUS,
    ObservationLogRecord,
    encode_obslog,
    encode_packets,
    encode_science,
    encode_variable_packets,
    rows_per_packet,
    science_header_fields,
    science_packet_count,
    secondary_headers,
)

__all__ = ["Batch", "PacketStream", "assemble", "obslog_record", "science_batch"]


@dataclass(frozen=True)
class Batch:
    """Packets from one source, all arrays (N,).

    ``time`` mission seconds (TAI since the profile epoch); ``payloads`` an
    (N, L) uint8 array for fixed-length packets or a list of bytes.
    """

    apid: int
    time: np.ndarray
    exposure_id: np.ndarray
    group: np.ndarray
    row: np.ndarray
    packet_index: np.ndarray
    payloads: np.ndarray | list[bytes]

    def __len__(self) -> int:
        return len(self.time)

    def secondary(self) -> np.ndarray:
        """(N,) secondary headers of the batch's packets."""
        return secondary_headers(self.time, self.exposure_id, self.group, self.row,
                                 self.packet_index)


@dataclass(frozen=True)
class PacketStream:
    """Encoded packets end to end in time order.

    ``data`` uint8 bytes; per packet (N,): ``offset``, ``size`` (bytes),
    ``apid``, ``seq_count``, ``exposure_id``, ``packet_index``, ``time``.
    """

    data: np.ndarray
    offset: np.ndarray
    size: np.ndarray
    apid: np.ndarray
    seq_count: np.ndarray
    exposure_id: np.ndarray
    packet_index: np.ndarray
    time: np.ndarray

    def __len__(self) -> int:
        return len(self.offset)

    def gather(self, ids: np.ndarray) -> np.ndarray:
        """Bytes of packets ``ids`` (in that order), copying runs of consecutive ids at once."""
        ids = np.asarray(ids, np.int64)
        if not ids.size:
            return np.zeros(0, np.uint8)
        breaks = np.flatnonzero(np.diff(ids) != 1) + 1
        starts = np.concatenate([[0], breaks])
        stops = np.concatenate([breaks, [ids.size]])
        chunks = [self.data[self.offset[ids[a]]:self.offset[ids[b - 1]] + self.size[ids[b - 1]]]
                  for a, b in zip(starts, stops, strict=True)]
        return np.concatenate(chunks)


def obslog_record(meta: ExposureMeta, apid: int, target_payload_bytes: int) -> bytes:
    """The observation-log record of one planned product (housekeeping payload)."""
    rpp = rows_per_packet(meta.subsize1, meta.subsize2, target_payload_bytes)
    expected = (science_packet_count(meta.nints, meta.ngroups, meta.subsize2, rpp)
                if meta.status == "executed" else 0)
    return encode_obslog(ObservationLogRecord(apid, expected, rpp, meta.to_dict()))


def science_batch(cube: np.ndarray, apid: int, exposure_id: int, group_times: np.ndarray,
                  target_payload_bytes: int) -> Batch:
    """Packets of one exposure's uint16 cube (nints, ngroups, ny, nx).

    Payloads and header fields follow :mod:`obsflow.telemetry.payloads`
    (whole rows of one group per packet); ``group_times`` (nints, ngroups)
    mission seconds of each group, the time of its packets.
    """
    nints, ngroups, ny, nx = cube.shape
    rpp = rows_per_packet(nx, ny, target_payload_bytes)
    fields = science_header_fields(nints, ngroups, ny, rpp)
    n = fields["packet_index"].size
    times = np.repeat(np.asarray(group_times, np.float64).ravel(), ny // rpp)
    return Batch(apid, times, np.full(n, exposure_id), fields["group"], fields["row"],
                 fields["packet_index"], encode_science(cube, rpp))


def assemble(batches: list[Batch], first_counts: dict[int, int]) -> PacketStream:
    """Merge batches in time order, number per APID from ``first_counts``, encode."""
    batch_id = np.concatenate([np.full(len(b), k) for k, b in enumerate(batches)])
    row = np.concatenate([np.arange(len(b)) for b in batches])
    time = np.concatenate([b.time for b in batches])
    order = np.lexsort((row, batch_id, time))
    apid = np.concatenate([np.full(len(b), b.apid) for b in batches])[order]
    seq = np.zeros(len(order), np.int64)
    for a in np.unique(apid):
        where = np.flatnonzero(apid == a)
        seq[where] = (first_counts.get(int(a), 0) + np.arange(where.size)) % SEQUENCE_COUNT_MODULUS
    position = np.empty(len(order), np.int64)
    position[order] = np.arange(len(order))
    encoded, sizes = [], np.zeros(len(order), np.int64)
    start = 0
    for b in batches:
        counts = seq[position[start:start + len(b)]]
        if isinstance(b.payloads, np.ndarray):
            enc = encode_packets(b.apid, counts, b.secondary(), b.payloads)
            sizes[start:start + len(b)] = enc.size // max(len(b), 1)
        else:
            enc = encode_variable_packets(b.apid, counts, b.secondary(), b.payloads)
            sizes[start:start + len(b)] = [len(p) + MIN_PACKET_SIZE for p in b.payloads]
        encoded.append(enc)
        start += len(b)
    source_offset = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    blob = np.concatenate(encoded) if encoded else np.zeros(0, np.uint8)
    stream = PacketStream(blob, source_offset, sizes, np.zeros(0), np.zeros(0), np.zeros(0),
                          np.zeros(0), np.zeros(0))
    data = stream.gather(order)
    out_sizes = sizes[order]
    exp_id = np.concatenate([b.exposure_id for b in batches])[order]
    pidx = np.concatenate([b.packet_index for b in batches])[order]
    return PacketStream(data, np.concatenate([[0], np.cumsum(out_sizes)[:-1]]), out_sizes,
                        apid, seq, exp_id, pidx, time[order])
