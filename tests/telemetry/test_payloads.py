"""Payload layouts: round trips, an independent ``struct`` decode, malformed payloads."""

from __future__ import annotations

import json
import struct
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from obsflow.profiles import builtin_profiles, load_profile
from obsflow.telemetry import (
    OBSLOG_FIELDS,
    ObservationLogRecord,
    PayloadKind,
    apid_kinds,
    decode,
    decode_engineering,
    decode_obslog,
    decode_science,
    encode_engineering,
    encode_obslog,
    encode_packets,
    encode_science,
    engineering_dtype,
    join_time,
    rows_per_packet,
    science_header_fields,
    science_packet_count,
    secondary_headers,
    split_time,
)

CHANNELS = ("FPA_TEMP", "ASIC_TMP", "DET_BIAS")


@st.composite
def cubes(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    """A small uint16 cube and a rows-per-packet that divides its height."""
    nints, ngroups = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    ny, nx = draw(st.integers(1, 12)), draw(st.integers(1, 9))
    rows = draw(st.sampled_from([r for r in range(1, ny + 1) if ny % r == 0]))
    cube = draw(hnp.arrays(np.uint16, (nints, ngroups, ny, nx)))
    return cube, rows


# -- science ---------------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(cubes())
def test_science_round_trip_and_header_fields(case: tuple[np.ndarray, int]) -> None:
    cube, rows = case
    nints, ngroups, ny, nx = cube.shape
    payloads = encode_science(cube, rows)
    n = science_packet_count(nints, ngroups, ny, rows)
    assert payloads.shape == (n, rows * nx * 2) and payloads.dtype == np.uint8
    pixels = decode_science(payloads, rows * nx)
    assert np.array_equal(pixels.reshape(-1), cube.reshape(-1))  # packet k = flat slice k
    fields = science_header_fields(nints, ngroups, ny, rows)
    assert fields["packet_index"].tolist() == list(range(n))
    for k in range(n):  # each packet's header says where its rows sit in the cube
        integration, group = divmod(int(fields["group"][k]), ngroups)
        first = int(fields["row"][k])
        expect = cube[integration, group, first:first + rows, :]
        assert np.array_equal(pixels[k].reshape(rows, nx), expect)


def test_science_payload_decoded_independently_with_struct() -> None:
    cube = np.array([[[[0x0102, 0xA0B0, 7], [65535, 0, 256]]]], np.uint16)  # (1, 1, 2, 3)
    payloads = encode_science(cube, 1)
    assert payloads.shape == (2, 6)
    for k in range(2):
        assert struct.unpack(">3H", payloads[k].tobytes()) == tuple(cube[0, 0, k].tolist())
    assert payloads[0, :2].tolist() == [0x01, 0x02]  # most significant byte first


def test_science_packet_in_a_stream_decoded_with_struct() -> None:
    """Whole packet bytes read back field by field with ``struct``, not the codec."""
    cube = np.arange(2 * 4 * 5, dtype=np.uint16).reshape(1, 2, 4, 5) * 997
    rows = 2
    fields = science_header_fields(1, 2, 4, rows)
    n = fields["packet_index"].size
    time = 1000.25 + np.arange(n)
    sec = secondary_headers(time, 42, fields["group"], fields["row"], fields["packet_index"])
    stream = encode_packets(33, np.arange(n), sec, encode_science(cube, rows)).tobytes()
    size = len(stream) // n
    for k in range(n):
        packet = stream[k * size:(k + 1) * size]
        pid, _, _ = struct.unpack(">3H", packet[:6])
        coarse, fine, exp_id, group, row, index = struct.unpack(">IHIHHI", packet[6:24])
        pixels = struct.unpack(f">{rows * 5}H", packet[24:-2])
        assert pid & 0x7FF == 33 and exp_id == 42 and index == k
        assert coarse == 1000 + k and fine == 16384
        expect = cube[0, group, row:row + rows, :].reshape(-1)
        assert pixels == tuple(expect.tolist())


def test_science_malformed_payload_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"'pixels' has 7 bytes, expected 8 \(4 big-endian"):
        decode_science(np.zeros((3, 7), np.uint8), 4)
    with pytest.raises(ValueError, match="expected \\(N, L\\) uint8"):
        decode_science(np.zeros((3, 4), np.uint16), 4)


