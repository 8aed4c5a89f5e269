"""Ingest a downlink with every fault against the simulator's truth."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from obsflow.db import make_engine
from obsflow.events import Event
from obsflow.fileio import sha256_file
from obsflow.ingest import accounting_status, gap_report, ingest_once
from obsflow.ingest.tables import (
    EngineeringSample,
    EphemerisPoint,
    ExposureLedger,
    ObservationLog,
)
from obsflow.models import DQ, read_uncal
from obsflow.simulate.truth import read_truth

from .conftest import deliver, dump_files


def _truth_missing(result) -> set[tuple[int, int]]:  # type: ignore[no-untyped-def]
    fates = Table.read(result.out / "truth" / "packets.ecsv")
    science = {1025, 1026, 1027, 1028}
    lost = {"dropped", "corrupted", "truncated"}
    return {(int(r["exposure_id"]), int(r["packet_index"])) for r in fates
            if r["fault"] in lost and int(r["apid"]) in science}


def _ledger_missing(engine) -> set[tuple[int, int]]:  # type: ignore[no-untyped-def]
    return {(g["exposure_id"], i) for g in gap_report(engine)
            for a, b in g["missing_ranges"] for i in range(a, b + 1)}


def test_gap_list_equals_truth_then_retransmission_closes_it(downlink, site_factory) -> None:
    cfg = site_factory()
    deliver(dump_files(downlink, retransmission=False), cfg.incoming_dir)
    report = ingest_once(cfg)
    assert not report.quarantined
    engine = make_engine(cfg.database_url)
    truth_missing = _truth_missing(downlink)
    assert truth_missing, "the simulation should have lost packets"
    assert _ledger_missing(engine) == truth_missing
    waiting = {g["exposure_id"] for g in gap_report(engine)}
    assert all(a.exposure_id not in waiting for a in report.assembled)

    deliver(dump_files(downlink, retransmission=True), cfg.incoming_dir)
    report2 = ingest_once(cfg)
    assert {a.exposure_id for a in report2.assembled} == waiting
    assert gap_report(engine) == []
    status = accounting_status(engine)
    plan = json.loads((downlink.out / "truth" / "plan.json").read_text())
    executed = [e for e in plan["exposures"] if e["status"] == "executed"]
    assert status["exposures"]["complete"] == len(executed)
    assert status["exposures"]["skipped"] == len(plan["exposures"]) - len(executed)
    assert status["open_gaps"] == {"exposures": 0, "packets": 0}
    engine.dispose()


def test_every_cube_equals_truth_byte_for_byte(downlink, site_factory) -> None:
    cfg = site_factory()
    deliver(dump_files(downlink), cfg.incoming_dir)
    ingest_once(cfg)
    truths = sorted((downlink.out / "truth").glob("*_truth.fits"))
    products = sorted((cfg.products_dir / "ingest").rglob("*_uncal.fits"))
    assert len(products) == len(truths) > 0
    for path in products:
        truth = read_truth(downlink.out / "truth" / path.name.replace("_uncal", "_truth"))
        level1 = read_uncal(path)
        assert level1.data.dtype == np.uint16
        assert np.array_equal(level1.data, truth.cube)
        assert level1.groupdq is None
        assert level1.meta == truth.meta
        assert set(level1.raw_files) <= set(downlink.downlink_files)
        assert level1.wcs is not None and level1.wcs.has_celestial
        # identity and provenance: its run, and each level-0 file with the sha256 of its bytes
        assert level1.ref is not None and level1.provenance is not None
        assert level1.ref.run == "ingest" and level1.ref.data_id == truth.meta.data_id
        assert path.relative_to(cfg.products_dir).as_posix() == level1.ref.relpath()
        assert [f.name for f in level1.provenance.input_files] == level1.raw_files
        for used in level1.provenance.input_files:
            assert used.sha256 == sha256_file(downlink.out / "downlink" / used.name)


def test_duplicates_crc_and_metadata_recorded(downlink, site_factory) -> None:
    cfg = site_factory()
    deliver(dump_files(downlink), cfg.incoming_dir)
    ingest_once(cfg)
    engine = make_engine(cfg.database_url)
    fates = Table.read(downlink.out / "truth" / "packets.ecsv")
    dup_truth = Counter(int(r["exposure_id"]) for r in fates
                        if r["fault"] == "duplicated" and int(r["exposure_id"]) > 0)
    crc_truth = Counter(int(r["exposure_id"]) for r in fates if r["fault"] == "corrupted")
    with Session(engine) as s:
        rows = {r.exposure_id: r for r in s.execute(select(ExposureLedger)).scalars()}
        # a retransmitted packet that also arrived intact once is a duplicate too
        for exp_id, n in dup_truth.items():
            assert rows[exp_id].duplicates >= n
        for exp_id, n in crc_truth.items():
            assert rows[exp_id].crc_failures == n
        assert sum(r.crc_failures for r in rows.values()) == sum(crc_truth.values())
        n_eng = s.execute(select(func.count()).select_from(EngineeringSample)).scalar_one()
        n_eph = s.execute(select(func.count()).select_from(EphemerisPoint)).scalar_one()
        n_log = s.execute(select(func.count()).select_from(ObservationLog)).scalar_one()
        events = s.execute(select(Event)).scalars().all()
    eng_truth = Table.read(downlink.out / "truth" / "engineering.ecsv")
    channels = [c for c in eng_truth.colnames if c not in ("mjd_utc", "mission_s")]
    assert n_eng == len(eng_truth) * len(channels)
    assert n_eph > 2
    assert n_log == len(downlink.plan.exposures)
    assert sorted(e.payload["exposure_id"] for e in events) == sorted(rows[k].exposure_id for k in rows
                                                                       if rows[k].state == "complete")
    assert all(e.kind == "exposure_ready" for e in events)
    engine.dispose()


def test_level1_header_has_engineering_and_ephemeris(downlink, site_factory) -> None:
    cfg = site_factory()
    deliver(dump_files(downlink), cfg.incoming_dir)
    ingest_once(cfg)
    path = sorted((cfg.products_dir / "ingest").rglob("*_uncal.fits"))[0]
    header = fits.getheader(path)
    eng = Table.read(downlink.out / "truth" / "engineering.ecsv")
    for channel in ("FPA_TEMP", "ASIC_TMP", "OTA_TEMP", "DET_BIAS"):
        expected = np.interp(header["EXPMID"], eng["mjd_utc"], eng[channel])
        assert header[channel] == pytest.approx(expected, abs=1e-5)
    for key in ("OBS_X", "OBS_Y", "OBS_Z", "OBS_VX", "OBS_VY", "OBS_VZ"):
        assert np.isfinite(header[key])
    assert abs(np.hypot(np.hypot(header["OBS_X"], header["OBS_Y"]), header["OBS_Z"]) - 1.6e6) < 4e5
    assert header["PRODVER"] == 1 and header["PARTIAL"] is False
    assert header["NPKTRCV"] == header["NPKTEXP"] > 0
    for key in ("PROGRAM", "OBSERVTN", "VISIT", "EXPOSURE", "TARGNAME", "TARG_RA", "TARG_DEC",
                "PA_V3", "INSTRUME", "DETECTOR", "FILTER", "READPATT", "NGROUPS", "NFRAMES",
                "GROUPGAP", "TFRAME", "TGROUP", "SUBARRAY", "EXPSTART", "EXPMID", "EXPEND"):
        assert key in header


def test_partial_after_deadline_then_superseded(downlink, site_factory) -> None:
    cfg = site_factory(partial_deadline_hours=1e-9)
    deliver(dump_files(downlink, retransmission=False), cfg.incoming_dir)
    report = ingest_once(cfg)
    partial = [a for a in report.assembled if a.partial]
    assert partial
    engine = make_engine(cfg.database_url)
    missing = _ledger_missing(engine)
    for item in partial:
        level1 = read_uncal(item.path)
        assert level1.groupdq is not None
        ppp = _rows_per_packet(engine, item) * level1.data.shape[-1]
        flat = level1.groupdq.reshape(-1)
        expected_bad = {i for (e, i) in missing if e == item.exposure_id}
        bad_packets = set(np.flatnonzero(flat[::ppp] != 0).tolist())
        assert bad_packets == expected_bad
        assert np.all(flat[flat != 0] == DQ.DROPOUT | DQ.DO_NOT_USE)
        assert fits.getheader(item.path)["PARTIAL"] is True
    deliver(dump_files(downlink, retransmission=True), cfg.incoming_dir)
    report2 = ingest_once(cfg)
    redone = {a.exposure_id: a for a in report2.assembled}
    for item in partial:
        new = redone[item.exposure_id]
        assert not new.partial and new.version == 2 and new.path.name == item.path.name
        assert read_uncal(new.path).groupdq is None
        # the first version stays where it was, a product of its own, never replaced
        assert new.path != item.path and new.ref.uuid != item.ref.uuid
        assert fits.getheader(item.path)["PARTIAL"] is True
        assert read_uncal(item.path).ref == item.ref and read_uncal(new.path).ref == new.ref
    with Session(engine) as s:
        keys = {e.key for e in s.execute(select(Event)).scalars()}
    assert all(f"{i.path.name}:v1" in keys and f"{i.path.name}:v2" in keys for i in partial)
    engine.dispose()


def _rows_per_packet(engine, item) -> int:  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        return s.get(ObservationLog, item.exposure_id).rows_per_packet  # type: ignore[union-attr]


def test_rerun_is_idempotent(downlink, site_factory) -> None:
    cfg = site_factory()
    deliver(dump_files(downlink), cfg.incoming_dir)
    ingest_once(cfg)
    engine = make_engine(cfg.database_url)
    before = accounting_status(engine)
    again = ingest_once(cfg)
    assert again.archived == again.parsed == again.assembled == []
    after = accounting_status(engine)
    assert before == after
    engine.dispose()


def test_cube_scatter_is_pure(tmp_path: Path) -> None:
    from obsflow.ingest.assemble import scatter_ranges
    from obsflow.telemetry import SECONDARY_HEADER_DTYPE, encode_packets

    pixels = np.arange(4 * 2 * 8, dtype=np.uint16).reshape(8, 8) * 7
    payload = pixels.reshape(4, 16)  # 4 packets of 2 rows x 8 columns
    sec = np.zeros(4, SECONDARY_HEADER_DTYPE)
    sec["packet_index"] = np.arange(4)
    buf = encode_packets(5, np.arange(4), sec, payload)
    size = buf.size // 4
    out = np.zeros(64, np.uint16)
    scatter_ranges(out, buf, np.array([[0, 1, 0, size], [3, 3, 3 * size, size]]), 16)
    assert np.array_equal(out[:32], pixels.reshape(-1)[:32])
    assert np.all(out[32:48] == 0)
    assert np.array_equal(out[48:], pixels.reshape(-1)[48:])


def test_sequence_continuity_per_file_matches_the_faults(downlink, site_factory) -> None:
    """Wrap-around is not a gap; drops, duplicates and disorder are counted per file and APID."""
    from obsflow.ingest.tables import ApidContinuity, RawFile
    from obsflow.telemetry import decode_file, unwrap_sequence

    cfg = site_factory()
    files = dump_files(downlink, retransmission=False)
    deliver(files, cfg.incoming_dir)
    ingest_once(cfg)
    engine = make_engine(cfg.database_url)
    with Session(engine) as s:
        rows = s.execute(select(ApidContinuity, RawFile.name)
                         .join(RawFile, RawFile.id == ApidContinuity.raw_file_id)).all()
    engine.dispose()
    assert rows
    by_key = {(name, c.apid): c for c, name in rows}
    for path in files:
        if not path.name.endswith(".ccsds"):
            continue
        table = decode_file(path, tolerant=True)
        for apid, packets in table.split_by_apid().items():
            counts = packets.seq_count[packets.crc_ok]
            u = unwrap_sequence(counts)
            expected_missing = int(np.unique(u).size and (u.max() - u.min() + 1 - np.unique(u).size))
            row = by_key[(path.name, int(apid))]
            assert row.missing == expected_missing
            assert row.duplicates == counts.size - np.unique(u).size


def test_continuity_across_the_14_bit_wrap() -> None:
    """ccsdspy mis-handles the wrap and ignores duplicates: ours counts exactly."""
    from obsflow.ingest.parse import _continuity

    counts = (16300 + np.arange(200)) % 16384
    counts = np.delete(counts, [120, 150, 151])  # 16420 -> 36, 50, 51 lost after the wrap
    counts = np.insert(counts, 10, counts[9])  # one duplicate
    counts[[30, 31]] = counts[[31, 30]]  # one swap
    row = _continuity(1025, counts)
    assert row == {"apid": 1025, "packets": 198, "first_count": 0, "last_count": 199,
                   "missing": 3, "duplicates": 1, "out_of_order": 1}


def test_smallsat_profile_ingests_to_truth(tmp_path_factory, tmp_path) -> None:
    """The small mission (one 256x256 detector, its own APIDs) goes through ingest too."""
    from obsflow.simulate.downlink import parse_faults
    from obsflow.simulate.run import SimOptions, simulate

    from .conftest import make_site

    sim = simulate(tmp_path_factory.mktemp("smallsat"),
                   SimOptions(seed=4, profile="smallsat", exposures=3, faults=parse_faults("all")))
    cfg = make_site(tmp_path / "site", profile="smallsat")
    assert cfg.profile.name == "smallsat"
    deliver([sim.out / "downlink" / n for n in sim.downlink_files], cfg.incoming_dir)
    report = ingest_once(cfg)
    assert not report.quarantined and report.assembled
    for item in report.assembled:
        truth = read_truth(sim.out / "truth" / item.path.name.replace("_uncal", "_truth"))
        assert np.array_equal(read_uncal(item.path).data, truth.cube)
