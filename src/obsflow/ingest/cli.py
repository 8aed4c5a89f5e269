"""``obsflow ingest``, ``obsflow status`` and ``obsflow accounting gaps``.

``obsflow ingest`` (and ``obsflow run``, through :func:`report_set_aside`)
exit with :data:`SET_ASIDE_EXIT_CODE` (3) when their pass set data aside:
a file quarantined, packets of an APID the profile does not define, or an
entry in ``incoming/`` that ingest refuses (a link, folder or FIFO); each
is printed on stderr as one line naming the file and why.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from obsflow.cli_console import output_console
from obsflow.config import SiteConfig, default_site_root
from obsflow.dbread import open_reader
from obsflow.site import open_site

if TYPE_CHECKING:
    # imported by the commands that use them: `obsflow run` and `jobs` import this module
    # for its exit status and set-aside report, and `jobs` reads neither the ledger nor rich
    from rich.table import Table

    from obsflow.ingest.service import IngestReport

__all__ = ["SET_ASIDE_EXIT_CODE", "accounting_group", "ingest_cmd", "report_set_aside",
           "set_aside_lines", "status_cmd"]

SET_ASIDE_EXIT_CODE = 3
"""Exit status of ``ingest`` and ``run`` when they finished but set data aside."""

EXIT_STATUS_HELP = (
    "Exit status: 0 done; 2 error (one line on stderr); 3 done, but data was set aside "
    "(a file quarantined, packets of an APID the profile does not define, or a link, folder "
    "or FIFO refused in incoming/: one line each on stderr, all listed by `obsflow status`)."
)

site_option = click.option("--site", "site_dir", type=click.Path(path_type=Path), default=None,
                           help="Site folder (default $OBSFLOW_HOME or ./obsflow-site).")


def _site(site_dir: Path | None) -> SiteConfig:
    return open_site((site_dir or default_site_root()).expanduser().resolve())


def _report_line(report: IngestReport) -> str:
    line = (f"archived {len(report.archived)}, re-delivered {len(report.redelivered)}, "
            f"parsed {len(report.parsed)}, quarantined {len(report.quarantined)}, "
            f"assembled {len(report.assembled)} "
            f"({sum(a.partial for a in report.assembled)} partial)")
    if report.unassemblable:
        line += f", {len(report.unassemblable)} with unassemblable packets"
    if report.refused:
        line += f", refused {len(report.refused)} in incoming"
    if report.settling:
        line += (f"; {len(report.settling)} in incoming still settling (changed less than "
                 f"ingest.settle_seconds ago; taken once unchanged that long)")
    return line


def set_aside_lines(cfg: SiteConfig) -> dict[str, str]:
    """The site's set-aside items now, one line each (:meth:`SetAside.lines`)."""
    from obsflow.ingest.setaside import set_aside

    with open_reader(cfg.database_url) as db:
        return set_aside(db, cfg, cfg.load_profile()).lines()


def report_set_aside(cfg: SiteConfig, before: dict[str, str]) -> None:
    """Print what was set aside since ``before`` (and every refused incoming entry) on
    stderr, one line each, and exit with :data:`SET_ASIDE_EXIT_CODE`; return if nothing was."""
    now = set_aside_lines(cfg)
    new = [line for key, line in now.items()
           if key not in before or key.startswith("refused:")]
    if not new:
        return
    from rich.console import Console

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    for line in new:
        err.print(f"[yellow]set aside:[/yellow] {line}", markup=True)
    err.print(f"[yellow]{len(new)} set aside[/yellow]; `obsflow status` lists them "
              f"(exit status {SET_ASIDE_EXIT_CODE})")
    raise click.exceptions.Exit(SET_ASIDE_EXIT_CODE)


@click.command(name="ingest", epilog=EXIT_STATUS_HELP)
@site_option
@click.option("--once", "mode", flag_value="once", default=True,
              help="One pass over the incoming folder, then exit (default).")
@click.option("--watch", "mode", flag_value="watch", help="Keep polling every ingest.poll_seconds.")
@click.option("--wait", "wait_seconds", type=click.FloatRange(min=0), default=60.0, show_default=True,
              help="With --once: wait up to this many seconds for files still being changed "
                   "(younger than ingest.settle_seconds) to settle, then take them; 0 never waits.")
