"""Benchmark ingest end to end on one full-frame exposure, beside ccsdspy decoding it.

Target (issue "Ingest, data accounting and exposure assembly"): ingest end to
end (sha256 + decode + CRC + ledger + assembly + FITS write) at least
250 MB/s on one core, peak memory at most about twice one exposure cube.

The downlink file: one webb_like full-frame exposure of 10 groups (RAPID,
one frame per group) = 20,480 science packets of 4,122 bytes (84 MB) plus its
observation-log record, as the simulator packs it.  Measured in one run:

* obsflow ``ingest_once`` on a fresh site (file in incoming -> raw archive,
  ledger in SQLite, Level-1 ``_uncal.fits`` written), best of 3, each in a
  fresh subprocess pinned to one core that also reports its peak memory
  growth (VmHWM);
* the anchor: ccsdspy ``FixedLength.load`` of the same file (decode only:
  no CRC, no ledger, no assembly, no FITS).

Run with ``.venv/bin/python benchmarks/bench_ingest.py``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from obsflow.models.missiontime import mission_seconds
from obsflow.profiles import load_profile
from obsflow.simulate.packetize import Batch, assemble, obslog_record, science_batch
from obsflow.simulate.plan import PlanOptions, make_plan
from obsflow.telemetry import decode

NGROUPS = 10


def build_file(path: Path) -> int:
    """Write the one-exposure downlink file; return the cube size in bytes."""
    profile = load_profile("webb_like")
    meta = make_plan(profile, PlanOptions(seed=1, exposures=1)).exposures[0]
    meta = dataclasses.replace(meta, readpatt="RAPID", nframes=1, groupgap=0, ngroups=NGROUPS,
                               nints=1, status="executed")
    apid = profile.instruments[0].detector(meta.detector).apid
    rng = np.random.default_rng(1)
    cube = rng.integers(10000, 20000, (1, NGROUPS, meta.subsize2, meta.subsize1), dtype=np.uint16)
    t0 = float(mission_seconds(meta.expstart, profile.mission.time_epoch_tai))
    times = t0 + 10.7 * (1 + np.arange(NGROUPS))[None, :]
    science = science_batch(cube, apid, meta.exposure_id, times, profile.packets.target_payload_bytes)
    one = np.zeros(1, np.int64)
    log = Batch(profile.apids.housekeeping, np.array([t0 - 1e-3]), np.array([meta.exposure_id]),
                one, one, one, [obslog_record(meta, apid, profile.packets.target_payload_bytes)])
    stream = assemble([science, log], {})
    stream.data.tofile(path)
    return cube.nbytes


CHILD = r"""
import json, sys, time, os
os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})  # one core
from pathlib import Path
from obsflow.site import init_site
from obsflow.ingest import ingest_once
root, src = Path(sys.argv[1]), Path(sys.argv[2])
cfg = init_site(root, profile="webb_like", env={"OBSFLOW_INGEST__SETTLE_SECONDS": "0"})
dst = cfg.incoming_dir / src.name
os.link(src, dst)
os.utime(dst, (time.time() - 60, time.time() - 60))
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
import obsflow.ingest.assemble, obsflow.telemetry  # imports and numba compile outside the timing
from obsflow.telemetry import decode
import numpy as np
decode(np.frombuffer(src.read_bytes()[:20000], np.uint8), tolerant=True)
open("/proc/self/clear_refs", "w").write("5")
base = status("VmRSS:")
t = time.perf_counter()
report = ingest_once(cfg)
dt = time.perf_counter() - t
assert len(report.assembled) == 1 and not report.assembled[0].partial, report
print(json.dumps({"seconds": dt, "peak": status("VmHWM:") - base}))
"""


def run_ours(path: Path) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, OBSFLOW_INGEST__SETTLE_SECONDS="0")
        out = subprocess.run([sys.executable, "-c", CHILD, str(Path(tmp) / "site"), str(path)],
                             capture_output=True, text=True, env=env)
        if out.returncode:
            raise RuntimeError(out.stderr[-3000:])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return float(result["seconds"]), int(result["peak"])


def run_ccsdspy(path: Path) -> float:
    import ccsdspy
    from ccsdspy import PacketArray, PacketField

    fields = [PacketField(name=n, data_type="uint", bit_length=b)
              for n, b in [("time_coarse", 32), ("time_fine", 16), ("exposure_id", 32),
                           ("group", 16), ("row", 16), ("packet_index", 32)]]
    fields += [PacketArray(name="pixels", data_type="uint", bit_length=16, array_shape=2048),
               PacketField(name="crc", data_type="uint", bit_length=16)]
    definition = ccsdspy.FixedLength(fields)
    logging.getLogger("ccsdspy").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        # only the science packets: ccsdspy's FixedLength cannot skip the variable-length record
        data = path.read_bytes()
        first = int(decode(np.frombuffer(data, np.uint8)).offset[1])  # after the log record
        science = Path(tmp) / "science.bin"
        science.write_bytes(data[first:])
        best = np.inf
        for _ in range(3):
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                definition.load(str(science))
            best = min(best, time.perf_counter() - t)
    return float(best)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "obsflow-w_20261101T000000_d001.ccsds"
        cube_bytes = build_file(path)
        mb = path.stat().st_size / 1e6
        runs = [run_ours(path) for _ in range(3)]
        seconds = min(r[0] for r in runs)
        peak = min(r[1] for r in runs)
        t_ccsdspy = run_ccsdspy(path)
    print(f"file: {mb:.1f} MB, one exposure cube {cube_bytes / 1e6:.1f} MB")
    print(f"{'what':<62}{'seconds':>9}{'MB/s':>9}")
    print(f"{'obsflow ingest end to end (sha256+decode+CRC+ledger+assembly+FITS)':<62}"
          f"{seconds:>9.3f}{mb / seconds:>9.0f}")
    print(f"{'ccsdspy FixedLength.load, decode only (no CRC)':<62}{t_ccsdspy:>9.3f}"
          f"{mb / t_ccsdspy:>9.0f}")
    print(f"ratio obsflow end to end / ccsdspy decode only: {t_ccsdspy / seconds:.2f}x; "
          f"target 250 MB/s: {mb / seconds / 250:.2f}x")
    print(f"peak memory growth during ingest: {peak / 1e6:.0f} MB = "
          f"{peak / cube_bytes:.2f} x the cube (target <= 2)")


if __name__ == "__main__":
    main()
