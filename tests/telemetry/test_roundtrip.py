"""encode -> decode round trips, CRC flags and PacketTable methods."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from obsflow.telemetry import (
    SECONDARY_HEADER_DTYPE,
    decode,
    decode_file,
    encode_packets,
    encode_variable_packets,
)

SEC_NAMES: tuple[str, ...] = SECONDARY_HEADER_DTYPE.names or ()
SEC_BITS = {"time_coarse": 32, "time_fine": 16, "exposure_id": 32, "group": 16, "row": 16,
            "packet_index": 32}


@st.composite
def secondary_headers(draw: st.DrawFn, n: int) -> np.ndarray:
    sec = np.zeros(n, dtype=SECONDARY_HEADER_DTYPE)
    for name in SEC_NAMES:
        dtype = np.uint32 if SEC_BITS[name] == 32 else np.uint16
        sec[name] = draw(hnp.arrays(dtype, n))
    return sec


@st.composite
def fixed_blocks(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 12))
    length = draw(st.integers(0, 40))
    return {
        "apid": draw(hnp.arrays(np.int64, n, elements=st.integers(0, 2047))),
        "seq": draw(hnp.arrays(np.int64, n, elements=st.integers(0, 2**20))),
        "sec": draw(secondary_headers(n)),
        "payloads": draw(hnp.arrays(np.uint8, (n, length))),
    }


@st.composite
def variable_blocks(draw: st.DrawFn) -> dict[str, Any]:
    payloads = draw(st.lists(st.binary(max_size=70), min_size=1, max_size=6))
    n = len(payloads)
    return {
        "apid": draw(st.integers(0, 2047)),
        "seq": draw(hnp.arrays(np.int64, n, elements=st.integers(0, 16383))),
        "sec": draw(secondary_headers(n)),
        "payloads": payloads,
    }


def _expected(block: dict[str, Any]) -> list[dict[str, Any]]:
    n = len(block["payloads"])
    apid = np.broadcast_to(block["apid"], (n,))
    return [
        {
            "apid": int(apid[i]),
            "seq_count": int(block["seq"][i]) % 16384,
            **{name: int(block["sec"][name][i]) for name in SEC_NAMES},
            "payload": bytes(block["payloads"][i]),
        }
        for i in range(n)
    ]


def _check(table: Any, expected: list[dict[str, Any]]) -> None:
    assert len(table) == len(expected)
    assert table.crc_ok.all()
    assert (table.seq_flags == 3).all()
    assert table.skipped == []
    for i, exp in enumerate(expected):
        for name in ("apid", "seq_count", *SEC_NAMES):
            assert int(getattr(table, name)[i]) == exp[name], name
        assert table.payload(i) == exp["payload"]
        assert table.length[i] == len(exp["payload"]) + 26
    np.testing.assert_array_equal(table.offset[1:], np.cumsum(table.length)[:-1])


@settings(max_examples=60, deadline=None)
@given(fixed_blocks())
def test_fixed_length_round_trip(block: dict[str, Any]) -> None:
    stream = encode_packets(block["apid"], block["seq"], block["sec"], block["payloads"])
    table = decode(stream)
    _check(table, _expected(block))
    np.testing.assert_array_equal(table.payloads(), block["payloads"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(fixed_blocks(), variable_blocks()), min_size=1, max_size=6))
def test_mixed_stream_round_trip(blocks: list[dict[str, Any]]) -> None:
    parts, expected = [], []
    for block in blocks:
        encoder = encode_variable_packets if isinstance(block["payloads"], list) else encode_packets
        parts.append(encoder(block["apid"], block["seq"], block["sec"], block["payloads"]))
        expected += _expected(block)
    stream = np.concatenate(parts)
    _check(decode(stream.tobytes()), expected)
    _check(decode(stream), expected)


def _stream(n: int = 6, length: int = 16, apid: Any = 0x42) -> np.ndarray:
    sec = np.zeros(n, dtype=SECONDARY_HEADER_DTYPE)
    sec["packet_index"] = np.arange(n)
    sec["time_coarse"] = 1000 + np.arange(n)
    sec["time_fine"] = 0x8000
    payload = (np.arange(n * length) % 251).astype(np.uint8).reshape(n, length)
    return encode_packets(apid, np.arange(n), sec, payload)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 5), st.integers(6 * 8, 42 * 8 - 1))
def test_bit_flip_flags_only_that_packet(index: int, bit: int) -> None:
    # Flip one bit anywhere after the primary header: secondary header, payload or CRC.
    stream = _stream()
    size = 42
    corrupted = stream.copy()
    corrupted[index * size + bit // 8] ^= np.uint8(1 << (bit % 8))
    for tolerant in (False, True):
        table = decode(corrupted, tolerant=tolerant)
        assert len(table) == 6 and table.skipped == []
        assert table.crc_ok.tolist() == [i != index for i in range(6)]
    np.testing.assert_array_equal(decode(stream).crc_ok, True)


def test_decode_does_not_modify_or_copy_input() -> None:
    stream = _stream()
    copy = stream.copy()
    table = decode(stream)
    np.testing.assert_array_equal(stream, copy)
    assert np.shares_memory(table.buffer, stream)
    assert not table.buffer.flags.writeable


def test_empty_stream() -> None:
    table = decode(b"")
    assert len(table) == 0 and table.skipped == []
    assert table.payloads().shape == (0, 0)


def test_split_by_apid_and_select() -> None:
    apids = np.array([3, 1, 3, 2, 1, 3])
    table = decode(_stream(apid=apids))
    parts = table.split_by_apid()
    assert list(parts) == [1, 2, 3]
    for apid, part in parts.items():
        np.testing.assert_array_equal(part.apid, apid)
        np.testing.assert_array_equal(part.packet_index, np.flatnonzero(apids == apid))
        rows = part.payloads()  # gathered from unevenly spaced offsets
        assert rows.shape == ((apids == apid).sum(), 16)
        assert [r.tobytes() for r in rows] == [part.payload(i) for i in range(len(part))]
        assert part.source == table.source
    assert sum(len(p) for p in parts.values()) == len(table)
    picked = table.select([4, 0])
    assert picked.packet_index.tolist() == [4, 0]
    np.testing.assert_array_equal(picked.payloads(), table.payloads()[[4, 0]])
    assert picked.payload(0) == table.payload(4)
    assert len(table.select(2)) == 1
    assert table.select(slice(1, 3)).packet_index.tolist() == [1, 2]
    with pytest.raises(ValueError):
        table.select(np.ones(3, dtype=bool))


def test_payloads_requires_equal_sizes() -> None:
    sec = np.zeros(2, dtype=SECONDARY_HEADER_DTYPE)
    table = decode(encode_variable_packets(5, [0, 1], sec, [b"ab", b"abc"]))
    assert table.payload_size.tolist() == [2, 3]
    with pytest.raises(ValueError, match="payload sizes differ"):
        table.payloads()
    assert table.select([1]).payloads().tolist() == [[97, 98, 99]]


def test_payloads_is_a_copy() -> None:
    stream = _stream()
    table = decode(stream)
    pay = table.payloads()
    pay[:] = 0
    np.testing.assert_array_equal(decode(stream).payloads(), table.payloads())
    assert table.payloads().any()


def test_time_seconds_and_packet_bytes() -> None:
    stream = _stream()
    table = decode(stream)
    np.testing.assert_array_equal(table.time_seconds(), 1000.5 + np.arange(6))
    assert table.packet_bytes(1) == stream[42:84].tobytes()


def test_decode_file(tmp_path: Path) -> None:
    path = tmp_path / "exp.bin"
    path.write_bytes(_stream().tobytes())
    table = decode_file(path)
    assert len(table) == 6 and table.source == str(path)
