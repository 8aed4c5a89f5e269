"""``obsflow run [--watch]``, ``obsflow jobs [--kind K] [--state S] [--json]``, ``obsflow jobs retry ID``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from obsflow.cli_console import output_console
from obsflow.config import SiteConfig, default_site_root
from obsflow.dbread import open_reader
from obsflow.ingest.cli import EXIT_STATUS_HELP, report_set_aside, set_aside_lines
from obsflow.orchestrate.views import STATES, JobView, list_jobs
from obsflow.site import open_site

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from obsflow.orchestrate.runner import RunSummary

__all__ = ["jobs_group", "progress_display", "run_cmd", "summary_line"]

_site_option = click.option("--site", "site_dir", type=click.Path(path_type=Path), default=None,
                            help="Site folder (default $OBSFLOW_HOME or ./obsflow-site).")

KIND_ORDER = ("ingest", "program", "calibrate", "register", "lightcurve", "image3", "colour",
              "noop")


def _site(site_dir: Path | None) -> SiteConfig:
    return open_site(site_dir or default_site_root())


def summary_line(summary: RunSummary) -> str:
    """One line: jobs done and failed per kind, and the time taken."""
    parts = []
    for kind in sorted(summary.counts, key=lambda k: (KIND_ORDER + (k,)).index(k)):
        states = summary.counts[kind]
        text = f"{kind} {states.get('done', 0)} done"
        text += f", [red]{states['failed']} failed[/red]" if states.get("failed") else ""
        parts.append(text)
    return "; ".join(parts) + f" ({summary.seconds:.1f} s)"


@contextmanager
def progress_display(console: Console) -> Iterator[Callable[[dict[str, dict[str, int]]], None]]:
    """A rich progress bar per job kind; yields the callback the orchestrator calls."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[failed]}"), TimeElapsedColumn())
    tasks: dict[str, TaskID] = {}
    with Progress(*columns, console=console, transient=False) as progress:

        def update(counts: dict[str, dict[str, int]]) -> None:
            for kind in sorted(counts, key=lambda k: (KIND_ORDER + (k,)).index(k)):
                states = counts[kind]
                total = sum(states.values())
                finished = states.get("done", 0) + states.get("failed", 0)
                failed = f"[red]{states['failed']} failed[/red]" if states.get("failed") else ""
                if kind not in tasks:
                    tasks[kind] = progress.add_task(kind, total=total, failed=failed)
                progress.update(tasks[kind], completed=finished, total=total, failed=failed)

        yield update


@click.command("run", epilog=EXIT_STATUS_HELP)
@_site_option
@click.option("--watch", is_flag=True, help="Keep running as new files arrive (Ctrl-C stops).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Parallel workers of the local executor (default [executor] workers).")
def run_cmd(site_dir: Path | None, watch: bool, workers: int | None) -> None:
    """Run the chain: ingest -> calibrate -> register in the archive, until idle.

    Jobs run on the executor of [executor] kind (local, dask or htcondor).
    A restarted run resumes pending jobs and re-queues those of a dead run.
    """

    from obsflow.kernel_cache import announce_compilation
    from obsflow.orchestrate.runner import run_site

    cfg = _site(site_dir)
    announce_compilation()
    console = output_console()
    before = set_aside_lines(cfg)
    try:
        with progress_display(console) as update:
            summary = run_site(cfg, watch=watch, workers=workers, progress=update)
    except KeyboardInterrupt:
        console.print("stopped; running jobs are re-queued by the next `obsflow run`")
        report_set_aside(cfg, before)
        return
    console.print(f"jobs: {summary_line(summary)}")
    if summary.workflow is not None:
        where = (f"submitted as DAGMan cluster {summary.workflow.cluster}"
                 if summary.workflow.cluster is not None
                 else f"submit with: condor_submit_dag {summary.workflow.dag_file}")
        console.print(f"HTCondor DAG of {len(summary.workflow.job_ids)} calibrate jobs: {where}")
    if summary.total("failed"):
        console.print("[red]some jobs failed[/red]: see `obsflow jobs --state failed`")
    report_set_aside(cfg, before)


