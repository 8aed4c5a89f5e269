"""Parsing a raw file's packets by what their APID carries (no database)."""

from __future__ import annotations

import numpy as np
import pytest

from obsflow.ingest.parse import parse_file
from obsflow.ingest.records import engineering_rows, observation_log_rows
from obsflow.models.missiontime import mjd_utc
from obsflow.profiles import load_profile
from obsflow.telemetry import (
    ObservationLogRecord,
    decode,
    encode_engineering,
    encode_obslog,
    encode_packets,
    encode_science,
    encode_variable_packets,
    science_header_fields,
    secondary_headers,
)

PROFILE = load_profile("smallsat")  # science APID 32, engineering 64, housekeeping 65
HK, ENG, SCI = PROFILE.apids.housekeeping, PROFILE.apids.engineering, 32
CHANNELS = PROFILE.engineering.channels


def _meta(exposure_id: int, status: str = "executed") -> dict[str, object]:
    inst = PROFILE.instruments[0]
    return {"exposure_id": exposure_id, "status": status, "program": "01234", "nints": 1,
            "telescope": PROFILE.mission.telescope, "instrument": inst.name,
            "detector": inst.detectors[0].name}


def _hk_stream(payloads: list[bytes]) -> bytes:
    n = len(payloads)
    sec = secondary_headers(100.0 + np.arange(n), np.arange(1, n + 1), 0, 0, np.arange(n))
    return encode_variable_packets(HK, np.arange(n), sec, payloads).tobytes()


def _eng_stream(values: np.ndarray, times: np.ndarray) -> bytes:
    n = len(times)
    sec = secondary_headers(times, 0, 0, 0, np.arange(n))
    return encode_packets(ENG, np.arange(n), sec, encode_engineering(values, CHANNELS)).tobytes()


def test_observation_log_rows_skip_bad_crcs_and_other_records() -> None:
    records = [encode_obslog(ObservationLogRecord(SCI, 8, 4, _meta(1))),
               b'{"record": "slew"}',
               encode_obslog(ObservationLogRecord(SCI, 0, 4, _meta(2, "skipped"))),
               encode_obslog(ObservationLogRecord(SCI, 8, 4, _meta(3)))]
    data = bytearray(_hk_stream(records))
    data[-3] ^= 0xFF  # corrupt the last record's payload: its CRC fails
    rows = observation_log_rows(decode(bytes(data), source="hk.ccsds"))
    assert [(r["exposure_id"], r["status"], r["packets_expected"]) for r in rows] == [
        (1, "executed", 8), (2, "skipped", 0)]
    assert rows[0]["apid"] == SCI and rows[0]["rows_per_packet"] == 4
    assert rows[0]["meta"] == _meta(1)


def test_observation_log_error_names_the_file_and_offset() -> None:
    good = encode_obslog(ObservationLogRecord(SCI, 8, 4, _meta(1)))
    table = decode(_hk_stream([good, b"{not json"]), source="hk.ccsds")
    offset = int(table.offset[1])
    with pytest.raises(ValueError, match=f"hk.ccsds: byte offset {offset}: observation-log "
                                         "record is not JSON"):
        observation_log_rows(table)


def test_engineering_rows_are_the_values_sent() -> None:
    values = np.array([[120.5, 290.25], [119.75, 291.0]], np.float32)
    times = np.array([60.0, 120.0])
    rows = engineering_rows(decode(_eng_stream(values, times)), PROFILE)
    mjd = mjd_utc(times, PROFILE.mission.time_epoch_tai)
    assert rows == [{"mjd_utc": float(mjd[i]), "channel": ch, "value": float(values[i, k])}
                    for i in range(2) for k, ch in enumerate(CHANNELS)]


def test_engineering_rows_of_the_wrong_width_name_the_file() -> None:
    sec = secondary_headers(np.array([60.0]), 0, 0, 0, 0)
    table = decode(encode_packets(ENG, 0, sec, np.zeros((1, 12), np.uint8)), source="e.ccsds")
    with pytest.raises(ValueError, match=r"e.ccsds: engineering payload: carries 12 bytes, "
                                         r"expected 8 \(float32 x 2 channels FPA_TEMP, BRD_TEMP\)"):
        engineering_rows(table, PROFILE)


def test_parse_file_dispatches_by_what_each_apid_carries() -> None:
    cube = np.arange(2 * 8 * 4, dtype=np.uint16).reshape(1, 2, 8, 4)
    fields = science_header_fields(1, 2, 8, 4)
    n = fields["packet_index"].size
    sec = secondary_headers(np.full(n, 150.0), 7, fields["group"], fields["row"],
                            fields["packet_index"])
    science = encode_packets(SCI, np.arange(n), sec, encode_science(cube, 4)).tobytes()
    unknown = encode_packets(300, 0, secondary_headers([1.0], 0, 0, 0, 0),
                             np.zeros((1, 2), np.uint8)).tobytes()
    hk = _hk_stream([encode_obslog(ObservationLogRecord(SCI, n, 4, _meta(7)))])
    eng = _eng_stream(np.ones((1, 2), np.float32), np.array([60.0]))
    content = parse_file(hk + eng + science + unknown, "mix.ccsds", "packets", PROFILE)
    assert content.packets == n + 3 and content.crc_failures == 0
    assert list(content.science) == [SCI] and len(content.science[SCI]) == n
    assert [r["exposure_id"] for r in content.obslog] == [7]
    assert [r["channel"] for r in content.engineering] == list(CHANNELS)
    assert sorted(c["apid"] for c in content.continuity) == sorted([SCI, ENG, HK, 300])
    assert content.unknown_apids == {300: 1}  # counted, reported as unassemblable
