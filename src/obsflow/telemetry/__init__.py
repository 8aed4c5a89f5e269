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

from typing import TYPE_CHECKING

from obsflow._lazy import lazy_exports

if TYPE_CHECKING:
    from obsflow.telemetry.apids import PayloadKind, apid_kinds
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

__getattr__, __dir__ = lazy_exports(__name__, {
    "crc16": "crc",
    "crc16_many": "crc",
    "PacketTable": "decode",
    "SkippedRange": "decode",
    "decode": "decode",
    "decode_file": "decode",
    "APID_MAX": "packets",
    "CRC_SIZE": "packets",
    "HEADER_DTYPE": "packets",
    "HEADER_SIZE": "packets",
    "MAX_PAYLOAD_SIZE": "packets",
    "MIN_PACKET_SIZE": "packets",
    "PRIMARY_HEADER_DTYPE": "packets",
    "PRIMARY_HEADER_SIZE": "packets",
    "SECONDARY_HEADER_DTYPE": "packets",
    "SECONDARY_HEADER_SIZE": "packets",
    "SEQUENCE_COUNT_MODULUS": "packets",
    "TIME_FINE_PER_SECOND": "packets",
    "encode_packets": "packets",
    "encode_variable_packets": "packets",
    "join_time": "packets",
    "packet_size": "packets",
    "secondary_headers": "packets",
    "split_time": "packets",
    "OBSLOG_FIELDS": "payloads",
    "OBSLOG_RECORD": "payloads",
    "SCIENCE_PIXEL_DTYPE": "payloads",
    "ObservationLogRecord": "payloads",
    "PayloadKind": "apids",
    "apid_kinds": "apids",
    "decode_engineering": "payloads",
    "decode_obslog": "payloads",
    "decode_science": "payloads",
    "encode_engineering": "payloads",
    "encode_obslog": "payloads",
    "encode_science": "payloads",
    "engineering_dtype": "payloads",
    "rows_per_packet": "payloads",
    "science_header_fields": "payloads",
    "science_packet_count": "payloads",
    "SequenceContinuity": "sequence",
    "continuity": "sequence",
    "sequence_gaps": "sequence",
    "unwrap_sequence": "sequence",
})
