"""HTCondor: the DAG and submit files written, and the node wrapper run by hand."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from obsflow.orchestrate import run_site
from obsflow.orchestrate.handlers import ARCHIVED_KINDS
from obsflow.simulate.run import SimResult

from .conftest import archive_products, executed, jobs_of, make_site


def _vars(dag: str) -> dict[str, dict[str, str]]:
    out = {}
    for node, rest in re.findall(r"^VARS (\S+) (.*)$", dag, re.MULTILINE):
        out[node] = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return out


def test_dag_of_the_chain_and_its_wrapper(tmp_path: Path, downlink: SimResult) -> None:
    cfg = make_site(tmp_path / "site", downlink, kind="htcondor")
    summary = run_site(cfg)  # ingest + programs here; calibrate/register into a DAG
    n = executed(downlink)
    assert summary.workflow is not None and summary.workflow.cluster is None  # no schedd here
    dag_file = summary.workflow.dag_file
    dag = dag_file.read_text()
    calibrate = [j for j in jobs_of(cfg) if j.kind == "calibrate"]
    assert len(calibrate) == len(summary.workflow.job_ids) == n
    assert {j.state for j in calibrate} == {"running"}
    assert {j.owner for j in calibrate} == {f"htcondor:{dag_file.parent}"}
    nodes = re.findall(r"^JOB (\S+) (\S+)$", dag, re.MULTILINE)
    assert sorted(sub for _, sub in nodes) == sorted(["calibrate.sub"] * n + ["register.sub"] * n)
    edges = re.findall(r"^PARENT (\S+) CHILD (\S+)$", dag, re.MULTILINE)
    assert len(edges) == n
    variables = _vars(dag)
    for parent, child in edges:  # each register node follows the calibrate node of its job
        assert parent.startswith("calibrate") and child.startswith("register")
        assert variables[parent]["job_id"] == variables[child]["job_id"]
    by_id = {j.id: j for j in calibrate}
    for node, sub in nodes:
        if sub == "calibrate.sub":
            job = by_id[int(variables[node]["job_id"])]
            assert variables[node]["token"] == job.token
            assert variables[node]["product"] == Path(job.inputs["product"]).name
    assert len(re.findall(r"^RETRY \S+ 2$", dag, re.MULTILINE)) == 2 * n
    sub = (dag_file.parent / "calibrate.sub").read_text()
    assert f"executable = {sys.executable}" in sub
    assert (f"arguments = -m obsflow.orchestrate.worker --site {cfg.root} --job $(job_id) "
            "--token $(token)") in sub
    register_sub = (dag_file.parent / "register.sub").read_text()
    assert "--children-of $(job_id)" in register_sub

    # run one calibrate node and its register node by hand, as DAGMan would
    node = next(name for name, s in nodes if s == "calibrate.sub")
    job_id, token = variables[node]["job_id"], variables[node]["token"]
    wrapper = [sys.executable, "-m", "obsflow.orchestrate.worker", "--site", str(cfg.root)]
    ran = subprocess.run([*wrapper, "--job", job_id, "--token", token], capture_output=True,
                         text=True, timeout=120, check=False)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"job {job_id} (calibrate): done" in ran.stdout
    ran = subprocess.run([*wrapper, "--children-of", job_id], capture_output=True, text=True,
                         timeout=120, check=False)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.count("(register): done") == len(ARCHIVED_KINDS) - 1
    jobs = {j.id: j for j in jobs_of(cfg)}
    assert jobs[int(job_id)].state == "done"
    assert len(archive_products(cfg)) == len(ARCHIVED_KINDS)
    # a stale token (the node already ran) does nothing and says so
    again = subprocess.run([*wrapper, "--job", job_id, "--token", token], capture_output=True,
                           text=True, timeout=120, check=False)
    assert again.returncode == 1 and "stale" in again.stdout
