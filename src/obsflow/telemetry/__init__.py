"""CCSDS telemetry codec: encode and decode obsflow space packets.

Packet layout, CRC and decoding rules are documented in ``docs/formats.md``
(section "Packets"). Typical use::

    from obsflow.telemetry import decode, continuity

    table = decode(data, source="exp0001.bin")
    for apid, sub in table.split_by_apid().items():
        pixels = sub.payloads()          # (N, L) uint8
        report = continuity(sub.seq_count)
"""

from __future__ import annotations

from obsflow.telemetry.crc import crc16, crc16_many
from obsflow.telemetry.decode import PacketTable, SkippedRange, decode, decode_file
from obsflow.telemetry.packets import (
    APID_MAX,
    CRC_SIZE,
    HEADER_DTYPE,
    HEADER_SIZE,
    MAX_PAYLOAD_SIZE,
    MIN_PACKET_SIZE,
    PRIMARY_HEADER_DTYPE,
    PRIMARY_HEADER_SIZE,
    SECONDARY_HEADER_DTYPE,
    SECONDARY_HEADER_SIZE,
    SEQUENCE_COUNT_MODULUS,
    encode_packets,
    encode_variable_packets,
    packet_size,
)
from obsflow.telemetry.sequence import (
    SequenceContinuity,
    continuity,
    sequence_gaps,
    unwrap_sequence,
)

__all__ = [
    "APID_MAX",
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
    "PacketTable",
    "SequenceContinuity",
    "SkippedRange",
    "continuity",
    "crc16",
    "crc16_many",
    "decode",
    "decode_file",
    "encode_packets",
    "encode_variable_packets",
    "packet_size",
    "sequence_gaps",
    "unwrap_sequence",
]
