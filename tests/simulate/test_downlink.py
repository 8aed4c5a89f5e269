"""The downlink files against the truth: packets, faults, retransmission, observation log."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from obsflow.exceptions import UnknownOptionError
from obsflow.models.metadata import ExposureMeta
from obsflow.simulate.downlink import FAULTS, make_dumps, parse_faults
from obsflow.simulate.packetize import Batch, assemble, science_batch
from obsflow.simulate.run import SimOptions
from obsflow.simulate.summary import summarize_downlink
from obsflow.telemetry import PacketTable, continuity, decode, decode_file, rows_per_packet

from .conftest import SimRun, run_simulation

_BAD = ("dropped", "corrupted", "truncated")


def _decoded(files: list[Path]) -> list[PacketTable]:
    return [decode_file(f, tolerant=True) for f in files]


def _science_key_counts(run: SimRun, tables: list[PacketTable]) -> Counter:  # type: ignore[type-arg]
    """(exposure_id, packet_index) -> number of intact science packets."""
    science = set(run.profile.science_apids())
    counts: Counter = Counter()  # type: ignore[type-arg]
    for t in tables:
        ok = t.crc_ok & np.isin(t.apid, list(science))
        counts.update(zip(t.exposure_id[ok].tolist(), t.packet_index[ok].tolist(), strict=True))
    return counts


def _all_science_keys(run: SimRun) -> set[tuple[int, int]]:
    target = run.profile.packets.target_payload_bytes
    keys = set()
    for exp_id, truth in run.truths.items():
        nints, ngroups, ny, nx = truth.cube.shape
        n = nints * ngroups * ny // rows_per_packet(nx, ny, target)
        keys |= {(exp_id, k) for k in range(n)}
    return keys


def _fates(run: SimRun) -> Table:
    return Table.read(run.out / "truth" / "packets.ecsv")


def _fate_keys(run: SimRun, faults: tuple[str, ...]) -> set[tuple[int, int]]:
    science = set(run.profile.science_apids())
    return {(int(r["exposure_id"]), int(r["packet_index"])) for r in _fates(run)
            if r["fault"] in faults and int(r["apid"]) in science}


def _rebuild(run: SimRun, tables: list[PacketTable]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Cubes rebuilt from intact science packets: exposure id -> (cube, filled mask)."""
    target = run.profile.packets.target_payload_bytes
    shapes = {e: t.cube.shape for e, t in run.truths.items()}
    out = {e: (np.zeros(s, np.uint16), np.zeros(s, bool)) for e, s in shapes.items()}
    apids = {d.apid for d in run.instrument.detectors}
    for t in tables:
        for i in np.flatnonzero(t.crc_ok & np.isin(t.apid, list(apids))):
            exp_id = int(t.exposure_id[i])
            cube, filled = out[exp_id]
            nints, ngroups, ny, nx = cube.shape
            rpp = rows_per_packet(nx, ny, target)
            integ, group = divmod(int(t.group[i]), ngroups)
            row = int(t.row[i])
            rows = np.frombuffer(t.payload(i), ">u2").reshape(rpp, nx)
            cube[integ, group, row:row + rpp] = rows
            filled[integ, group, row:row + rpp] = True
    return out


# -- rebuilding the cubes -----------------------------------------------------------------


def test_downlink_with_retransmission_rebuilds_truth_exactly(sim_run: SimRun) -> None:
    tables = _decoded(sim_run.dump_files())
    rebuilt = _rebuild(sim_run, tables)
    assert set(rebuilt) == set(sim_run.truths)
    for exp_id, (cube, filled) in rebuilt.items():
        assert filled.all(), exp_id
        assert cube.tobytes() == sim_run.truths[exp_id].cube.astype(np.uint16).tobytes(), exp_id
    # the science packets carry exactly the executed exposures
    seen = {int(e) for t in tables for e in t.exposure_id[np.isin(
        t.apid, list(sim_run.profile.science_apids()))]}
    assert seen == set(sim_run.truths)


