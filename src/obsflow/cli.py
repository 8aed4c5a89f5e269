"""The ``obsflow`` command.

Each subcommand is a small function registered on :func:`main`, a
:class:`ObsflowGroup`: any :class:`~obsflow.exceptions.ObsflowError` raised
by a subcommand is printed as one red line ``error: ...`` on stderr and the
command exits with status 2 (no traceback; ``-v`` adds one to the log).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from obsflow.cli_types import FiniteFloatRange
from obsflow.exceptions import ObsflowError, SiteError
from obsflow.simulate.faults import FAULTS, parse_faults

if TYPE_CHECKING:
    # rich is imported where a command prints (a tenth of a second the light commands' help
    # and failures need not pay; its progress bars only by the commands that show them)
    from rich.progress import Progress
    from rich.table import Table

    from obsflow.cli_console import OutputConsole
    from obsflow.config import SiteConfig
    from obsflow.profiles import Profile
    from obsflow.simulate.run import SimOptions, SimResult

__all__ = ["LAZY_COMMANDS", "ObsflowGroup", "main"]

ERROR_EXIT_CODE = 2
"""Exit status of a command that failed with an :class:`ObsflowError`."""

logger = logging.getLogger(__name__)

LAZY_COMMANDS: dict[str, tuple[str, str, str]] = {
    # name: (module, attribute, the short help `obsflow --help` lists without importing it)
    "accounting": ("obsflow.ingest.cli", "accounting_group",
                  "Data accounting: missing packets and retransmission requests."),
    "archive": ("obsflow.archive.cli", "archive",
               "Register programs and products in the archive."),
    "etc": ("obsflow.etc.cli", "etc_cmd",
            "S/N, saturation and recommended exposure of a source (give --ngroups or --snr)."),
    "plan": ("obsflow.planning.cli", "plan_group",
             "Visibility and scheduling of approved programs."),
    "propose": ("obsflow.planning.cli", "propose_group", "Program (proposal) files."),
    "calibrate": ("obsflow.calibrate.cli", "calibrate_cmd",
                 "Run Level-1 FILES through their recipe: write _rate, _rateints and _cal products."),
    "ingest": ("obsflow.ingest.cli", "ingest_cmd",
              "Take files from the incoming folder: archive, account, assemble Level 1."),
    "jobs": ("obsflow.orchestrate.cli", "jobs_group",
            "List jobs (newest last); `obsflow jobs retry ID` re-queues a failed one."),
    "lightcurve": ("obsflow.tso.cli", "lightcurve_cmd",
                  "Per-integration photometry of _rateints FILES: write <basename>_phot.ecsv and _phot.png."),
    "refs": ("obsflow.refdata.cli", "refs_group",
            "Reference files: deliver them, see which one applies, manage the numbered contexts."),
    "reprocess": ("obsflow.reprocess.cli", "reprocess_group",
                 "Reprocessing: which products a change affects, and campaigns that remake them."),
    "run": ("obsflow.orchestrate.cli", "run_cmd",
           "Run the chain: ingest -> calibrate -> register in the archive, until idle."),
    "serve": ("obsflow.archive.cli", "serve",
             "Serve the archive: web pages at /, HTTP API at /api (OpenAPI at /docs), VO at /vo."),
    "status": ("obsflow.ingest.cli", "status_cmd",
              "What arrived and what is missing: files, packets, exposures, gaps, and what was set aside (quarantined files, unassemblable packets, entries refused in incoming/)."),
    "tokens": ("obsflow.archive.cli", "tokens",
              "API tokens."),
    "users": ("obsflow.archive.cli", "users",
             "Archive users."),
}
"""Subcommands defined in other modules, imported only when run (or asked for help), so
``obsflow --help`` and the light commands do not pay for numpy, astropy, numba and the
archive.  A test checks each short help against the command's own."""


