"""``obsflow demo``: the whole chain on a simulated downlink, on the embedded default.

1. create (or reuse) the site: ``$OBSFLOW_HOME`` or ``./obsflow-site``;
2. simulate a small downlink (14 subarray exposures of three programs: the
   deep field first in three filters, :data:`DEMO_COLOUR_FILTERS`, three
   dithers each, so its three mosaics make a colour image; every packet
   fault, a retransmission dump); with ``proposals``
   the simulator observes instead the plan of the two example programs
   (:func:`plan_examples`);
3. deliver the simulator's reference files into the site registry and
   record the programs of the plan (PI, title, exclusive-access months);
4. drop the first dumps in ``incoming/`` like a ground station and run the
   chain (ingest -> calibrate -> register in the archive -> a mosaic of each
   dithered observation and filter once all its exposures are in, stage 3,
   and the colour image of a target once three filters have mosaics)
   until idle, with progress; show what is still missing;
5. drop the retransmission dump and run again;
6. print the reprocessing exercise (the simulator delivered an early dark
   measured with an error; the better one waits in ``simulation/refs_update``);
7. create (or reset) the archive user ``demo``, a member of every program,
   with a new random password, and print its login;
8. print the archive's address, and serve it on 127.0.0.1:8000 (unless
   ``serve`` is False).
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from obsflow.config import SiteConfig
from obsflow.db import make_engine
from obsflow.fileio import atomic_path
from obsflow.ingest.status import gap_report
from obsflow.orchestrate.cli import progress_display, summary_line
from obsflow.orchestrate.handlers import program_spec
from obsflow.orchestrate.jobs import enqueue_all, policy_of
from obsflow.orchestrate.runner import RunSummary, run_site
from obsflow.profiles import Profile
from obsflow.simulate.downlink import parse_faults
from obsflow.simulate.run import SimOptions, SimResult
from obsflow.site import init_site

__all__ = ["DEMO_COLOUR_FILTERS", "DEMO_DITHERS", "DEMO_EXPOSURES", "DEMO_PLAN_DAYS",
           "DEMO_SUBARRAY_WIDTH", "DEMO_USER", "demo_user", "plan_examples",
           "run_demo"]

DEMO_USER = "demo"
"""The archive user the demo creates (a member of every program)."""

DEMO_SUBARRAY_WIDTH = 320
"""The demo observes on the profile's subarray closest to this width (pixels)."""

DEMO_COLOUR_FILTERS = 3
"""The demo's deep field is observed first in this many filters (a colour image)."""

DEMO_DITHERS = 3
"""At most this many dither positions per observation in the demo."""

DEMO_EXPOSURES = 14
"""Exposures the demo simulates by default: the deep field's three filters x three
dithers, then one observation of each other program (three and two dithers)."""

DEMO_PLAN_DAYS = 3.0
"""Length of the plan the demo makes of the example programs, days."""

DEMO_DARK_ERROR = 0.1
"""Error of the early dark the demo's first reference delivery holds, DN/s (mean)."""


def _drop(files: list[Path], incoming: Path) -> None:
    """Deliver files like a ground station: under a temporary name, then renamed."""
    for src in files:
        with atomic_path(incoming / src.name) as part:
            shutil.copyfile(src, part)


def _deliver_refs(cfg: SiteConfig, folder: Path) -> int:
    """Deliver the reference files of ``folder`` not yet registered, as one delivery (one context).

    Returns how many were new (0: nothing delivered, no new context).
    """
    from obsflow.refdata.registry import deliver_batch, is_delivered

    engine = make_engine(cfg.database_url)
    try:
        with Session(engine) as session, session.begin():
            new = [p for p in sorted(folder.glob("*.fits")) if not is_delivered(session, p)]
            if new:
                deliver_batch(session, cfg.refs_dir, new, cfg.load_profile(),
                              description=f"obsflow demo: the simulator's {folder}")
    finally:
        engine.dispose()
    return len(new)


def _record_programs(cfg: SiteConfig, plan_file: Path) -> int:
    """Enqueue a program job per program of the simulator's plan (with its exclusive months)."""
    plan = json.loads(plan_file.read_text())
    specs = [program_spec(str(p["program"]), str(p.get("pi_name", "")), str(p.get("title", "")),
                          int(p["exclusive_months"])) for p in plan["programs"]]
    engine = make_engine(cfg.database_url)
    try:
        return enqueue_all(engine, specs, policy_of(cfg))
    finally:
        engine.dispose()