def test_science_packets_arrive_on_the_detector_apid(sim_run: SimRun) -> None:
    apid_of = {d.name: d.apid for d in sim_run.instrument.detectors}
    tables = _decoded(sim_run.dump_files())
    for exp_id, truth in sim_run.truths.items():
        apids = {int(a) for t in tables for a in t.apid[t.crc_ok & (t.exposure_id == exp_id)]}
        apids -= {sim_run.profile.apids.housekeeping}
        assert apids == {apid_of[truth.meta.detector]}


def test_missing_without_retransmission_equals_truth_faults(sim_run: SimRun) -> None:
    counts = _science_key_counts(sim_run, _decoded(sim_run.dump_files(retransmission=False)))
    missing = _all_science_keys(sim_run) - set(counts)
    assert missing  # every fault is on: something must be missing
    assert missing == _fate_keys(sim_run, _BAD)
    assert set(counts) <= _all_science_keys(sim_run)


def test_retransmission_dump_holds_exactly_what_was_missing(sim_run: SimRun) -> None:
    retx = sim_run.dump_files(retransmission=True)
    assert len(retx) == 1
    table = decode_file(retx[0])   # strict: the retransmission is clean
    assert table.crc_ok.all() and not table.skipped
    sent = _science_key_counts(sim_run, [table])
    assert max(sent.values()) == 1
    assert set(sent) == _fate_keys(sim_run, _BAD)
    # retransmitted packets keep their original headers: sequence counts are those in the fates
    fates = _fates(sim_run)
    bad = {(int(r["apid"]), int(r["seq_count"])) for r in fates if r["fault"] in _BAD}
    assert set(zip(table.apid.tolist(), table.seq_count.tolist(), strict=True)) == bad


def test_duplicated_packets_arrive_twice(sim_run: SimRun) -> None:
    counts = _science_key_counts(sim_run, _decoded(sim_run.dump_files(retransmission=False)))
    dups = _fate_keys(sim_run, ("duplicated",))
    assert dups
    assert {k: counts[k] for k in dups} == {k: 2 for k in dups}
    others = {k for k, v in counts.items() if v > 1}
    assert others == dups


def test_corrupted_packets_fail_their_crc_in_the_recorded_file(sim_run: SimRun) -> None:
    fates = _fates(sim_run)
    corrupted = fates[fates["fault"] == "corrupted"]
    assert len(corrupted)
    by_file = {f.name: decode_file(f, tolerant=True) for f in sim_run.dump_files()}
    n_bad = sum(int((~t.crc_ok).sum()) for t in by_file.values())
    assert n_bad == len(corrupted)
    for row in corrupted:
        table = by_file[str(row["file"])]
        match = (table.apid == row["apid"]) & (table.seq_count == row["seq_count"])
        assert match.sum() == 1
        i = int(np.flatnonzero(match)[0])
        assert not table.crc_ok[i]
        # the header is untouched: only the payload bit flipped
        assert table.exposure_id[i] == row["exposure_id"]
        assert table.packet_index[i] == row["packet_index"]


def test_truncated_dump_ends_in_a_skipped_tail(sim_run: SimRun) -> None:
    truncated = [f for f in sim_run.manifest["files"] if f.get("truncated_at") is not None]
    assert len(truncated) == 1
    entry = truncated[0]
    path = sim_run.out / "downlink" / entry["file"]
    size = path.stat().st_size
    assert size == entry["truncated_at"] == entry["bytes"]
    table = decode_file(path, tolerant=True)
    assert table.skipped
    tail = table.skipped[-1]
    assert tail.offset + tail.nbytes == size
    last_end = int(table.offset[-1] + table.length[-1])
    assert last_end == tail.offset
    fates = _fates(sim_run)
    cut = fates[fates["fault"] == "truncated"]
    assert len(cut) and set(cut["file"]) == {entry["file"]}
    # the other dumps decode strictly except for bit flips
    for f in sim_run.dump_files():
        if f.name != entry["file"]:
            assert not decode_file(f, tolerant=True).skipped, f.name


