"""CCSDS telemetry codec: encode and decode obsflow space packets and their payloads.

Packet layout, CRC and decoding rules are documented in ``docs/formats.md``
(section "Packets"); what each kind of packet carries (science pixels,
engineering samples, observation-log records) is defined once in
:mod:`obsflow.telemetry.payloads`. Typical use::

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
    TIME_FINE_PER_SECOND,
    encode_packets,
    encode_variable_packets,
    join_time,
    packet_size,
    secondary_headers,
    split_time,
)
from obsflow.telemetry.payloads import (
    OBSLOG_FIELDS,
    OBSLOG_RECORD,
    SCIENCE_PIXEL_DTYPE,
    ObservationLogRecord,
    PayloadKind,
    apid_kinds,
    decode_engineering,
    decode_obslog,
    decode_science,
    encode_engineering,
    encode_obslog,
    encode_science,
    engineering_dtype,
    rows_per_packet,
    science_header_fields,
    science_packet_count,
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
    "OBSLOG_FIELDS",
    "OBSLOG_RECORD",
    "SCIENCE_PIXEL_DTYPE",
    "SEQUENCE_COUNT_MODULUS",
    "TIME_FINE_PER_SECOND",
    "ObservationLogRecord",
    "PacketTable",
    "PayloadKind",
    "SequenceContinuity",
    "SkippedRange",
    "apid_kinds",
    "continuity",
    "crc16",
    "crc16_many",
    "decode",
    "decode_engineering",
    "decode_file",
    "decode_obslog",
    "decode_science",
    "encode_engineering",
    "encode_obslog",
    "encode_packets",
    "encode_science",
    "encode_variable_packets",
    "engineering_dtype",
    "join_time",
    "packet_size",
    "rows_per_packet",
    "science_header_fields",
    "science_packet_count",
    "secondary_headers",
    "sequence_gaps",
    "split_time",
    "unwrap_sequence",
]
