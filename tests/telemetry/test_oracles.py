"""Independent oracles: ccsdspy and spacepackets decode our encoder's output identically."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import ccsdspy
import fastcrc
import numpy as np
import pytest
from ccsdspy import PacketArray, PacketField
from ccsdspy.utils import split_by_apid
from spacepackets.ccsds.spacepacket import PacketType, SequenceFlags, SpacePacketHeader

from obsflow.telemetry import (
    SECONDARY_HEADER_DTYPE,
    PacketTable,
    crc16,
    decode,
    decode_file,
    encode_packets,
    encode_variable_packets,
)

SEC_FIELDS = [("time_coarse", 32), ("time_fine", 16), ("exposure_id", 32), ("group", 16),
              ("row", 16), ("packet_index", 32)]


def _secondary(rng: np.random.Generator, n: int) -> np.ndarray:
    sec = np.zeros(n, dtype=SECONDARY_HEADER_DTYPE)
    for name, bits in SEC_FIELDS:
        sec[name] = rng.integers(0, 2**bits, n, dtype=np.uint64)
    return sec


def _ccsdspy_definition(payload_len: int) -> ccsdspy.FixedLength:
    fields: list[Any] = [PacketField(name=n, data_type="uint", bit_length=b) for n, b in SEC_FIELDS]
    fields.append(PacketArray(name="payload", data_type="uint", bit_length=8,
                              array_shape=payload_len))
    fields.append(PacketField(name="crc", data_type="uint", bit_length=16))
    return ccsdspy.FixedLength(fields)


def _ccsdspy_load(definition: ccsdspy.FixedLength, file: Any) -> dict[str, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ccsdspy complains about wrapped sequence counts
        return definition.load(file, include_primary_header=True)


def _assert_ccsdspy_agrees(ref: dict[str, np.ndarray], table: PacketTable) -> None:
    np.testing.assert_array_equal(ref["CCSDS_VERSION_NUMBER"], 0)
    np.testing.assert_array_equal(ref["CCSDS_PACKET_TYPE"], 0)
    np.testing.assert_array_equal(ref["CCSDS_SECONDARY_FLAG"], 1)
    np.testing.assert_array_equal(ref["CCSDS_APID"], table.apid)
    np.testing.assert_array_equal(ref["CCSDS_SEQUENCE_FLAG"], table.seq_flags)
    np.testing.assert_array_equal(ref["CCSDS_SEQUENCE_COUNT"], table.seq_count)
    np.testing.assert_array_equal(ref["CCSDS_PACKET_LENGTH"] + 7, table.length)
    for name, _ in SEC_FIELDS:
        np.testing.assert_array_equal(ref[name], getattr(table, name), err_msg=name)
    np.testing.assert_array_equal(ref["payload"], table.payloads())
    np.testing.assert_array_equal(ref["crc"], table.crc)


def test_ccsdspy_fixed_length_with_wrapping_counts(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n, length = 3000, 64
    seq = np.arange(15_000, 15_000 + n)  # wraps past 16383
    payload = rng.integers(0, 256, (n, length), dtype=np.uint8)
    stream = encode_packets(0x2A5, seq, _secondary(rng, n), payload)
    path = tmp_path / "science.bin"
    path.write_bytes(stream.tobytes())

    table = decode_file(path)
    assert table.crc_ok.all()
    np.testing.assert_array_equal(table.seq_count, seq % 16384)
    ref = _ccsdspy_load(_ccsdspy_definition(length), str(path))
    _assert_ccsdspy_agrees(ref, table)
    np.testing.assert_array_equal(ref["payload"], payload)


def test_ccsdspy_uint16_pixels(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 2**16, (50, 32), dtype=np.uint16)
    path = tmp_path / "pixels.bin"
    path.write_bytes(encode_packets(7, np.arange(50), _secondary(rng, 50), pixels).tobytes())
    fields: list[Any] = [PacketField(name=n, data_type="uint", bit_length=b) for n, b in SEC_FIELDS]
    fields += [PacketArray(name="pixels", data_type="uint", bit_length=16, array_shape=32),
               PacketField(name="crc", data_type="uint", bit_length=16)]
    ref = _ccsdspy_load(ccsdspy.FixedLength(fields), str(path))
    np.testing.assert_array_equal(ref["pixels"], pixels)
    ours = decode_file(path).payloads().view(">u2")
    np.testing.assert_array_equal(ours, pixels)


def _mixed_stream(rng: np.random.Generator) -> tuple[np.ndarray, dict[int, int]]:
    """Interleaved fixed-length packets of three APIDs plus variable housekeeping."""
    lengths = {0x101: 64, 0x102: 32, 0x103: 10}
    order = rng.choice(list(lengths), size=600)
    counters = dict.fromkeys(lengths, 16_300)
    parts = []
    for apid in order.tolist():
        sec = _secondary(rng, 1)
        payload = rng.integers(0, 256, (1, lengths[apid]), dtype=np.uint8)
        parts.append(encode_packets(apid, [counters[apid]], sec, payload))
        counters[apid] += 1
        if rng.random() < 0.05:
            text = b"HK " + bytes(rng.integers(32, 127, rng.integers(0, 40), dtype=np.uint8))
            parts.append(encode_variable_packets(0x7F0, [len(parts)], _secondary(rng, 1), [text]))
    return np.concatenate(parts), lengths


def test_ccsdspy_mixed_apids(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    stream, lengths = _mixed_stream(rng)
    path = tmp_path / "mixed.bin"
    path.write_bytes(stream.tobytes())
    table = decode_file(path)
    assert table.crc_ok.all()
    ours = table.split_by_apid()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        streams = split_by_apid(str(path))
    assert sorted(streams) == sorted(ours) == [*sorted(lengths), 0x7F0]
    for apid, length in lengths.items():
        ref = _ccsdspy_load(_ccsdspy_definition(length), streams[apid])
        _assert_ccsdspy_agrees(ref, ours[apid])
    hk_fields: list[Any] = [PacketField(name=n, data_type="uint", bit_length=b)
                            for n, b in SEC_FIELDS]
    hk_fields += [PacketArray(name="text", data_type="uint", bit_length=8, array_shape="expand"),
                  PacketField(name="crc", data_type="uint", bit_length=16)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hk = ccsdspy.VariableLength(hk_fields).load(streams[0x7F0], include_primary_header=True)
    ours_hk = ours[0x7F0]
    np.testing.assert_array_equal(hk["CCSDS_SEQUENCE_COUNT"], ours_hk.seq_count)
    np.testing.assert_array_equal(hk["crc"], ours_hk.crc)
    for name, _ in SEC_FIELDS:
        np.testing.assert_array_equal(hk[name], getattr(ours_hk, name))
    assert [bytes(t.astype(np.uint8)) for t in hk["text"]] == [
        ours_hk.payload(i) for i in range(len(ours_hk))
    ]


@pytest.mark.parametrize("seed", [4, 5])
def test_spacepackets_headers_payloads_and_crc(seed: int) -> None:
    rng = np.random.default_rng(seed)
    stream, _ = _mixed_stream(rng)
    table = decode(stream)
    raw = stream.tobytes()
    assert len(table) > 600
    for i in range(len(table)):
        start, size = int(table.offset[i]), int(table.length[i])
        packet = raw[start : start + size]
        header = SpacePacketHeader.unpack(packet)
        assert header.ccsds_version == 0
        assert header.packet_type == PacketType.TM
        assert header.sec_header_flag
        assert header.seq_flags == SequenceFlags.UNSEGMENTED == table.seq_flags[i]
        assert header.apid == table.apid[i]
        assert header.seq_count == table.seq_count[i]
        assert header.packet_len == size
        body = packet[6:]
        sec = np.frombuffer(body[:18], dtype=SECONDARY_HEADER_DTYPE)[0]
        for name, _ in SEC_FIELDS:
            assert int(sec[name]) == int(getattr(table, name)[i])
        assert body[18:-2] == table.payload(i)
        assert int.from_bytes(packet[-2:], "big") == table.crc[i]
        # spacepackets' CRC-16/CCITT-FALSE (fastcrc ibm_3740) agrees with ours.
        assert fastcrc.crc16.ibm_3740(packet[:-2]) == crc16(packet[:-2]) == table.crc[i]


def test_spacepackets_encoder_builds_identical_packets() -> None:
    from spacepackets.ccsds.spacepacket import SpacePacket

    rng = np.random.default_rng(6)
    n, length = 40, 24
    apids = rng.integers(0, 2048, n)
    seq = rng.integers(0, 2**16, n)
    sec = _secondary(rng, n)
    payload = rng.integers(0, 256, (n, length), dtype=np.uint8)
    ours = encode_packets(apids, seq, sec, payload).reshape(n, length + 26)
    for i in range(n):
        header = SpacePacketHeader(
            packet_type=PacketType.TM,
            apid=int(apids[i]),
            seq_count=int(seq[i]) % 16384,
            data_len=18 + length + 2 - 1,
            sec_header_flag=True,
        )
        body = SpacePacket(header, sec[i : i + 1].tobytes(), payload[i].tobytes()).pack()
        expected = bytes(body) + fastcrc.crc16.ibm_3740(bytes(body)).to_bytes(2, "big")
        assert ours[i].tobytes() == expected
