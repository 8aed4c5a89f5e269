"""``obsflow ingest``, ``obsflow status`` and ``obsflow accounting gaps``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from obsflow.config import SiteConfig, default_site_root
from obsflow.db import make_engine
from obsflow.fileio import atomic_path
from obsflow.ingest.service import IngestReport, ingest_once, watch
from obsflow.ingest.status import accounting_status, gap_report, retransmission_request
from obsflow.site import open_site

__all__ = ["accounting_group", "ingest_cmd", "status_cmd"]

site_option = click.option("--site", "site_dir", type=click.Path(path_type=Path), default=None,
                           help="Site folder (default $OBSFLOW_HOME or ./obsflow-site).")


def _site(site_dir: Path | None) -> SiteConfig:
    return open_site((site_dir or default_site_root()).expanduser().resolve())


def _report_line(report: IngestReport) -> str:
    return (f"archived {len(report.archived)}, re-delivered {len(report.redelivered)}, "
            f"parsed {len(report.parsed)}, quarantined {len(report.quarantined)}, "
            f"assembled {len(report.assembled)} "
            f"({sum(a.partial for a in report.assembled)} partial)")


@click.command(name="ingest")
@site_option
@click.option("--once", "mode", flag_value="once", default=True,
              help="One pass over the incoming folder, then exit (default).")
@click.option("--watch", "mode", flag_value="watch", help="Keep polling every ingest.poll_seconds.")
def ingest_cmd(site_dir: Path | None, mode: str) -> None:
    """Take files from the incoming folder: archive, account, assemble Level 1."""
    cfg = _site(site_dir)
    console = Console(highlight=False)
    if mode == "watch":
        console.print(f"watching {cfg.incoming_dir} every {cfg.ingest.poll_seconds} s (Ctrl-C stops)")
        try:
            watch(cfg, on_report=lambda r: console.print(f"{time.strftime('%H:%M:%S')} "
                                                         f"{_report_line(r)}"))
        except KeyboardInterrupt:
            console.print("stopped")
        return
    report = ingest_once(cfg)
    console.print(_report_line(report))
    for name in report.quarantined:
        console.print(f"[yellow]quarantined[/yellow] {name}")


def _status_tables(status: dict[str, Any]) -> list[Table]:
    files, packets, exposures = status["files"], status["packets"], status["exposures"]
    summary = Table(title="accounting")
    summary.add_column("item")
    summary.add_column("value", justify="right")
    summary.add_row("files received (today / total)", f"{files['today']} / {files['total']}")
    summary.add_row("re-deliveries", str(files["redeliveries"]))
    summary.add_row("bytes", f"{files['bytes']:,}")
    summary.add_row("packets", f"{packets['total']:,}")
    summary.add_row("CRC failures", str(packets["crc_failures"]))
    summary.add_row("bytes skipped", str(packets["skipped_bytes"]))
    for state in ("complete", "partial", "waiting", "skipped"):
        summary.add_row(f"exposures {state}", str(exposures[state]))
    summary.add_row("open gaps", f"{status['open_gaps']['packets']} packets in "
                                 f"{status['open_gaps']['exposures']} exposures")
    tables = [summary]
    if status.get("sequence_counts"):
        seq = Table(title="sequence counts per APID (within files, 14-bit wrap handled)")
        for col in ("APID", "packets", "missing", "duplicates", "out of order"):
            seq.add_column(col, justify="right")
        for row in status["sequence_counts"]:
            seq.add_row(str(row["apid"]), f"{row['packets']:,}", str(row["missing_within_files"]),
                        str(row["duplicates_within_files"]), str(row["out_of_order"]))
        tables.append(seq)
    if status["quarantined"]:
        q = Table(title="quarantined files")
        q.add_column("file")
        q.add_column("reason")
        for item in status["quarantined"]:
            q.add_row(item["name"], item["reason"])
        tables.append(q)
    return tables


@click.command(name="status")
@site_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
def status_cmd(site_dir: Path | None, as_json: bool) -> None:
    """What arrived and what is missing: files, packets, exposures, gaps, quarantine."""
    cfg = _site(site_dir)
    engine = make_engine(cfg.database_url)
    try:
        status = accounting_status(engine)
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps(status, indent=1))
        return
    console = Console(highlight=False)
    for table in _status_tables(status):
        console.print(table)


@click.group(name="accounting")
def accounting_group() -> None:
    """Data accounting: missing packets and retransmission requests."""


@accounting_group.command(name="gaps")
@site_option
@click.option("--request", "request_path", type=click.Path(path_type=Path), default=None,
              help="Write the retransmission request JSON here "
                   "(default <site>/logs/retransmission-<time>.json).")
def gaps_cmd(site_dir: Path | None, request_path: Path | None) -> None:
    """List missing packet ranges per exposure; write a retransmission request."""
    cfg = _site(site_dir)
    engine = make_engine(cfg.database_url)
    try:
        gaps = gap_report(engine)
        request = retransmission_request(engine, cfg.site.name)
    finally:
        engine.dispose()
    table = Table(title=f"open gaps: {request['packets_missing']} packets")
    for col in ("exposure", "product", "APID", "expected", "received", "missing ranges"):
        table.add_column(col)
    for g in gaps:
        ranges = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in g["missing_ranges"])
        table.add_row(str(g["exposure_id"]), str(g["basename"]), str(g["apid"]),
                      str(g["expected"]), str(g["received"]), ranges)
    Console(highlight=False).print(table)
    path = request_path or cfg.logs_dir / f"retransmission-{time.strftime('%Y%m%dT%H%M%S')}.json"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(request, indent=1))
    click.echo(f"retransmission request: {path}")
