"""The whole chain on the local executor: ingest -> calibrate -> register, poison, CLI."""

from __future__ import annotations

from collections import Counter

from tests.jwst_models import MODELS, check_products

from obsflow.config import SiteConfig
from obsflow.ingest.service import ingest_once
from obsflow.models.metadata import product_basename
from obsflow.orchestrate import run_site
from obsflow.orchestrate.handlers import ARCHIVED_KINDS
from obsflow.simulate.run import SimResult

from .conftest import (
    archive_products,
    attempts_of,
    cli,
    executed,
    jobs_of,
    json_jobs,
    mosaics,
    products_expected,
)


def test_chain_runs_every_exposure_to_the_archive(site: SiteConfig, downlink: SimResult) -> None:
    summary = run_site(site)
    n = executed(downlink)
    kinds = Counter((job.kind, job.state) for job in jobs_of(site))
    assert kinds[("calibrate", "done")] == n
    assert kinds[("register", "done")] == n * (len(ARCHIVED_KINDS) - 1)
    assert kinds[("ingest", "done")] >= 1
    assert kinds[("image3", "done")] == mosaics(downlink)
    assert {state for _, state in kinds} == {"done"}
    assert summary.total("failed") == 0
    products = archive_products(site)
    assert len(products) == products_expected(downlink)
    assert {version for _, _, version in products} == {1}
    assert Counter(kind for _, kind, _ in products) == {
        "uncal": n, "rate": n, "rateints": n, "cal": n, "crf": n, "i2d": mosaics(downlink),
        "cat": mosaics(downlink), "segm": mosaics(downlink)}
    for job in jobs_of(site):  # every job has its timings and one successful attempt logged
        assert job.started is not None and job.finished is not None and job.attempts == 1
        (attempt,) = attempts_of(site, job.id)
        assert attempt.outcome == "ok" and attempt.seconds is not None
    calibrate = next(job for job in jobs_of(site) if job.kind == "calibrate")
    assert calibrate.outputs is not None
    assert all((site.products_dir / p).is_file() for p in calibrate.outputs["products"])
    # the JWST tools open every product as its data model, with no warning but mission names
    files = [p for p in site.root.rglob("*.fits") if p.stem.rsplit("_", 1)[-1] in MODELS]
    assert set(check_products(files)) == set(MODELS)
    # events are consumed once; running again changes nothing
    again = run_site(site)
    assert again.counts == summary.counts
    assert archive_products(site) == products


def test_poisoned_input_fails_alone_with_a_clear_reason(site: SiteConfig,
                                                        downlink: SimResult) -> None:
    ingest_once(site)  # Level-1 products and their exposure_ready events
    victim = sorted((site.products_dir / "ingest").rglob("*_uncal.fits"))[0]
    relpath = victim.relative_to(site.products_dir).as_posix()
    basename = victim.name.removesuffix("_uncal.fits")
    victim.write_bytes(victim.read_bytes()[:5000])  # bit rot: the file is cut short
    run_site(site)
    jobs = jobs_of(site)
    failed = [job for job in jobs if job.state == "failed"]
    assert [job.kind for job in failed] == ["calibrate"]
    (bad,) = failed
    assert bad.inputs["product"] == relpath
    assert bad.attempts == bad.max_attempts == 3
    assert bad.error is not None
    assert bad.error.startswith(f"calibrate calibrate:{basename}:v1 failed after 3 "
                                "attempts: ")
    outcomes = [a.outcome for a in attempts_of(site, bad.id)]
    assert outcomes == ["error", "error", "error"]
    assert "Traceback" in attempts_of(site, bad.id)[-1].log
    n = executed(downlink)
    assert sum(job.kind == "calibrate" and job.state == "done" for job in jobs) == n - 1
    kinds = Counter(kind for _, kind, _ in archive_products(site))
    assert sum(kinds[k] for k in ARCHIVED_KINDS) == (n - 1) * len(ARCHIVED_KINDS)
    # the victim's association never completes: no mosaic of it, no _crf of its members
    victim_meta = next(e for e in downlink.plan.exposures if product_basename(
        e.program, e.observation, e.visit, e.exposure, e.detector) == basename)
    group = (victim_meta.program, victim_meta.observation, victim_meta.filter)
    others = [e for e in downlink.plan.exposures if e.status == "executed"
              and (e.program, e.observation, e.filter) != group]
    assert kinds["i2d"] == mosaics(downlink) - 1
    assert kinds["crf"] == len(others)
    # the CLI lists it and can put it back in the queue
    listed = json_jobs(site, "--state", "failed")
    assert [job["id"] for job in listed] == [bad.id]
    out = cli("jobs", "--site", str(site.root), "--kind", "calibrate")
    assert out.exit_code == 0 and "failed" in out.stdout
    out = cli("jobs", "show", str(bad.id), "--site", str(site.root))
    assert out.exit_code == 0 and '"outcome": "error"' in out.stdout
    out = cli("jobs", "retry", str(bad.id), "--site", str(site.root))
    assert out.exit_code == 0, out.output
    assert json_jobs(site, "--state", "pending")[0]["id"] == bad.id
    out = cli("jobs", "retry", str(bad.id), "--site", str(site.root))
    assert out.exit_code == 2 and "only failed jobs can be retried" in out.stderr
