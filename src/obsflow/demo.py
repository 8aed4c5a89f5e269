"""``obsflow demo``: the whole chain on a simulated downlink, on the embedded default.

Each stage that has landed joins here; the demo is the README's promise.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from obsflow.db import make_engine
from obsflow.ingest.cli import _report_line, _status_tables
from obsflow.ingest.service import ingest_once
from obsflow.ingest.status import accounting_status, gap_report
from obsflow.simulate.downlink import parse_faults
from obsflow.simulate.run import SimOptions, SimResult
from obsflow.site import init_site

__all__ = ["run_demo"]


def _drop(files: list[Path], incoming: Path) -> None:
    """Deliver files like a ground station: write as ``.part``, then rename."""
    for src in files:
        part = incoming / (src.name + ".part")
        shutil.copyfile(src, part)
        part.rename(incoming / src.name)


def _gap_table(engine_url: str) -> Table:
    engine = make_engine(engine_url)
    try:
        gaps = gap_report(engine)
    finally:
        engine.dispose()
    table = Table(title=f"open gaps after the first contacts: {sum(g['packets_missing'] for g in gaps)}"
                        " packets to re-send")
    for col in ("product", "expected", "received", "missing packet ranges"):
        table.add_column(col)
    for g in gaps:
        table.add_row(str(g["basename"]), str(g["expected"]), str(g["received"]),
                      ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in g["missing_ranges"]))
    return table


def run_demo(root: Path, *, seed: int, exposures: int, serve: bool,
             simulate_with_progress: Callable[[Path, SimOptions], SimResult],
             console: Console) -> None:
    """Init a site at ``root``, simulate, ingest (with a retransmission) and report."""
    cfg = init_site(root)
    profile = cfg.load_profile()
    sub = min(profile.instruments[0].subarrays, key=lambda s: abs(s.nx - 160)).name
    options = SimOptions(seed=seed, profile=cfg.profile.name, exposures=exposures, subarray=sub,
                         faults=parse_faults("all"))
    started = time.perf_counter()
    result = simulate_with_progress(root / "simulation", options)
    for ref in sorted((result.out / "refs").glob("*.fits")):
        shutil.copy2(ref, cfg.refs_dir / ref.name)
    downlink = result.out / "downlink"
    first = [downlink / n for n in result.downlink_files if "_retx" not in n]
    retx = [downlink / n for n in result.downlink_files if "_retx" in n]
    _drop(first, cfg.incoming_dir)
    time.sleep(cfg.ingest.settle_seconds)
    console.print(f"ingest (first contacts): {_report_line(ingest_once(cfg))}")
    console.print(_gap_table(cfg.database_url))
    _drop(retx, cfg.incoming_dir)
    time.sleep(cfg.ingest.settle_seconds)
    console.print(f"ingest (retransmission): {_report_line(ingest_once(cfg))}")
    engine = make_engine(cfg.database_url)
    try:
        for table in _status_tables(accounting_status(engine)):
            console.print(table)
    finally:
        engine.dispose()
    console.print(f"demo chain done in {time.perf_counter() - started:.1f} s; site {root}; "
                  f"Level-1 products in {cfg.products_dir / 'level1'}")
    if serve:
        console.print("(the web archive joins the demo when the archive stage lands)")
