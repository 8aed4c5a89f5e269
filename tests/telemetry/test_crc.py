"""CRC-16/CCITT-FALSE: reference vector, independent oracles, many-span kernel."""

from __future__ import annotations

import fastcrc
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from obsflow.telemetry import crc16, crc16_many


def _bitwise_crc(data: bytes) -> int:
    """Textbook bit-at-a-time CRC-16/CCITT-FALSE (the slow, obviously right oracle)."""
    reg = 0xFFFF
    for byte in data:
        reg ^= byte << 8
        for _ in range(8):
            reg = ((reg << 1) ^ 0x1021) if reg & 0x8000 else (reg << 1)
            reg &= 0xFFFF
    return reg


def test_reference_vector() -> None:
    assert crc16(b"123456789") == 0x29B1
    assert crc16(np.frombuffer(b"123456789", dtype=np.uint8)) == 0x29B1
    assert crc16(bytearray(b"123456789")) == 0x29B1


def test_empty_input_is_initial_value() -> None:
    assert crc16(b"") == 0xFFFF


def test_running_crc_over_chunks() -> None:
    data = bytes(range(200))
    assert crc16(data[77:], initial=crc16(data[:77])) == crc16(data)


def test_rejects_non_uint8_arrays_and_bad_initial() -> None:
    with pytest.raises(TypeError):
        crc16(np.zeros(4, dtype=np.uint16))
    with pytest.raises(ValueError):
        crc16(b"x", initial=0x10000)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=80))
def test_matches_bitwise_and_spacepackets_crc(data: bytes) -> None:
    # fastcrc.crc16.ibm_3740 is the CRC-16/CCITT-FALSE spacepackets uses for PUS packets.
    expected = _bitwise_crc(data)
    assert crc16(data) == expected
    assert fastcrc.crc16.ibm_3740(data) == expected


def test_spacepackets_pus_crc_check_accepts_our_trailer() -> None:
    from spacepackets.ecss import check_pus_crc

    body = bytes(range(40))
    c = crc16(body)
    assert check_pus_crc(body + c.to_bytes(2, "big"))
    assert not check_pus_crc(body + (c ^ 1).to_bytes(2, "big"))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(max_size=60), max_size=20), st.integers(0, 5))
def test_crc16_many_equals_crc16_per_span(chunks: list[bytes], gap: int) -> None:
    buf = bytearray()
    offsets, lengths = [], []
    for chunk in chunks:
        buf += b"\xa5" * gap
        offsets.append(len(buf))
        lengths.append(len(chunk))
        buf += chunk
    arr = np.frombuffer(bytes(buf), dtype=np.uint8)
    got = crc16_many(arr, np.array(offsets, dtype=np.int64), np.array(lengths, dtype=np.int64))
    assert got.dtype == np.uint16
    assert got.tolist() == [crc16(c) for c in chunks]


def test_crc16_many_rejects_out_of_bounds_spans() -> None:
    buf = np.zeros(10, dtype=np.uint8)
    with pytest.raises(ValueError):
        crc16_many(buf, np.array([5]), np.array([6]))
    with pytest.raises(ValueError):
        crc16_many(buf, np.array([-1]), np.array([2]))


def test_crc16_does_not_modify_input() -> None:
    buf = np.arange(100, dtype=np.uint8)
    copy = buf.copy()
    crc16(buf)
    crc16_many(buf, np.array([0, 10]), np.array([50, 90]))
    np.testing.assert_array_equal(buf, copy)