def _job_rows(cfg: SiteConfig, kind: str | None, state: str | None, limit: int) -> list[JobView]:
    with open_reader(cfg.database_url) as db:  # sqlite3 on a SQLite site: no SQLAlchemy
        return list_jobs(db, kind, state, limit)


def _duration(job: JobView) -> str:
    if job.started is None or job.finished is None:
        return ""
    return f"{(job.finished - job.started).total_seconds():.1f}"


def _jobs_table(jobs: list[JobView]) -> Table:
    from rich.table import Table

    table = Table(title=f"{len(jobs)} jobs")
    for column in ("id", "kind", "state", "attempts", "subject", "seconds", "error"):
        table.add_column(column, justify="right" if column in ("id", "attempts", "seconds")
                         else "left")
    colours = {"done": "green", "failed": "red", "running": "yellow", "pending": "white"}
    for job in jobs:
        subject = str(job.inputs.get("product") or job.inputs.get("program") or job.key)
        table.add_row(str(job.id), job.kind, f"[{colours[job.state]}]{job.state}[/]",
                      f"{job.attempts}/{job.max_attempts}", Path(subject).name, _duration(job),
                      (job.error or "")[:120] if job.state != "done" else "")
    return table


@click.group("jobs", invoke_without_command=True)
@_site_option
@click.option("--kind", default=None, help="Only jobs of this kind (ingest, program, calibrate, "
                                          "register, lightcurve, image3, reprocess).")
@click.option("--state", type=click.Choice(STATES), default=None, help="Only jobs in this state.")
@click.option("--limit", type=click.IntRange(min=1), default=200, show_default=True,
              help="Most recent jobs shown.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def jobs_group(ctx: click.Context, site_dir: Path | None, kind: str | None, state: str | None,
               limit: int, as_json: bool) -> None:
    """List jobs (newest last); `obsflow jobs retry ID` re-queues a failed one."""
    if ctx.invoked_subcommand is not None:
        return
    jobs = _job_rows(_site(site_dir), kind, state, limit)
    if as_json:
        click.echo(json.dumps([job.as_dict() for job in jobs], indent=2))
    else:
        output_console().print(_jobs_table(jobs))


@jobs_group.command("retry")
@_site_option
@click.argument("job_id", type=int)
def retry_cmd(site_dir: Path | None, job_id: int) -> None:
    """Put failed job JOB_ID back in the queue (the next `obsflow run` runs it)."""
    from obsflow.db import make_engine
    from obsflow.orchestrate.jobs import policy_of, retry

    cfg = _site(site_dir)
    engine = make_engine(cfg.database_url)
    try:
        job = retry(engine, job_id, policy_of(cfg))
    finally:
        engine.dispose()
    click.echo(f"job {job.id} ({job.kind} {job.key}) is pending again; run `obsflow run`")


def _attempt_dicts(cfg: SiteConfig, job_id: int) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from obsflow.db import make_engine
    from obsflow.orchestrate.jobs import transaction
    from obsflow.orchestrate.tables import JobAttempt

    engine = make_engine(cfg.database_url)
    try:
        with transaction(engine) as session:
            rows = session.scalars(select(JobAttempt).where(JobAttempt.job_id == job_id)
                                   .order_by(JobAttempt.number)).all()
            return [{"number": a.number, "worker": a.worker, "outcome": a.outcome,
                     "started": a.started.isoformat(timespec="seconds"),
                     "seconds": a.seconds, "log": a.log} for a in rows]
    finally:
        engine.dispose()


@jobs_group.command("show")
@_site_option
@click.argument("job_id", type=int)
def show_cmd(site_dir: Path | None, job_id: int) -> None:
    """Print job JOB_ID with its inputs, outputs and the log of every attempt (JSON)."""
    from obsflow.db import make_engine
    from obsflow.orchestrate.jobs import get_job

    cfg = _site(site_dir)
    engine = make_engine(cfg.database_url)
    try:
        job = get_job(engine, job_id)
    finally:
        engine.dispose()
    click.echo(json.dumps({**job.as_dict(), "attempt_log": _attempt_dicts(cfg, job_id)},
                          indent=2))