def _gap_table(cfg: SiteConfig) -> Table:
    engine = make_engine(cfg.database_url)
    try:
        gaps = gap_report(engine)
    finally:
        engine.dispose()
    missing = sum(g["packets_missing"] for g in gaps)
    table = Table(title=f"waiting for the retransmission: {missing} packets of {len(gaps)} "
                        "exposures missing")
    for col in ("product", "expected", "received", "missing packet ranges"):
        table.add_column(col)
    for g in gaps:
        table.add_row(str(g["basename"]), str(g["expected"]), str(g["received"]),
                      ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in g["missing_ranges"]))
    return table


def _run_chain(cfg: SiteConfig, console: Console, title: str) -> RunSummary:
    console.rule(title)
    with progress_display(console) as update:
        summary = run_site(cfg, progress=update)
    console.print(f"jobs: {summary_line(summary)}")
    return summary


def _archive_table(cfg: SiteConfig) -> Table:
    from obsflow.archive.schema import Exposure, Product, Program

    engine = make_engine(cfg.database_url)
    table = Table(title="the archive")
    for col in ("program", "PI", "exclusive months", "exposures", "products", "mosaics"):
        table.add_column(col)
    try:
        with Session(engine) as session:
            for prog in session.scalars(select(Program).order_by(Program.program)):
                exposures = session.scalar(select(func.count()).select_from(Exposure)
                                           .where(Exposure.program == prog.program))
                products = session.scalar(select(func.count()).select_from(Product).join(
                    Exposure, Exposure.id == Product.exposure_id)
                    .where(Exposure.program == prog.program))
                mosaics = session.scalar(select(func.count()).select_from(Product).join(
                    Exposure, Exposure.id == Product.exposure_id)
                    .where(Exposure.program == prog.program, Product.kind == "i2d"))
                table.add_row(prog.program, prog.pi_name, str(prog.exclusive_months),
                              str(exposures), str(products), str(mosaics))
    finally:
        engine.dispose()
    return table


def _print_reprocessing_tour(console: Console, cfg: SiteConfig, sim: Path) -> None:
    site = f"--site {cfg.root}"
    console.rule("next: reprocessing")
    console.print(
        "The first dark the calibration team delivered was measured through a light leak "
        f"(+{DEMO_DARK_ERROR} DN/s): every rate is too low.  The remeasured dark is in "
        f"{sim / 'refs_update'}.  Deliver it and reprocess exactly what it changes:\n"
        f"  obsflow refs deliver {site} {sim / 'refs_update'}/*.fits\n"
        f"  obsflow reprocess plan {site}\n"
        f"  obsflow reprocess run {site} --name better-dark\n"
        f"  obsflow truth-residuals {site} --truth {sim / 'truth'}", soft_wrap=True)


def demo_user(cfg: SiteConfig) -> tuple[list[str], str]:
    """Create (or reset) :data:`DEMO_USER` with a new random password, a member of every
    program in the archive; return (its programs, the password)."""
    from obsflow.archive.context import Archive
    from obsflow.archive.schema import Program
    from obsflow.archive.users import add_member, add_user

    password = secrets.token_urlsafe(12)
    with Archive.from_site(cfg) as arch, arch.session() as session, session.begin():
        add_user(session, DEMO_USER, password=password)
        programs = sorted(session.scalars(select(Program.program)).all())
        for program in programs:
            add_member(session, program, DEMO_USER)
    return programs, password


def _serve(cfg: SiteConfig) -> None:
    from obsflow.archive.cli import serve

    serve.main(["--site", str(cfg.root)], standalone_mode=False)


