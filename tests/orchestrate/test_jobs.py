"""The job state machine, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys

import pytest

from obsflow.db import make_engine
from obsflow.migrations import init_schema
from obsflow.orchestrate.errors import JobNotFoundError, JobStateError
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
        assert requeue_orphans(engine, "me:1", lease_seconds=3600) == [1]
        token = claim(engine, 1, "me:1")
        assert token is not None
        begun = begin_attempt(engine, 1, token, "w:3")
        assert begun is not None
        assert finish_attempt(engine, 1, token, begun[1], {"x": 1},
                              [JobSpec("noop", "child")], "", POLICY)
        assert get_job(engine, 1).state == "done" and get_job(engine, 2).parent_id == 1
    finally:
        engine.dispose()
