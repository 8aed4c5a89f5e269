"""The job layer: jobs in the site database, an event-driven chain, three executors.

Public surface::

    from obsflow.orchestrate import run_site, Orchestrator, make_executor
    summary = run_site(cfg)                 # ingest -> calibrate -> register, until idle

See ``docs/architecture.md`` (the job layer) and ``docs/operations.md``
(``obsflow run``, a Dask cluster, HTCondor).  Its errors live in
:mod:`obsflow.exceptions`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from obsflow._lazy import lazy_exports

if TYPE_CHECKING:
    from obsflow.orchestrate.executors import (
        Completion,
        DaskExecutor,
        Executor,
        InlineExecutor,
        LocalExecutor,
        make_executor,
    )
    from obsflow.orchestrate.jobs import JobSpec, JobView, RetryPolicy, get_job, retry, state_counts
    from obsflow.orchestrate.runner import Orchestrator, RunSummary, run_site
    from obsflow.orchestrate.tables import STATES, Job, JobAttempt
    from obsflow.orchestrate.worker import Outcome, execute_job

__all__ = [
    "STATES",
    "Completion",
    "DaskExecutor",
    "Executor",
    "InlineExecutor",
    "Job",
    "JobAttempt",
    "JobSpec",
    "JobView",
    "LocalExecutor",
    "Orchestrator",
    "Outcome",
    "RetryPolicy",
    "RunSummary",
    "execute_job",
    "get_job",
    "make_executor",
    "retry",
    "run_site",
    "state_counts",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    "Completion": "executors",
    "DaskExecutor": "executors",
    "Executor": "executors",
    "InlineExecutor": "executors",
    "LocalExecutor": "executors",
    "make_executor": "executors",
    "JobSpec": "jobs",
    "JobView": "jobs",
    "RetryPolicy": "jobs",
    "get_job": "jobs",
    "retry": "jobs",
    "state_counts": "jobs",
    "Orchestrator": "runner",
    "RunSummary": "runner",
    "run_site": "runner",
    "STATES": "tables",
    "Job": "tables",
    "JobAttempt": "tables",
    "Outcome": "worker",
    "execute_job": "worker",
})
