"""The job state machine, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from obsflow.db import make_engine
from obsflow.exceptions import JobNotFoundError, JobStateError
from obsflow.migrations import init_schema
from obsflow.orchestrate.jobs import (
    JobSpec,
    RetryPolicy,
    begin_attempt,
    claim,
    enqueue_all,
    fail_attempt,
    finish_attempt,
    get_job,
    requeue_orphans,
    retry,
    transaction,
    utcnow,
)

POLICY = RetryPolicy(max_attempts=2, backoff_seconds=0.0)


def test_claims_leases_retries_and_orphans(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        init_schema(engine)
        assert enqueue_all(engine, [JobSpec("noop", "a"), JobSpec("noop", "a")], POLICY) == 1
        token = claim(engine, 1, "me:1")
        assert token is not None and claim(engine, 1, "other:2") is None  # claimed once
        begun = begin_attempt(engine, 1, token, "w:1")
        assert begun is not None and begun[1] == 1
        assert begin_attempt(engine, 1, "stale", "w:2") is None
        assert fail_attempt(engine, 1, token, 1, "ValueError: bad", "log", POLICY) == "pending"
        assert not finish_attempt(engine, 1, token, 1, {}, [], "", POLICY)  # lease gone
        token = claim(engine, 1, "me:1")
        assert token is not None
        assert fail_attempt(engine, 1, token, None, "lost", "", POLICY) == "failed"
        job = get_job(engine, 1)
        assert job.state == "failed" and job.attempts == 2
        assert job.error == "noop a failed after 2 attempts: lost"
        assert retry(engine, 1, POLICY).state == "pending"
        with pytest.raises(JobStateError):
            retry(engine, 1, POLICY)
        with pytest.raises(JobNotFoundError):
            retry(engine, 99, POLICY)
        # a running job of a dead orchestrator (a finished process on this host) is re-queued
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout.strip()
        import socket

        assert claim(engine, 1, f"{socket.gethostname()}:{dead}") is not None
        assert requeue_orphans(engine, "me:1", expire_seconds=3600) == [1]
        token = claim(engine, 1, "me:1")
        assert token is not None
        begun = begin_attempt(engine, 1, token, "w:3")
        assert begun is not None
        assert finish_attempt(engine, 1, token, begun[1], {"x": 1},
                              [JobSpec("noop", "child")], "", POLICY)
        assert get_job(engine, 1).state == "done" and get_job(engine, 2).parent_id == 1
    finally:
        engine.dispose()


def test_fresh_data_runs_before_a_campaign_already_queued(tmp_path: Path) -> None:
    """Jobs of priority 0 enqueued while campaign jobs (priority -10) wait are claimed first."""
    import threading

    from obsflow.orchestrate.jobs import policy_of
    from obsflow.orchestrate.runner import run_site
    from obsflow.orchestrate.tables import Job
    from obsflow.reprocess.campaign import CAMPAIGN_PRIORITY
    from obsflow.site import init_site

    cfg = init_site(tmp_path / "site", profile="smallsat", env={})
    engine = make_engine(cfg.database_url)
    policy = policy_of(cfg)
    try:
        enqueue_all(engine, [JobSpec("noop", f"campaign-{i}", {"seconds": 0.4},
                                     priority=CAMPAIGN_PRIORITY) for i in range(8)], policy)
        arrived: list[datetime] = []

        def fresh_data_arrives() -> None:
            time.sleep(1.5)
            arrived.append(utcnow())
            enqueue_all(engine, [JobSpec("noop", f"fresh-{i}", {"seconds": 0.0})
                                 for i in range(2)], policy)

        thread = threading.Thread(target=fresh_data_arrives)
        thread.start()
        run_site(cfg, workers=1)
        thread.join()
        with transaction(engine) as session:
            jobs = {j.key: j for j in session.scalars(select(Job))}
    finally:
        engine.dispose()
    assert {j.state for j in jobs.values()} == {"done"}
    fresh = max(jobs[f"fresh-{i}"].started for i in range(2))
    waiting = [j for k, j in jobs.items() if k.startswith("campaign") and j.started > arrived[0]]
    # at most the running and the one queued campaign job start between arrival and fresh data
    assert len([j for j in waiting if j.started < fresh]) <= 2
    assert len([j for j in waiting if j.started > fresh]) >= 3  # the rest waited their turn
