"""The HTCondor executor: the job graph written as a DAGMan workflow.

With ``executor.kind = "htcondor"``, ``obsflow run`` runs ingest and the
program jobs here (they touch only the site database and incoming folder),
then writes every pending ``calibrate`` job (and every ``reprocess`` job of
a campaign) into a DAG with the htcondor Python bindings (``htcondor2.dags``,
no pool needed) and submits it with ``condor_submit_dag`` semantics when a
schedd is reachable.  The DAG::

    calibrate:N  (one node per Level-1 product; VARS job_id, token, product)
        │  OneToOne
    register:N   (runs every register job the calibrate job enqueued, then the
                  lightcurve job a time series's _rateints enqueues)

    reprocess:M  (one node per campaign item; it registers its own outputs, then
                  runs the lightcurve job a remade _rateints enqueues)

Both node types run the job wrapper on the execute node
(``python -m obsflow.orchestrate.worker``), which needs the site folder and
database on a shared filesystem (or a PostgreSQL ``database.url``).  Jobs in
a DAG are leased to ``htcondor:<dag folder>``: a local orchestrator leaves
them alone; DAGMan's ``RETRY`` re-runs a failed node, and the wrapper takes
the job back under the same token.
"""

from __future__ import annotations

import logging
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select, update

from obsflow.config import SiteConfig
from obsflow.orchestrate.jobs import transaction, utcnow
from obsflow.orchestrate.tables import Job

__all__ = ["DAG_FILE", "Workflow", "submit_workflow", "write_workflow"]

logger = logging.getLogger(__name__)

DAG_FILE = "obsflow.dag"
"""File name of the DAG in its folder."""


@dataclass(frozen=True)
class Workflow:
    """A written DAG: its file, the jobs in it and the DAGMan cluster once submitted."""

    dag_file: Path
    job_ids: tuple[int, ...]
    cluster: int | None = None


def _submit_description(cfg: SiteConfig, arguments: str, logs: Path, name: str) -> object:
    import htcondor2

    return htcondor2.Submit({
        "universe": "vanilla",
        "executable": sys.executable,
        "arguments": arguments,
        "initialdir": str(cfg.root),
        "should_transfer_files": "NO",
        "getenv": "OBSFLOW_*",
        "request_cpus": "1",
        "request_memory": "2GB",
        "output": str(logs / f"{name}_$(job_id).out"),
        "error": str(logs / f"{name}_$(job_id).err"),
        "log": str(logs / "dag_jobs.log"),
    })


def _lease(engine: Engine, owner: str, kind: str) -> list[tuple[int, str, str]]:
    """Lease every pending job of ``kind`` to the DAG: [(job id, token, product)]."""
    leased = []
    with transaction(engine) as session:
        jobs = session.scalars(select(Job).where(Job.kind == kind, Job.state == "pending")
                               .order_by(Job.id)).all()
        for job in jobs:
            token = secrets.token_hex(16)
            done = session.execute(update(Job).where(Job.id == job.id, Job.state == "pending")
                                   .values(state="running", owner=owner, token=token,
                                           heartbeat=utcnow()))
            if done.rowcount:  # type: ignore[attr-defined]
                product = job.inputs.get("product") or job.inputs["source"]["product"]
                leased.append((job.id, token, str(product)))
    return leased


def write_workflow(cfg: SiteConfig, engine: Engine, dag_dir: Path) -> Workflow | None:
    """Write the DAG of every pending calibrate and reprocess job into ``dag_dir``.

    Returns None when there is none.
    """
    from htcondor2 import dags

    dag_dir = Path(dag_dir).absolute()
    leased = _lease(engine, f"htcondor:{dag_dir}", "calibrate")
    campaign = _lease(engine, f"htcondor:{dag_dir}", "reprocess")
    if not leased and not campaign:
        return None
    logs = dag_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    worker = f"-m obsflow.orchestrate.worker --site {cfg.root}"
    retries = max(cfg.executor.max_attempts - 1, 0)
    dag = dags.DAG()
    if campaign:
        dag.layer(name="reprocess", submit_description=_submit_description(
            cfg, f"{worker} --job $(job_id) --token $(token) --with-children", logs, "reprocess"),
            vars=[{"job_id": str(i), "token": t, "product": Path(p).name}
                  for i, t, p in campaign], retries=retries)
    if not leased:
        return _written(dags.write_dag(dag, dag_dir, dag_file_name=DAG_FILE), leased, campaign)
    calibrate = dag.layer(
        name="calibrate",
        submit_description=_submit_description(
            cfg, f"{worker} --job $(job_id) --token $(token)", logs, "calibrate"),
        vars=[{"job_id": str(i), "token": t, "product": Path(p).name} for i, t, p in leased],
        retries=retries)
    calibrate.child_layer(
        name="register",
        submit_description=_submit_description(
            cfg, f"{worker} --children-of $(job_id)", logs, "register"),
        vars=[{"job_id": str(i)} for i, _, _ in leased],
        retries=retries, edge=dags.OneToOne())
    return _written(dags.write_dag(dag, dag_dir, dag_file_name=DAG_FILE), leased, campaign)


def _written(dag_file: Path, leased: list[tuple[int, str, str]],
             campaign: list[tuple[int, str, str]]) -> Workflow:
    logger.info("wrote %s (%d calibrate, %d reprocess jobs)", dag_file, len(leased),
                len(campaign))
    return Workflow(Path(dag_file), tuple(i for i, _, _ in leased + campaign))


def submit_workflow(workflow: Workflow) -> Workflow:
    """Submit the DAG to the local schedd; unchanged (cluster None) when none is reachable."""
    import htcondor2

    try:
        schedd = htcondor2.Schedd()
        submit = htcondor2.Submit.from_dag(str(workflow.dag_file), {})
        result = schedd.submit(submit)
    except Exception as exc:  # the bindings raise HTCondorException (a plain Exception)
        logger.warning("no HTCondor schedd reachable (%s); submit it later with "
                       "condor_submit_dag %s", exc, workflow.dag_file)
        return workflow
    return Workflow(workflow.dag_file, workflow.job_ids, int(result.cluster()))