def ingest_cmd(site_dir: Path | None, mode: str, wait_seconds: float) -> None:
    """Take files from the incoming folder: archive, account, assemble Level 1.

    Only regular files are taken; symbolic links, folders and FIFOs are
    refused (left in place and reported), hidden and ``.part`` names are
    left alone.  A file is taken once it has been unchanged for
    ingest.settle_seconds (a copy may still be writing it): `--once` waits
    for files that are still settling (see --wait) and says so.
    """
    from obsflow.ingest.service import ingest_once, watch

    cfg = _site(site_dir)
    console = output_console()
    before = set_aside_lines(cfg)
    if mode == "watch":
        console.print(f"watching {cfg.incoming_dir} every {cfg.ingest.poll_seconds} s (Ctrl-C stops)")
        try:
            watch(cfg, on_report=lambda r: console.print(f"{time.strftime('%H:%M:%S')} "
                                                         f"{_report_line(r)}"))
        except KeyboardInterrupt:
            console.print("stopped")
    else:
        report = ingest_once(cfg)
        if report.settling and not wait_seconds < report.settle_wait:
            console.print(f"{_report_line(report)}\nwaiting {report.settle_wait:.0f} s for "
                          f"{len(report.settling)} files to settle")
            time.sleep(report.settle_wait + 0.05)
            report = ingest_once(cfg)
        console.print(_report_line(report))
    report_set_aside(cfg, before)


def _status_tables(status: dict[str, Any]) -> list[Table]:
    from rich.table import Table

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
    if status["unassemblable"]:
        u = Table(title="unassemblable packets (APIDs the profile does not define)")
        for col in ("file", "APID", "packets"):
            u.add_column(col, justify="left" if col == "file" else "right")
        for item in status["unassemblable"]:
            u.add_row(item["name"], str(item["apid"]), f"{item['packets']:,}")
        tables.append(u)
    if status["refused"]:
        r = Table(title="refused in incoming (not regular files; left in place)")
        r.add_column("entry")
        r.add_column("reason")
        for item in status["refused"]:
            r.add_row(item["path"], item["reason"])
        tables.append(r)
    return tables


@click.command(name="status")
@site_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
def status_cmd(site_dir: Path | None, as_json: bool) -> None:
    """What arrived and what is missing: files, packets, exposures, gaps, and what was set
    aside (quarantined files, unassemblable packets, entries refused in incoming/)."""
    from obsflow.ingest.setaside import set_aside
    from obsflow.ingest.status import accounting_status

    cfg = _site(site_dir)
    with open_reader(cfg.database_url) as db:  # sqlite3 on a SQLite site: no SQLAlchemy
        status = accounting_status(db)
        status.update(set_aside(db, cfg, cfg.load_profile()).as_dict())
    if as_json:
        click.echo(json.dumps(status, indent=1))
        return
    console = output_console()
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
    """List missing packet ranges per exposure; write a retransmission request (if any)."""
    if request_path is not None and request_path.is_dir():
        raise click.BadParameter(f"{request_path} is a folder; expected a file name for the "
                                 "request JSON", param_hint="--request")
    from rich.table import Table

    from obsflow.fileio import atomic_path
    from obsflow.ingest.status import gap_report, retransmission_request

    cfg = _site(site_dir)
    with open_reader(cfg.database_url) as db:
        gaps = gap_report(db)
        request = retransmission_request(db, cfg.site.name)
    table = Table(title=f"open gaps: {request['packets_missing']} packets")
    for col in ("exposure", "product", "APID", "expected", "received", "missing ranges"):
        table.add_column(col)
    for g in gaps:
        ranges = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in g["missing_ranges"])
        table.add_row(str(g["exposure_id"]), str(g["basename"]), str(g["apid"]),
                      str(g["expected"]), str(g["received"]), ranges)
    output_console().print(table)
    if not gaps:
        click.echo("nothing is missing: no retransmission request written")
        return
    path = request_path or cfg.logs_dir / f"retransmission-{time.strftime('%Y%m%dT%H%M%S')}.json"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(request, indent=1))
    click.echo(f"retransmission request: {path}")