def _error_line(text: str) -> None:
    """Print ``error: <text>`` on stderr as one line (newlines in ``text`` become spaces)."""
    from rich.console import Console
    from rich.text import Text

    text = " ".join(text.split())
    message = Text.assemble(("error: ", "bold red"), (text, "red"))
    Console(stderr=True).print(message, soft_wrap=True, highlight=False)


class ObsflowGroup(click.Group):
    """A click group that reports every expected failure of a subcommand in one line.

    An :class:`ObsflowError` (bad input, configuration, site), a usage error
    (a bad option value, a missing argument) and an operating-system error
    (a permission, a full disk; the path and the reason) are each printed as
    ``error: ...`` on stderr, with exit status 2 and no traceback (``-vv``
    logs one).  Anything else is a bug and keeps its traceback.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every subcommand name, the lazily imported ones included, sorted."""
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The subcommand ``cmd_name``, importing its module the first time it is asked for."""
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in LAZY_COMMANDS:
            module, attribute, _ = LAZY_COMMANDS[cmd_name]
            command = getattr(importlib.import_module(module), attribute)
            self.add_command(command, cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List the subcommands with their short help, importing none of the lazy ones."""
        rows = []
        for name in self.list_commands(ctx):
            if name in self.commands:
                command = self.commands[name]
                if command.hidden:
                    continue
                rows.append((name, command.get_short_help_str(limit=formatter.width)))
            else:
                stand_in = click.Command(name, help=LAZY_COMMANDS[name][2])
                rows.append((name, stand_in.get_short_help_str(limit=formatter.width)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; report an expected failure in one line."""
        try:
            return super().invoke(ctx)
        except ObsflowError as exc:
            logger.debug("command failed", exc_info=True)
            _error_line(str(exc))
            ctx.exit(ERROR_EXIT_CODE)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
            _error_line(f"{where}: {exc.format_message()} (see `{where} --help`)")
            ctx.exit(ERROR_EXIT_CODE)
        except OSError as exc:
            logger.debug("command failed", exc_info=True)
            where = f"{exc.filename}: " if exc.filename is not None else ""
            _error_line(f"{where}{exc.strerror or exc}")
            ctx.exit(ERROR_EXIT_CODE)


def _console() -> OutputConsole:
    from obsflow.cli_console import output_console

    return output_console()


def _setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose >= 2 else logging.INFO if verbose == 1 else logging.WARNING
    logging.getLogger("obsflow").setLevel(level)
    if verbose:
        from rich.console import Console
        from rich.logging import RichHandler

        logging.basicConfig(
            level=level,
            format="%(message)s",
            handlers=[RichHandler(console=Console(stderr=True), show_path=False)],
        )


@click.group(cls=ObsflowGroup)
@click.version_option(package_name="obsflow", prog_name="obsflow")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """obsflow: science data processing for space telescopes.

    \b
    Exit status of every command:
      0  done
      1  an internal error (a bug: a traceback is printed)
      2  an error: bad input, configuration or usage (one line on stderr)
      3  (ingest, run) done, but data was set aside: a file quarantined,
         packets of APIDs the profile does not define, or a link, folder
         or FIFO refused in incoming/ (one line each; `obsflow status`)
    """
    _setup_logging(verbose)


def _planned_paths(root: Path) -> list[Path]:
    """Paths ``init`` may create at ``root`` (to tell created from kept afterwards)."""
    from obsflow.config import CONFIG_FILENAME, SiteConfig, load_config
    from obsflow.db import sqlite_path

    candidates = [SiteConfig.for_root(root)]
    if (root / CONFIG_FILENAME).is_file():
        try:
            candidates.append(load_config(root))
        except ObsflowError:
            pass  # init itself reports the bad configuration
    paths = [root / CONFIG_FILENAME]
    for cfg in candidates:
        paths += list(cfg.folders.values())
        database = sqlite_path(cfg.database_url)
        paths += [database] if database is not None else []
    return paths


def _init_table(cfg: SiteConfig, existed: set[Path], rewritten: bool) -> Table:
    from rich.table import Table

    from obsflow.db import sqlite_path

    table = Table(title=f"obsflow site {cfg.site.name!r} (profile {cfg.profile.name})")
    table.add_column("item")
    table.add_column("path")
    table.add_column("status")
    rows = [("config", cfg.config_path), *cfg.folders.items()]
    database = sqlite_path(cfg.database_url)
    rows.append(("database", database if database is not None else Path(cfg.database_url)))
    for name, path in rows:
        status = "kept" if path in existed else "[green]created[/green]"
        if name == "config" and rewritten:
            status = "[yellow]rewritten[/yellow]"
        table.add_row(name, str(path), status)
    return table


@main.command()
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@click.option("--profile", default=None, help="Observatory profile: built-in name or .toml path.")
@click.option("--force", is_flag=True, help="Rewrite an existing obsflow.toml with defaults.")
def init(directory: Path | None, profile: str | None, force: bool) -> None:
    """Create a site: folders, obsflow.toml and database.

    DIRECTORY defaults to $OBSFLOW_HOME, or ./obsflow-site if that is unset.
    Idempotent: running it again on a site changes nothing.
    """
    from obsflow.config import default_site_root
    from obsflow.site import init_site

    root = (directory or default_site_root()).expanduser().resolve()
    existed = {path for path in _planned_paths(root) if path.exists()}
    cfg = init_site(root, profile=profile, force=force)
    rewritten = force and cfg.config_path in existed
    _console().print(_init_table(cfg, existed, rewritten))


def _profile_row(name: str, profile: Profile) -> tuple[str, ...]:
    detectors = [d for i in profile.instruments for d in i.detectors]
    sizes = sorted({f"{d.nx}x{d.ny}" for d in detectors})
    return (
        name,
        profile.mission.telescope,
        ", ".join(i.name for i in profile.instruments),
        str(len(detectors)),
        ", ".join(sizes),
    )


@main.command()
@click.argument("directory", required=False, type=click.Path(path_type=Path))
def upgrade(directory: Path | None) -> None:
    """Bring the database of the site at DIRECTORY to this obsflow's schema (keeps all data)."""
    from obsflow.config import CONFIG_FILENAME, default_site_root, load_config
    from obsflow.db import make_engine
    from obsflow.migrations import current_revision, head_revision
    from obsflow.site import open_site

    root = (directory or default_site_root()).expanduser().resolve()
    cfg = load_config(root) if (root / CONFIG_FILENAME).is_file() else None
    if cfg is None:
        raise SiteError(f"no obsflow site at {root}; run `obsflow init {root}`")
    engine = make_engine(cfg.database_url)
    try:
        before = current_revision(engine)
    finally:
        engine.dispose()
    open_site(root)  # upgrades in place
    if before == head_revision():
        _console().print(f"site {root}: schema already at revision {before}")
    else:
        _console().print(f"site {root}: schema upgraded from revision {before or '(none)'} to "
                         f"{head_revision()}")


@main.command(name="truth-residuals")
@click.option("--site", "site_dir", type=click.Path(path_type=Path), default=None,
              help="Site folder (default $OBSFLOW_HOME or ./obsflow-site).")
@click.option("--truth", "truth_dir", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The simulation's truth/ folder.")
def truth_residuals(site_dir: Path | None, truth_dir: Path) -> None:
    """How far the site's current rates are from the simulator's truth (clean pixels)."""
    from rich.table import Table

    from obsflow.config import default_site_root
    from obsflow.simulate.residuals import site_residuals
    from obsflow.site import open_site

    cfg = open_site(site_dir or default_site_root())
    rows = site_residuals(cfg, truth_dir)
    if not rows:
        raise SiteError(f"no current _rate product of {cfg.root} has a truth file in {truth_dir}")
    table = Table(title="current rates - truth (DN/s, unflagged pixels no cosmic ray touched)")
    for column in ("product", "run", "median", "median |diff|", "median pull", "pixels"):
        table.add_column(column)
    for r in rows:
        table.add_row(r.product_id, r.run, f"{r.median:+.4f}", f"{r.median_abs:.4f}",
                      f"{r.median_pull:+.3f}", str(r.pixels))
    _console().print(table)


@main.command()
def profiles() -> None:
    """List the built-in observatory profiles."""
    from rich.table import Table

    from obsflow.profiles import builtin_profiles, load_profile

    table = Table(title="built-in observatory profiles")
    for column in ("name", "telescope", "instruments", "detectors", "detector size"):
        table.add_column(column)
    for name in builtin_profiles():
        table.add_row(*_profile_row(name, load_profile(name)))
    _console().print(table)


def _progress_callback(progress: Progress) -> Callable[[str, int, int], None]:
    from rich.progress import TaskID

    tasks: dict[str, TaskID] = {}

    def report(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=total)
        progress.update(tasks[stage], completed=done, total=total)

    return report


def _run_simulation(out: Path, options: SimOptions) -> SimResult:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from obsflow.simulate.run import simulate

    columns = (TextColumn("{task.description:>16}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        return simulate(out, options, progress=_progress_callback(progress))


def _simulation_table(result: SimResult) -> Table:
    from rich.table import Table

    plan = result.plan
    table = Table(title=f"simulated downlink in {result.out}")
    table.add_column("item")
    table.add_column("value")
    status = {s: sum(e.status == s for e in plan.exposures) for s in ("executed", "skipped", "failed")}
    table.add_row("programs", ", ".join(p.program for p in plan.programs))
    table.add_row("products planned", f"{len(plan.exposures)} ({status})")
    table.add_row("pixel-frames", f"{result.pixel_frames:,}")
    table.add_row("packets", f"{result.packets:,} ({result.bytes / 1e6:.1f} MB)")
    table.add_row("faults", ", ".join(f"{k}: {v}" for k, v in sorted(result.faults.items())) or "none")
    table.add_row("downlink files", "\n".join(result.downlink_files))
    return table


@main.command(name="simulate")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="Folder to write downlink/, truth/, refs/ (and level1/) into.")
@click.option("--seed", default=1, show_default=True, type=int, help="Random seed.")
@click.option("--profile", default="webb_like", show_default=True,
              help="Observatory profile: built-in name or .toml path.")
@click.option("--exposures", type=click.IntRange(min=1), default=None,
              help="Number of pointed exposures (default 6).")
@click.option("--hours", type=FiniteFloatRange(min=0, min_open=True), default=None,
              help="Plan exposures filling this many hours instead.")
@click.option("--subarray", default="FULL", show_default=True,
              help="Subarray name from the profile, or the size of a square one (e.g. 160).")
@click.option("--faults", default="none", show_default=True,
              help=f"none, all, or a comma list of: {', '.join(FAULTS)}.")
@click.option("--dumps", default=3, show_default=True, type=click.IntRange(min=1),
              help="Recorder dumps (files) to cut the stream into.")
@click.option("--level1", is_flag=True, help="Also write the Level-1 _uncal.fits products.")
@click.option("--dark-error", default=0.0, show_default=True, type=FiniteFloatRange(min=0),
              help="Deliver an early dark measured with this error (DN/s) in refs/ and the "
                   "better dark in refs_update/ (a reprocessing exercise).")
@click.option("--tso", "tso_nints", type=click.IntRange(min=2), default=None,
              help="Instead of the programs' pointings: one time-series exposure of this many "
                   "integrations of a transiting planet's star on --subarray (e.g. 64).")
@click.option("--plan", "plan_file", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Observe this plan (`obsflow plan make`) instead of the built-in one; "
                   "truth/status.json gets each observation's status (for tests).")
@click.option("--plan-failures", type=click.IntRange(min=0), default=None,
              help="With --plan: skip or fail this many observations (default one in eight).")
def simulate_cmd(out: Path, seed: int, profile: str, exposures: int | None, hours: float | None,
                 subarray: str, faults: str, dumps: int, level1: bool,
                 dark_error: float, tso_nints: int | None, plan_file: Path | None,
                 plan_failures: int | None) -> None:
    """Run the virtual observatory and write a downlink with its truth.

    Same options and seed give byte-identical files.
    """
    if exposures is not None and hours is not None:
        raise click.UsageError("give --exposures or --hours, not both")
    if tso_nints is not None and (exposures is not None or hours is not None):
        raise click.UsageError("--tso plans its one exposure: give neither --exposures nor --hours")
    if plan_file is not None and (exposures is not None or hours is not None or tso_nints):
        raise click.UsageError("--plan gives the exposures: give no --exposures, --hours or --tso")
    if plan_failures is not None and plan_file is None:
        raise click.UsageError("--plan-failures needs --plan")
    from obsflow.simulate.run import SimOptions
    from obsflow.simulate.tso import TsoOptions

    options = SimOptions(seed=seed, profile=profile, exposures=exposures, hours=hours,
                         subarray=subarray, faults=parse_faults(faults), dumps=dumps, level1=level1,
                         dark_error=dark_error,
                         tso=None if tso_nints is None else TsoOptions(nints=tso_nints),
                         plan=plan_file, plan_failures=plan_failures)
    result = _run_simulation(out, options)
    _console().print(_simulation_table(result))


def downlink_table(folder: Path, profile: Profile) -> Table:
    from rich.table import Table

    from obsflow.simulate.summary import summarize_downlink

    summaries, nfiles, skipped = summarize_downlink(folder, profile)
    table = Table(title=f"{nfiles} downlink files in {folder} ({skipped} bytes skipped)")
    for column in ("APID", "kind", "packets", "CRC failures", "missing", "duplicates",
                   "out of order", "exposures"):
        table.add_column(column, justify="right" if column != "kind" else "left")
    for apid, s in sorted(summaries.items()):
        table.add_row(str(apid), s.kind, f"{s.packets:,}", str(s.crc_failures), str(s.missing),
                      str(s.duplicates), str(s.out_of_order), str(len(s.exposures)))
    return table


@main.command()
@click.option("--site", "site_dir", type=click.Path(path_type=Path), default=None,
              help="Site folder (default $OBSFLOW_HOME or ./obsflow-site).")
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--exposures", default=14, show_default=True, type=click.IntRange(min=1),
              help="Pointed exposures to simulate (the first nine: the deep field in three "
                   "filters, three dithers each).")
@click.option("--no-serve", is_flag=True, help="Do not start the web server at the end.")
@click.option("--proposals", is_flag=True,
              help="Start from the two example proposals: plan them (on the demo's subarray) "
                   "and observe the plan, instead of the simulator's built-in plan "
                   "(--exposures is then ignored).")
def demo(site_dir: Path | None, seed: int, exposures: int, no_serve: bool,
         proposals: bool) -> None:
    """Run the whole chain on a simulated downlink, on the embedded default.

    Creates the site, simulates a small downlink (subarray exposures, every
    fault switched on, a retransmission dump), delivers the reference files,
    drops the dumps in the incoming folder like a ground station would, runs
    ingest -> calibrate -> archive, shows what is missing, delivers the
    retransmission, runs again and serves the web archive on 127.0.0.1:8000.
    """
    from obsflow.config import default_site_root
    from obsflow.demo import run_demo

    root = (site_dir or default_site_root()).expanduser().resolve()
    run_demo(root, seed=seed, exposures=exposures, serve=not no_serve,
             simulate_with_progress=_run_simulation, console=_console(), proposals=proposals)
