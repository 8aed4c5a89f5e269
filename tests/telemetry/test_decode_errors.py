"""Strict-mode framing errors and tolerant-mode resynchronisation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from obsflow.exceptions import PacketError, TruncatedPacketError
from obsflow.telemetry import SECONDARY_HEADER_DTYPE, SkippedRange, decode

SIZE = 42  # 16-byte payload + 26
N = 8


def _stream(n: int = N) -> np.ndarray:
    sec = np.zeros(n, dtype=SECONDARY_HEADER_DTYPE)
    sec["packet_index"] = np.arange(n)
    sec["exposure_id"] = 77
    payload = np.full((n, SIZE - 26), 0xAA, dtype=np.uint8)  # 0xAA never starts a header
    return encode(sec, payload)


def encode(sec: np.ndarray, payload: np.ndarray) -> np.ndarray:
    from obsflow.telemetry import encode_packets

    return encode_packets(0x30, np.arange(len(sec)), sec, payload)


def _raises(stream: np.ndarray, error: type[PacketError], offset: int, words: str) -> None:
    with pytest.raises(error) as info:
        decode(stream, source="run42.bin")
    assert info.value.offset == offset
    assert info.value.source == "run42.bin"
    assert f"run42.bin: byte offset {offset}:" in str(info.value)
    assert words in str(info.value)


def _with(stream: np.ndarray, index: int, byte: int, value: int) -> np.ndarray:
    out = stream.copy()
    out[index * SIZE + byte] = value
    return out


# ----------------------------------------------------------------- strict mode


def test_truncated_last_packet() -> None:
    _raises(_stream()[:-5], TruncatedPacketError, (N - 1) * SIZE, "past the end")


def test_trailing_bytes_shorter_than_a_header() -> None:
    stream = np.concatenate([_stream(), np.zeros(4, dtype=np.uint8)])
    _raises(stream, TruncatedPacketError, N * SIZE, "4 trailing byte(s)")


def test_garbage_between_packets() -> None:
    s = _stream()
    stream = np.concatenate([s[: 3 * SIZE], np.full(11, 0xFF, np.uint8), s[3 * SIZE :]])
    with pytest.raises(PacketError) as info:
        decode(stream, source="run42.bin")
    assert not isinstance(info.value, TruncatedPacketError)
    assert info.value.offset == 3 * SIZE
    assert "run42.bin: byte offset 126:" in str(info.value)


def test_garbage_at_start() -> None:
    stream = np.concatenate([np.frombuffer(b"JUNK\x00\x01\x02", np.uint8), _stream()])
    _raises(stream, PacketError, 0, "version 2")


@pytest.mark.parametrize(
    ("byte", "value", "words"),
    [
        (0, 0x20 | 0x08, "version 1, expected 0"),
        (0, 0xE8, "version 7, expected 0"),
        (0, 0x10 | 0x08, "packet type 1"),
        (0, 0x00, "secondary header flag is 0"),
        (2, 0x40, "sequence flags 1"),
        (5, 0x00, "data length field 0"),
        (5, 18, "data length field 18 is shorter"),
    ],
)
def test_bad_header_field(byte: int, value: int, words: str) -> None:
    stream = _with(_stream(), 5, byte, value)
    _raises(stream, PacketError, 5 * SIZE, words)


def test_length_field_past_end_of_file() -> None:
    stream = _with(_with(_stream(), N - 2, 4, 0x01), N - 2, 5, 0x00)  # 256 + 7 > 84 left
    _raises(stream, TruncatedPacketError, (N - 2) * SIZE, "length field 256")


def test_errors_are_value_errors() -> None:
    with pytest.raises(ValueError):
        decode(b"\xff" * 30)


def test_crc_mismatch_is_not_a_framing_error() -> None:
    stream = _with(_stream(), 2, SIZE - 1, 0)
    table = decode(stream)
    assert len(table) == N
    assert table.crc_ok.tolist() == [i != 2 for i in range(N)]


# --------------------------------------------------------------- tolerant mode


def _intact(table: object, indices: list[int]) -> None:
    assert table.packet_index.tolist() == indices  # type: ignore[attr-defined]
    assert table.crc_ok.all()  # type: ignore[attr-defined]


def test_tolerant_garbage_between_packets() -> None:
    s = _stream()
    junk = np.frombuffer(b"\xff" * 9 + b"\x08\x30\xc0\x00\x00\x13" + b"\x01" * 20, np.uint8)
    stream = np.concatenate([s[: 2 * SIZE], junk, s[2 * SIZE : 6 * SIZE], junk[:5], s[6 * SIZE :]])
    table = decode(stream, tolerant=True, source="t.bin")
    _intact(table, list(range(N)))
    assert [(r.offset, r.nbytes) for r in table.skipped] == [
        (2 * SIZE, junk.size),
        (6 * SIZE + junk.size, 5),
    ]
    assert all(isinstance(r, SkippedRange) for r in table.skipped)
    assert "version 7" in table.skipped[0].reason


def test_tolerant_garbage_at_start_and_all_garbage() -> None:
    stream = np.concatenate([np.full(13, 0x41, np.uint8), _stream()])
    table = decode(stream, tolerant=True)
    _intact(table, list(range(N)))
    assert table.skipped == [SkippedRange(0, 13, "packet version 2, expected 0")]
    table = decode(b"\xff" * 100, tolerant=True)
    assert len(table) == 0
    assert [(r.offset, r.nbytes) for r in table.skipped] == [(0, 100)]


@pytest.mark.parametrize(
    ("byte", "value", "words"),
    [
        (0, 0xA8, "version 5"),
        (2, 0x00, "sequence flags 0"),
        (5, 0x13, "CRC mismatch"),  # length 19: plausible, but CRC and next header wrong
        (5, 0x1C, "CRC mismatch"),  # length 28: next "header" is inside this packet
        (5, 0x30, "CRC mismatch"),  # length 48: next "header" is inside the next packet
        (5, 0x03, "data length field 3"),
    ],
)
def test_tolerant_corrupted_header_in_the_middle(byte: int, value: int, words: str) -> None:
    stream = _with(_stream(), 4, byte, value)
    table = decode(stream, tolerant=True)
    _intact(table, [0, 1, 2, 3, 5, 6, 7])
    assert [(r.offset, r.nbytes) for r in table.skipped] == [(4 * SIZE, SIZE)]
    assert words in table.skipped[0].reason


def test_tolerant_truncated_tail() -> None:
    stream = _stream()[:-7]
    table = decode(stream, tolerant=True)
    _intact(table, list(range(N - 1)))
    assert [(r.offset, r.nbytes) for r in table.skipped] == [((N - 1) * SIZE, SIZE - 7)]
    assert "past the end" in table.skipped[0].reason


def test_tolerant_short_tail() -> None:
    table = decode(np.concatenate([_stream(), np.zeros(3, np.uint8)]), tolerant=True)
    _intact(table, list(range(N)))
    assert [(r.offset, r.nbytes) for r in table.skipped] == [(N * SIZE, 3)]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, N), st.integers(0x20, 0xFF), st.binary(max_size=60)),
        min_size=1,
        max_size=3,
        unique_by=lambda t: t[0],
    )
)
def test_tolerant_random_garbage_at_packet_boundaries(
    insertions: list[tuple[int, int, bytes]],
) -> None:
    # Each garbage run starts with a byte whose version bits are nonzero, then random bytes.
    s = _stream()
    parts, expected_skips, pos = [], [], 0
    for k in range(N + 1):
        for where, first, rest in insertions:
            if where == k:
                junk = bytes([first]) + rest
                expected_skips.append((pos, len(junk)))
                parts.append(np.frombuffer(junk, np.uint8))
                pos += len(junk)
        if k < N:
            parts.append(s[k * SIZE : (k + 1) * SIZE])
            pos += SIZE
    stream = np.concatenate(parts)
    table = decode(stream, tolerant=True)
    _intact(table, list(range(N)))
    got = [(r.offset, r.nbytes) for r in table.skipped]
    if insertions and max(w for w, _, _ in insertions) == N:
        # A garbage tail is one skipped range whatever it holds.
        assert got[:-1] == expected_skips[:-1] and got[-1][0] == expected_skips[-1][0]
    else:
        assert got == expected_skips
    with pytest.raises(PacketError):
        decode(stream)
