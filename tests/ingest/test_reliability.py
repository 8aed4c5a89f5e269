"""Real processes: SIGKILL at random points, two ingesters on one site, fuzzed files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from obsflow.db import make_engine
from obsflow.ingest import ingest_once
from obsflow.ingest.tables import ExposureLedger, PacketRange, RawFile

from .conftest import deliver, dump_files, make_site


def _ingest_process(site: Path) -> subprocess.Popen[bytes]:
    with open(site / "logs" / "ingest-stderr.txt", "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "obsflow", "ingest", "--once", "--site",
                                 str(site)], stdout=subprocess.DEVNULL, stderr=log)


def _errors(site: Path) -> str:
    return (site / "logs" / "ingest-stderr.txt").read_text()


def _ledger(cfg: Any) -> dict[str, Any]:
    """The ledger without ids and times: what must match between runs."""
    engine = make_engine(cfg.database_url)
    with Session(engine) as s:
        files = {f.id: f.name for f in s.execute(select(RawFile)).scalars()}
        state = {
            "files": sorted((f.name, f.sha256, f.state, f.packets, f.crc_failures, f.skipped_bytes,
                             f.deliveries) for f in s.execute(select(RawFile)).scalars()),
            "exposures": sorted((e.exposure_id, e.expected, e.received, e.duplicates,
                                 e.crc_failures, e.state, e.product_version)
                                for e in s.execute(select(ExposureLedger)).scalars()),
            "ranges": sorted((r.exposure_id, r.first, r.last, files[r.raw_file_id], r.offset)
                             for r in s.execute(select(PacketRange)).scalars()),
        }
    engine.dispose()
    return state


def _products(cfg: Any) -> dict[str, bytes]:
    out = {}
    for path in sorted((cfg.products_dir / "ingest").rglob("*_uncal.fits")):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a checksum mismatch warns: make it fail
            with fits.open(path, checksum=True) as hdul:
                # name-based UUIDs: the same versions land at the same paths in both runs
                out[path.relative_to(cfg.products_dir).as_posix()] = hdul["SCI"].data.tobytes()
    return out


def _timed_run(site: Path) -> float:
    start = time.perf_counter()
    proc = _ingest_process(site)
    assert proc.wait(timeout=120) == 0, _errors(site)
    return time.perf_counter() - start


def test_sigkill_at_random_points_ends_like_an_uninterrupted_run(downlink, tmp_path) -> None:
    reference = make_site(tmp_path / "reference")
    deliver(dump_files(downlink), reference.incoming_dir)
    full = _timed_run(reference.root)
    scratch = make_site(tmp_path / "scratch")
    deliver(dump_files(downlink), scratch.incoming_dir)
    full = min(full, _timed_run(scratch.root))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import obsflow.cli, obsflow.ingest"], check=True)
    startup = time.perf_counter() - t0
    expected_ledger, expected_products = _ledger(reference), _products(reference)
    # kill moments between the end of the imports and most of a full pass (on a loaded
    # machine the imports can take longer than the pass: then kill within the pass)
    low = min(0.8 * startup, 0.5 * full)
    high = max(0.9 * full, low + 0.05)
    rng = np.random.default_rng(7)
    kills = 0
    for round_ in range(12):
        if kills >= 3:
            break
        cfg = make_site(tmp_path / f"killed{round_}")
        deliver(dump_files(downlink), cfg.incoming_dir)
        for _attempt in range(6):
            proc = _ingest_process(cfg.root)
            try:
                proc.wait(timeout=float(rng.uniform(low, high)))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
                _products(cfg)  # every product under a final name is whole
                continue
            assert proc.returncode == 0, _errors(cfg.root)
            break
        _timed_run(cfg.root)  # one more clean pass changes nothing if all was done
        assert _ledger(cfg) == expected_ledger
        assert _products(cfg) == expected_products
        assert [p for p in cfg.products_dir.rglob("*") if p.name.endswith(".part")] == []
    assert kills >= 3


def test_two_ingesters_on_one_site_do_not_double_count(downlink, tmp_path, db_url) -> None:
    reference = make_site(tmp_path / "reference")
    deliver(dump_files(downlink), reference.incoming_dir)
    ingest_once(reference)
    cfg = make_site(tmp_path / "shared", db_url)
    deliver(dump_files(downlink), cfg.incoming_dir)
    procs = [_ingest_process(cfg.root) for _ in range(2)]
    for p in procs:
        assert p.wait(timeout=120) == 0, _errors(cfg.root)
    ours, theirs = _ledger(cfg), _ledger(reference)
    assert ours["files"] == theirs["files"]  # each file registered and parsed once
    assert ours["exposures"] == theirs["exposures"]  # no packet counted twice
    assert _products(cfg) == _products(reference)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_files_never_crash_ingest_nor_lose_the_raw_file(downlink, tmp_path_factory,
                                                               data: st.DataObject) -> None:
    cfg = make_site(tmp_path_factory.mktemp("fuzz"))
    source = dump_files(downlink)[0].read_bytes()
    kind = data.draw(st.sampled_from(["random", "truncated", "bitflip", "spliced"]))
    if kind == "random":
        blob = data.draw(st.binary(min_size=0, max_size=3000))
    elif kind == "truncated":
        blob = source[: data.draw(st.integers(0, len(source)))]
    elif kind == "bitflip":
        arr = bytearray(source)
        for pos in data.draw(st.lists(st.integers(0, len(arr) * 8 - 1), min_size=1, max_size=40)):
            arr[pos // 8] ^= 1 << (pos % 8)
        blob = bytes(arr)
    else:
        cut = data.draw(st.integers(0, len(source)))
        blob = source[:cut] + data.draw(st.binary(max_size=500)) + source[cut:]
    path = cfg.incoming_dir / "fuzz.ccsds"
    path.write_bytes(blob)
    os.utime(path, (time.time() - 100, time.time() - 100))
    report = ingest_once(cfg)
    assert len(report.archived) == 1
    assert not path.exists()
    engine = make_engine(cfg.database_url)
    with Session(engine) as s:
        row = s.execute(select(RawFile)).scalar_one()
    engine.dispose()
    assert (cfg.raw_dir / row.raw_path).read_bytes() == blob  # never modified, never lost
    assert row.state in ("parsed", "quarantined")
    if row.state == "quarantined":
        assert row.reason and "fuzz.ccsds" in row.reason
