"""Encoder: byte layout against the format contract, input validation."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from obsflow.telemetry import (
    HEADER_DTYPE,
    HEADER_SIZE,
    PRIMARY_HEADER_DTYPE,
    SECONDARY_HEADER_DTYPE,
    crc16,
    encode_packets,
    encode_variable_packets,
    packet_size,
)


def _secondary(n: int) -> np.ndarray:
    sec = np.zeros(n, dtype=SECONDARY_HEADER_DTYPE)
    sec["time_coarse"] = 0x01020304 + np.arange(n)
    sec["time_fine"] = 0x0506
    sec["exposure_id"] = 0x0708090A
    sec["group"] = 0x0B0C
    sec["row"] = 0x0D0E + np.arange(n)
    sec["packet_index"] = 0x0F101112 + np.arange(n)
    return sec


def test_dtype_sizes() -> None:
    assert PRIMARY_HEADER_DTYPE.itemsize == 6
    assert SECONDARY_HEADER_DTYPE.itemsize == 18
    assert HEADER_DTYPE.itemsize == HEADER_SIZE == 24
    assert SECONDARY_HEADER_DTYPE.names == (
        "time_coarse", "time_fine", "exposure_id", "group", "row", "packet_index"
    )
    assert packet_size(4096) == 4122


def test_fixed_packet_layout_matches_contract_byte_for_byte() -> None:
    payload = np.arange(2 * 10, dtype=np.uint8).reshape(2, 10)
    out = encode_packets(0x123, [5, 16383 + 7], _secondary(2), payload)
    assert out.dtype == np.uint8 and out.shape == (2 * 36,)
    for i, pkt in enumerate(out.reshape(2, 36)):
        raw = pkt.tobytes()
        word0, word1, dlen = struct.unpack(">HHH", raw[:6])
        assert word0 >> 13 == 0  # version
        assert (word0 >> 12) & 1 == 0  # type TM
        assert (word0 >> 11) & 1 == 1  # secondary header flag
        assert word0 & 0x7FF == 0x123
        assert word1 >> 14 == 3
        assert word1 & 0x3FFF == [5, 6][i]  # 16390 masked to 14 bits -> 6
        assert dlen == 18 + 10 + 2 - 1
        assert struct.unpack(">IHIHHI", raw[6:24]) == (
            0x01020304 + i, 0x0506, 0x0708090A, 0x0B0C, 0x0D0E + i, 0x0F101112 + i
        )
        assert raw[24:34] == payload[i].tobytes()
        assert struct.unpack(">H", raw[34:])[0] == crc16(raw[:34])


def test_non_byte_payloads_are_written_big_endian() -> None:
    pixels = np.array([[0x0102, 0xA0B0]], dtype=np.uint16)
    out = encode_packets(1, 0, _secondary(1), pixels)
    assert out[HEADER_SIZE : HEADER_SIZE + 4].tobytes() == b"\x01\x02\xa0\xb0"


def test_variable_packets_layout() -> None:
    payloads = [b"hello", b"", b"x" * 300]
    out = encode_variable_packets([7, 8, 9], [1, 2, 3], _secondary(3), payloads)
    assert out.size == sum(len(p) + 26 for p in payloads)
    pos = 0
    for i, p in enumerate(payloads):
        raw = out[pos : pos + len(p) + 26].tobytes()
        assert struct.unpack(">H", raw[:2])[0] & 0x7FF == 7 + i
        assert struct.unpack(">H", raw[4:6])[0] == len(p) + 19
        assert raw[24 : 24 + len(p)] == p
        assert struct.unpack(">H", raw[-2:])[0] == crc16(raw[:-2])
        pos += len(p) + 26


def test_secondary_as_mapping_and_scalar_broadcast() -> None:
    fields = {name: 3 for name in SECONDARY_HEADER_DTYPE.names or ()}
    a = encode_packets(2, [0, 1], fields, np.zeros((2, 4), dtype=np.uint8))
    sec = np.zeros(2, dtype=SECONDARY_HEADER_DTYPE)
    for name in fields:
        sec[name] = 3
    b = encode_packets(2, [0, 1], sec, np.zeros((2, 4), dtype=np.uint8))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"apid": 2048}, ValueError),
        ({"apid": -1}, ValueError),
        ({"payloads": np.zeros((2, 65517), dtype=np.uint8)}, ValueError),
        ({"payloads": np.zeros(8, dtype=np.uint8)}, ValueError),
        ({"seq_count": [1, 2, 3]}, ValueError),
        ({"seq_count": [1.5, 2.0]}, TypeError),
        ({"secondary": {"time_coarse": 1}}, ValueError),
        ({"secondary": {n: -1 for n in SECONDARY_HEADER_DTYPE.names or ()}}, ValueError),
        ({"secondary": {n: 2**32 for n in SECONDARY_HEADER_DTYPE.names or ()}}, ValueError),
    ],
)
def test_encode_rejects_bad_input(kwargs: dict, error: type[Exception]) -> None:
    args = {
        "apid": 1,
        "seq_count": [0, 1],
        "secondary": _secondary(2),
        "payloads": np.zeros((2, 8), dtype=np.uint8),
    }
    args.update(kwargs)
    with pytest.raises(error):
        encode_packets(**args)


def test_encode_does_not_modify_inputs() -> None:
    sec = _secondary(3)
    payload = np.arange(3 * 5, dtype=np.uint16).reshape(3, 5)
    seq = np.array([16383, 16384, 40000])
    copies = (sec.copy(), payload.copy(), seq.copy())
    encode_packets(np.array([1, 2, 3]), seq, sec, payload)
    encode_variable_packets(1, seq, sec, [payload[0], b"ab", bytearray(b"c")])
    np.testing.assert_array_equal(sec, copies[0])
    np.testing.assert_array_equal(payload, copies[1])
    np.testing.assert_array_equal(seq, copies[2])


def test_empty_encode() -> None:
    assert encode_packets(1, np.zeros(0, dtype=int), _secondary(0), np.zeros((0, 4), np.uint8)).size == 0
    assert encode_variable_packets(1, np.zeros(0, dtype=int), _secondary(0), []).size == 0