def test_science_encode_checks_its_input() -> None:
    with pytest.raises(ValueError, match="nints, ngroups, ny, nx"):
        encode_science(np.zeros((4, 4), np.uint16), 1)
    with pytest.raises(ValueError, match="uint16 DN"):
        encode_science(np.zeros((1, 1, 2, 2), np.float32), 1)
    with pytest.raises(ValueError, match="0..65535"):
        encode_science(np.full((1, 1, 2, 2), 70000, np.int64), 1)
    with pytest.raises(ValueError, match="divisor of the 4 detector rows, got 3"):
        encode_science(np.zeros((1, 1, 4, 2), np.uint16), 3)
    same = encode_science(np.arange(8, dtype=np.int64).reshape(1, 1, 2, 4), 2)
    assert np.array_equal(same, encode_science(np.arange(8, dtype=np.uint16).reshape(1, 1, 2, 4), 2))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 300), st.integers(1, 300), st.integers(0, 5000))
def test_rows_per_packet_is_the_largest_fitting_divisor(nx: int, ny: int, target: int) -> None:
    rows = rows_per_packet(nx, ny, target)
    assert ny % rows == 0
    fitting = [r for r in range(1, ny + 1) if ny % r == 0 and 2 * r * nx <= target]
    assert rows == (max(fitting) if fitting else 1)


# -- engineering -----------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(hnp.arrays(np.float32, st.tuples(st.integers(0, 6), st.just(len(CHANNELS))),
                  elements=st.floats(width=32, allow_nan=False)))
def test_engineering_round_trip(values: np.ndarray) -> None:
    payloads = encode_engineering(values, CHANNELS)
    assert payloads.shape == (values.shape[0], 4 * len(CHANNELS))
    back = decode_engineering(payloads, CHANNELS)
    assert back.dtype == np.float64
    assert np.array_equal(back, values.astype(np.float64))


def test_engineering_payload_decoded_independently_with_struct() -> None:
    values = np.array([[35.5, -1.25, 1e-3], [0.0, 2.0**20, -7.0]], np.float32)
    payloads = encode_engineering(values, CHANNELS)
    for k in range(2):
        got = struct.unpack(">3f", payloads[k].tobytes())
        assert got == tuple(float(v) for v in values[k])
    dtype = engineering_dtype(CHANNELS)
    assert dtype.names == CHANNELS and dtype.itemsize == 12
    assert payloads[:, :4].tobytes() == values[:, 0].astype(">f4").tobytes()


def test_engineering_malformed_payload_names_the_channels() -> None:
    with pytest.raises(ValueError, match=r"carries 8 bytes, expected 12 \(float32 x 3 channels "
                                         r"FPA_TEMP, ASIC_TMP, DET_BIAS\)"):
        decode_engineering(np.zeros((2, 8), np.uint8), CHANNELS)
    with pytest.raises(ValueError, match=r"expected shape \(N, 3\)"):
        encode_engineering(np.zeros((2, 2), np.float32), CHANNELS)


# -- observation log -------------------------------------------------------------------

_META: dict[str, Any] = {"exposure_id": 17, "status": "executed", "program": "01234",
                         "frame_time": 10.7, "filter": "F150W", "extra": {}}


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2047), st.integers(0, 10**6), st.integers(1, 4096),
       st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: k not in OBSLOG_FIELDS),
                       st.one_of(st.integers(), st.text(max_size=10), st.booleans()), max_size=5))