def test_manifest_sha256_matches_the_files(sim_run: SimRun) -> None:
    manifest = sim_run.manifest
    assert manifest["seed"] == sim_run.options.seed
    assert manifest["faults"] == sorted(FAULTS)
    listed = {f["file"] for f in manifest["files"]}
    assert listed == {p.name for p in (sim_run.out / "downlink").iterdir()}
    for entry in manifest["files"]:
        if entry.get("kind") == "ephemeris":
            continue
        data = (sim_run.out / "downlink" / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert len(data) == entry["bytes"]
        assert entry["retransmission"] == entry["file"].endswith("_retx.ccsds")


def test_every_packet_is_delivered_once_counting_retransmission(sim_run: SimRun) -> None:
    """Per APID, intact sequence counts from all files are gap-free once duplicates go."""
    tables = _decoded(sim_run.dump_files())
    per_apid: dict[int, list[np.ndarray]] = {}
    for t in tables:
        for apid, sub in t.split_by_apid().items():
            per_apid.setdefault(apid, []).append(sub.seq_count[sub.crc_ok])
    profile = sim_run.profile
    assert set(per_apid) >= {profile.apids.engineering, profile.apids.housekeeping}
    assert sum(len(np.concatenate(v)) for v in per_apid.values()) >= sim_run.result.packets
    for apid, parts in per_apid.items():
        seqs = np.unique(np.concatenate(parts))
        report = continuity(np.sort(seqs))
        assert report.n_missing == 0, apid


def test_summary_counts_agree_with_truth(sim_run: SimRun) -> None:
    summaries, nfiles, skipped = summarize_downlink(sim_run.out / "downlink", sim_run.profile)
    assert nfiles == len(sim_run.dump_files())
    assert skipped > 0
    fates = _fates(sim_run)
    assert sum(s.crc_failures for s in summaries.values()) == int(np.sum(fates["fault"] == "corrupted"))
    science = [s for a, s in summaries.items() if a in sim_run.profile.science_apids()]
    assert set().union(*(s.exposures for s in science)) == set(sim_run.truths)


# -- observation log ----------------------------------------------------------------------


def _obslog(run: SimRun) -> list[dict]:  # type: ignore[type-arg]
    records = {}
    for t in _decoded(run.dump_files()):
        hk = t.crc_ok & (t.apid == run.profile.apids.housekeeping)
        for i in np.flatnonzero(hk):
            records[int(t.seq_count[i])] = json.loads(t.payload(i))
    return list(records.values())


def test_observation_log_has_one_record_per_planned_product(sim_run: SimRun) -> None:
    records = _obslog(sim_run)
    plan = sim_run.result.plan.exposures
    assert len(records) == len(plan)
    assert any(m.status != "executed" for m in plan)
    target = sim_run.profile.packets.target_payload_bytes
    counts = _science_key_counts(sim_run, _decoded(sim_run.dump_files()))
    per_exposure = Counter(e for e, _ in counts)
    by_id = {r["exposure_id"]: r for r in records}
    assert set(by_id) == {m.exposure_id for m in plan}
    for meta in plan:
        rec = dict(by_id[meta.exposure_id])
        assert rec.pop("record") == "exposure"
        assert rec.pop("apid") == sim_run.instrument.detector(meta.detector).apid
        rpp = rec.pop("rows_per_packet")
        assert rpp == rows_per_packet(meta.subsize1, meta.subsize2, target)
        expected = rec.pop("packets_expected")
        if meta.status == "executed":
            assert expected == meta.nints * meta.ngroups * meta.subsize2 // rpp
            assert expected == per_exposure[meta.exposure_id]
        else:
            assert expected == 0
            assert per_exposure[meta.exposure_id] == 0
        assert ExposureMeta.from_dict(rec) == meta


def test_smallsat_plan_has_a_product_that_was_not_executed(smallsat_run: SimRun) -> None:
    statuses = {m.status for m in smallsat_run.result.plan.exposures}
    assert statuses - {"executed"} and statuses <= {"executed", "skipped", "failed"}
    assert len(smallsat_run.truths) < len(smallsat_run.result.plan.exposures)


# -- faults one at a time -----------------------------------------------------------------


@pytest.fixture(scope="module")
def drop_only(tmp_path_factory: pytest.TempPathFactory) -> SimRun:
    return run_simulation(tmp_path_factory.mktemp("sim_drop"),
                          SimOptions(seed=7, profile="smallsat", exposures=3, subarray="SUB64",
                                     faults=parse_faults("drop")))


@pytest.fixture(scope="module")
def no_faults(tmp_path_factory: pytest.TempPathFactory) -> SimRun:
    return run_simulation(tmp_path_factory.mktemp("sim_clean"),
                          SimOptions(seed=7, profile="smallsat", exposures=3, subarray="SUB64",
                                     faults=parse_faults("none")))


def test_drop_only_drops(drop_only: SimRun) -> None:
    fates = _fates(drop_only)
    assert len(fates) and set(fates["fault"]) == {"dropped"}
    tables = _decoded(drop_only.dump_files(retransmission=False))
    assert all(t.crc_ok.all() and not t.skipped for t in tables)
    pairs = Counter(p for t in tables for p in zip(t.apid.tolist(), t.seq_count.tolist(),
                                                   strict=True))
    assert max(pairs.values()) == 1
    counts = _science_key_counts(drop_only, tables)
    assert _all_science_keys(drop_only) - set(counts) == _fate_keys(drop_only, ("dropped",))
    assert len(drop_only.dump_files(retransmission=True)) == 1
    # no reordering: within each file, science packets keep their time order
    for t in tables:
        sci = np.isin(t.apid, list(drop_only.profile.science_apids()))
        assert np.all(np.diff(t.time_seconds()[sci]) >= 0)


def test_no_faults_gives_a_clean_complete_stream(no_faults: SimRun) -> None:
    assert len(_fates(no_faults)) == 0
    assert not no_faults.dump_files(retransmission=True)
    assert no_faults.result.faults == {}
    files = no_faults.dump_files()
    tables = [decode_file(f) for f in files]   # strict decoding succeeds
    assert all(t.crc_ok.all() for t in tables)
    counts = _science_key_counts(no_faults, tables)
    assert set(counts) == _all_science_keys(no_faults) and max(counts.values()) == 1
    assert sum(len(t) for t in tables) == no_faults.result.packets
    rebuilt = _rebuild(no_faults, tables)
    for exp_id, (cube, filled) in rebuilt.items():
        assert filled.all() and np.array_equal(cube, no_faults.truths[exp_id].cube)
    # without "split" dumps end on exposure boundaries: no exposure spans two files
    owners = [set(t.exposure_id[np.isin(t.apid, list(no_faults.profile.science_apids()))].tolist())
              for t in tables]
    for a in range(len(owners)):
        for b in range(a + 1, len(owners)):
            assert not owners[a] & owners[b]


def test_parse_faults() -> None:
    assert parse_faults("none") == frozenset() == parse_faults("") == parse_faults(" NONE ")
    assert parse_faults("all") == frozenset(FAULTS)
    assert parse_faults("drop, bitflip") == {"drop", "bitflip"}
    with pytest.raises(UnknownOptionError) as info:
        parse_faults("drop,lightning")
    assert isinstance(info.value, ValueError)
    assert info.value.value == "lightning"
    for name in (*FAULTS, "all", "none"):
        assert name in info.value.allowed
        assert name in str(info.value)


# -- make_dumps on a synthetic stream -----------------------------------------------------

_SCI, _ENG = 32, 64


def _synthetic_stream():  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    batches = []
    for k in range(4):
        cube = rng.integers(0, 65535, (1, 4, 32, 32), dtype=np.uint16)
        times = 100.0 * k + 5.0 * np.arange(4)[None, :]
        batches.append(science_batch(cube, _SCI, k + 1, times, 256))
    n = 40
    z = np.zeros(n, np.int64)
    batches.append(Batch(_ENG, np.linspace(0, 400, n), z, z, z, np.arange(n),
                         np.zeros((n, 16), np.uint8)))
    return assemble(batches, {_SCI: 5, _ENG: 16380})


def _deliveries(stream, dumps) -> tuple[Counter, set]:  # type: ignore[no-untyped-def,type-arg]
    """Intact (apid, seq) deliveries outside the retransmission, and the retransmitted set."""
    delivered: Counter = Counter()  # type: ignore[type-arg]
    retx: set = set()  # type: ignore[type-arg]
    for d in dumps:
        table = decode(d.render(stream).tobytes(), tolerant=True)
        keys = list(zip(table.apid[table.crc_ok].tolist(), table.seq_count[table.crc_ok].tolist(),
                        strict=True))
        if d.retransmission:
            retx |= set(keys)
        else:
            delivered.update(keys)
    return delivered, retx


@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_alone_does_only_its_own_thing(fault: str) -> None:
    stream = _synthetic_stream()
    everything = set(zip(stream.apid.tolist(), stream.seq_count.tolist(), strict=True))
    dumps, fates = make_dumps(stream, {_SCI}, frozenset({fault}), 3, np.random.default_rng(1))
    delivered, retx = _deliveries(stream, dumps)
    kinds = {f["fault"] for f in fates}
    expected_kind = {"drop": {"dropped"}, "bitflip": {"corrupted"}, "duplicate": {"duplicated"},
                     "truncate": {"truncated"}, "reorder": set(), "split": set()}[fault]
    assert kinds == expected_kind
    missing = everything - set(delivered)
    assert missing == retx
    assert bool(missing) == (fault in ("drop", "bitflip", "truncate"))
    assert (max(delivered.values()) > 1) == (fault == "duplicate")
    assert any(d.truncate_at is not None for d in dumps) == (fault == "truncate")
    assert any(d.flips for d in dumps) == (fault == "bitflip")
    order = np.concatenate([d.ids for d in dumps if not d.retransmission])
    in_order = bool(np.all(np.diff(order) > 0))
    assert in_order == (fault not in ("reorder", "duplicate"))
    if fault == "reorder":
        assert sorted(order.tolist()) == list(range(len(stream)))
    if fault == "split":
        owner = stream.exposure_id[[d.ids[0] for d in dumps[1:]]]
        before = stream.exposure_id[[d.ids[-1] for d in dumps[:-1]]]
        assert np.any((owner == before) & (owner > 0))


def test_fault_table_matches_what_was_delivered() -> None:
    """With every fault on, the fate table tells exactly what did not arrive intact.

    For 40 seeds: dropped, corrupted and truncated packets are exactly the ones
    missing (and retransmitted); duplicated ones arrive exactly twice.
    """
    stream = _synthetic_stream()
    everything = set(zip(stream.apid.tolist(), stream.seq_count.tolist(), strict=True))
    problems = {}
    for seed in range(40):
        dumps, fates = make_dumps(stream, {_SCI}, frozenset(FAULTS), 3, np.random.default_rng(seed))
        delivered, retx = _deliveries(stream, dumps)
        bad = {(f["apid"], f["seq_count"]) for f in fates if f["fault"] in _BAD}
        dups = {(f["apid"], f["seq_count"]) for f in fates if f["fault"] == "duplicated"}
        missing = everything - set(delivered)
        assert missing == retx, seed
        wrong = []
        if missing != bad:
            wrong.append(f"recorded bad but delivered intact: {sorted(bad - missing)}, "
                         f"missing but not recorded: {sorted(missing - bad)}")
        twice = {k: delivered[k] for k in dups if delivered[k] != 2}
        if twice:
            wrong.append(f"'duplicated' delivered intact {twice} times")
        if wrong:
            problems[seed] = wrong
    assert not problems, problems
