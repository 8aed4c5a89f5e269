"""The orchestrator killed (SIGKILL) mid-chain and restarted: nothing lost, nothing done twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from obsflow.orchestrate.handlers import ARCHIVED_KINDS
from obsflow.simulate.run import SimResult

from .conftest import archive_products, attempts_of, executed, jobs_of, make_site, wait_for


def test_killed_orchestrator_resumes_without_doing_anything_twice(
        tmp_path: Path, downlink: SimResult) -> None:
    cfg = make_site(tmp_path / "site", downlink)
    run = [sys.executable, "-m", "obsflow", "run", "--site", str(cfg.root), "--workers", "2"]
    first = subprocess.Popen(run, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "OBSFLOW_HOME": ""})
    try:
        def mid_chain() -> bool:
            jobs = jobs_of(cfg)
            return (any(j.kind == "calibrate" and j.state == "done" for j in jobs)
                    and any(j.state == "running" for j in jobs))

        wait_for(mid_chain, 90, "the chain to be half done")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    before = jobs_of(cfg)
    running = [j.id for j in before if j.state == "running"]
    assert running and any(j.state != "done" for j in before)
    done_before = {j.id: j.finished for j in before if j.state == "done"}
    second = subprocess.run(run, capture_output=True, text=True, timeout=180, check=False)
    assert second.returncode == 0, second.stderr
    after = jobs_of(cfg)
    n = executed(downlink)
    assert {j.state for j in after} == {"done"}
    assert len({j.key for j in after}) == len(after)
    assert sum(j.kind == "calibrate" for j in after) == n
    assert sum(j.kind == "register" for j in after) == n * (len(ARCHIVED_KINDS) - 1)
    for job in after:
        if job.id in done_before:  # finished before the kill: not run again
            assert job.finished == done_before[job.id] and job.attempts == 1
        outcomes = [a.outcome for a in attempts_of(cfg, job.id)]
        assert outcomes.count("ok") == 1, (job.key, outcomes)
    for job_id in running:  # the interrupted attempts are closed and the job ran again
        outcomes = [a.outcome for a in attempts_of(cfg, job_id)]
        assert outcomes[-1] == "ok" and set(outcomes[:-1]) <= {"lost"}
    products = archive_products(cfg)
    assert len(products) == n * len(ARCHIVED_KINDS)
    assert {version for _, _, version in products} == {1}
    level2 = sorted(p.name for p in (cfg.products_dir / "prompt").rglob("*_cal.fits"))
    assert len(level2) == len(set(level2)) == n  # the killed attempts' files were redone in place