def plan_examples(profile: Profile, subarray: str, out: Path) -> Path:
    """Plan the example programs (``obsflow.proposals.example_programs``) into ``out``.

    Each target is observed on ``subarray`` (the demo's, to stay fast) and the
    plan covers :data:`DEMO_PLAN_DAYS` from the first time (0.25-day steps) in
    the default cycle at which every example target is visible.  Raises
    ProposalError/PlanningError if the examples do not fit ``profile``.
    """
    import numpy as np

    from obsflow.exceptions import PlanningError
    from obsflow.planning.scheduler import (
        default_cycle,
        observations,
        program_info,
        schedule,
        write_schedule,
    )
    from obsflow.planning.visibility import visible
    from obsflow.proposals import check_program, example_programs, load_program

    cycle = default_cycle(profile)
    programs = []
    for path in example_programs():
        prog = load_program(path)
        check_program(prog, profile, cycle, str(path))
        programs.append(prog.model_copy(update={"targets": [
            t.model_copy(update={"subarray": subarray}) for t in prog.targets]}))
    grid = np.arange(*cycle, 0.25)
    together = np.ones(grid.size, bool)
    for prog in programs:
        for t in prog.targets:
            together &= visible(profile, *t.position, grid)
    if not together.any():
        raise PlanningError("the example programs' targets are never visible together in the "
                            f"cycle MJD {cycle[0]:.1f}-{cycle[1]:.1f}")
    start = float(grid[np.argmax(together)])
    sched = schedule(observations(programs, profile), profile, start, start + DEMO_PLAN_DAYS)
    sched.programs = program_info(programs, profile)
    return write_schedule(out, sched, profile)


def run_demo(root: Path, *, seed: int, exposures: int, serve: bool,
             simulate_with_progress: Callable[[Path, SimOptions], SimResult],
             console: Console, proposals: bool = False) -> float:
    """Run the demo at ``root`` (see the module docstring); return the chain's seconds."""
    from obsflow.archive.hips import site_hips
    from obsflow.kernel_cache import announce_compilation

    started = time.perf_counter()
    cfg = init_site(root)
    announce_compilation()
    profile = cfg.load_profile()
    sub = min(profile.instruments[0].subarrays,
              key=lambda s: abs(s.nx - DEMO_SUBARRAY_WIDTH)).name
    options = SimOptions(seed=seed, profile=cfg.profile.name, exposures=exposures, subarray=sub,
                         faults=parse_faults("all"), dark_error=DEMO_DARK_ERROR,
                         colour_filters=DEMO_COLOUR_FILTERS, dither_points=DEMO_DITHERS)
    if proposals:
        plan = plan_examples(profile, sub, root / "plan.json")
        console.print(f"the example programs planned into {plan} "
                      f"(obsflow plan status {plan})")
        options = dataclasses.replace(options, exposures=None, plan=plan)
    result = simulate_with_progress(root / "simulation", options)
    new_refs = _deliver_refs(cfg, result.out / "refs")
    _record_programs(cfg, result.out / "truth" / "plan.json")
    console.print(f"site {cfg.root}: {new_refs} reference files delivered to the registry, "
                  f"programs {', '.join(p.program for p in result.plan.programs)} recorded")
    downlink = result.out / "downlink"
    _drop([downlink / n for n in result.downlink_files if "_retx" not in n], cfg.incoming_dir)
    _run_chain(cfg, console, "first contacts: ingest -> calibrate -> archive")
    console.print(_gap_table(cfg))
    _drop([downlink / n for n in result.downlink_files if "_retx" in n], cfg.incoming_dir)
    summary = _run_chain(cfg, console, "retransmission: ingest -> calibrate -> archive")
    console.print(_archive_table(cfg))
    console.print(site_hips(cfg), markup=False)
    seconds = time.perf_counter() - started
    _print_reprocessing_tour(console, cfg, result.out)
    url = f"http://{cfg.server.host}:{cfg.server.port}/"
    console.print(f"demo chain done in {seconds:.1f} s "
                  f"({summary.total('failed')} failed jobs; `obsflow jobs` lists them all)")
    programs, password = demo_user(cfg)
    others = ("see only the metadata of proprietary observations"
              if cfg.archive.access_policy == "metadata" else "do not see proprietary data")
    console.print(f"log in to the web archive ({url}login) as user {DEMO_USER!r}, password "
                  f"{password!r}: a member of programs {', '.join(programs)}, it sees their "
                  f"proprietary data (anonymous visitors {others})", markup=False)
    if serve:
        console.print(f"web archive: {url}  (API {url}api/search, OpenAPI {url}docs)")
        console.print(f"serving the archive on {url}; Ctrl-C stops")
        _serve(cfg)
    else:
        console.print(f"to browse the archive: obsflow serve --site {cfg.root}")
    return seconds