def test_obslog_round_trip(apid: int, expected: int, rows: int, more: dict[str, Any]) -> None:
    record = ObservationLogRecord(apid, expected, rows, {**more, **_META})
    back = decode_obslog(encode_obslog(record))
    assert back == record
    assert back is not None and back.exposure_id == 17 and back.status == "executed"


def test_obslog_payload_is_sorted_json_read_independently() -> None:
    payload = encode_obslog(ObservationLogRecord(1025, 96, 4, _META))
    body = json.loads(payload.decode("utf-8"))
    assert body == {"record": "exposure", "apid": 1025, "packets_expected": 96,
                    "rows_per_packet": 4, **_META}
    assert list(body) == sorted(body)  # keys sorted: the bytes depend on content only
    assert payload == json.dumps(body, sort_keys=True).encode()


def test_obslog_other_records_are_ignored() -> None:
    assert decode_obslog(b'{"record": "slew", "apid": 3}') is None


@pytest.mark.parametrize(("payload", "message"), [
    (b"\xff\xfe", "not JSON"),
    (b'{"record": "exposure"', "not JSON"),
    (b"[1, 2]", "expected a JSON object, got list"),
    (b'{"record": "exposure", "apid": 32, "packets_expected": 4, "exposure_id": 1, '
     b'"status": "executed"}', "field 'rows_per_packet' missing; expected int"),
    (b'{"record": "exposure", "apid": "32", "packets_expected": 4, "rows_per_packet": 1, '
     b'"exposure_id": 1, "status": "executed"}', "field 'apid' is '32'; expected int"),
    (b'{"record": "exposure", "apid": 32, "packets_expected": true, "rows_per_packet": 1, '
     b'"exposure_id": 1, "status": "executed"}', "field 'packets_expected' is True"),
    (b'{"record": "exposure", "apid": 32, "packets_expected": 4, "rows_per_packet": 1, '
     b'"exposure_id": 1}', "field 'status' missing; expected str"),
])
def test_obslog_malformed_record_names_the_field(payload: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_obslog(payload)


def test_obslog_meta_may_not_shadow_record_fields() -> None:
    with pytest.raises(ValueError, match=r"\['apid'\] clash"):
        encode_obslog(ObservationLogRecord(1, 2, 3, {**_META, "apid": 9}))


# -- packet times and APIDs --------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.float64, st.integers(0, 8),
                  elements=st.floats(0, 2.0**32, exclude_max=True)))
def test_time_fields_round_down_to_a_tick(seconds: np.ndarray) -> None:
    coarse, fine = split_time(seconds)
    assert coarse.dtype == np.uint32 and fine.dtype == np.uint16
    back = join_time(coarse, fine)
    assert np.all(back <= seconds) and np.all(seconds - back < 2.0**-16)


def test_time_fields_out_of_range() -> None:
    with pytest.raises(ValueError, match="time: expected mission seconds"):
        split_time([-1.0])
    with pytest.raises(ValueError, match="time: expected mission seconds"):
        split_time([np.nan])


def test_time_round_trip_through_a_packet() -> None:
    sec = secondary_headers(np.array([12.5, 2.0**31 + 0.75]), 0, 0, 0, np.arange(2))
    table = decode(encode_packets(5, np.arange(2), sec, np.zeros((2, 0), np.uint8)))
    assert table.time_seconds().tolist() == [12.5, 2.0**31 + 0.75]


@pytest.mark.parametrize("name", builtin_profiles())
def test_apid_kinds_of_each_profile(name: str) -> None:
    profile = load_profile(name)
    kinds = apid_kinds(profile)
    assert {a for a, k in kinds.items() if k is PayloadKind.SCIENCE} == set(profile.science_apids())
    assert kinds[profile.apids.engineering] is PayloadKind.ENGINEERING
    assert kinds[profile.apids.housekeeping] is PayloadKind.OBSERVATION_LOG
    assert len(kinds) == len(profile.science_apids()) + 2
