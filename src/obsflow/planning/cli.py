"""``obsflow propose check``, ``obsflow plan make|visibility|status``."""

from __future__ import annotations

import json
from pathlib import Path

import click

__all__ = ["plan_group", "propose_group"]

_profile_option = click.option("--profile", default="webb_like", show_default=True,
                               help="Observatory profile: built-in name or .toml path.")
_cycle_option = click.option("--start", default=None,
                             help="Cycle start, ISO date (default: mission epoch + 300 days).")
_days_option = click.option("--days", type=float, default=None,
                            help="Cycle length in days (default 365).")


def _cycle(profile, start: str | None, days: float | None,  # type: ignore[no-untyped-def]
           default_days: float) -> tuple[float, float]:
    from astropy.time import Time

    from obsflow.exceptions import PlanningError
    from obsflow.planning.scheduler import default_cycle

    if start is None:
        t0 = default_cycle(profile)[0]
    else:
        try:
            t0 = float(Time(start, scale="utc").mjd)
        except ValueError as exc:
            raise PlanningError(f"--start: {start!r} is not an ISO date/time") from exc
    return t0, t0 + (days if days is not None else default_days)


@click.group("propose")
def propose_group() -> None:
    """Program (proposal) files."""


@propose_group.command("check")
@_profile_option
@_cycle_option
@_days_option
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
def propose_check(profile: str, start: str | None, days: float | None,
                  files: tuple[Path, ...]) -> None:
    """Validate program FILES against the profile (filters, groups, visibility in the cycle)."""
    from obsflow.profiles import load_profile
    from obsflow.proposals import check_program, load_program

    prof = load_profile(profile)
    cycle = _cycle(prof, start, days, 365.0)
    for path in files:
        notes = check_program(load_program(path), prof, cycle, str(path))
        click.echo(f"{path}: ok")
        for note in notes:
            click.echo(f"  {note}")


@click.group("plan")
def plan_group() -> None:
    """Visibility and scheduling of approved programs."""


@plan_group.command("make")
@_profile_option
@_cycle_option
@_days_option
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Plan file to write (JSON).")
@click.option("--after", "previous", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Reschedule this plan (skip-ahead) with --status and --now.")
@click.option("--status", "status_file", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON {observation key: executed|skipped|failed} (with --after).")
@click.option("--now", default=None, help="ISO time the next plan starts (with --after).")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
def plan_make(profile: str, start: str | None, days: float | None, out: Path,
              previous: Path | None, status_file: Path | None, now: str | None,
              files: tuple[Path, ...]) -> None:
    """Schedule program FILES into a time-ordered plan (or reschedule one with --after)."""
    from astropy.time import Time

    from obsflow.exceptions import PlanningError
    from obsflow.planning.scheduler import (
        observations,
        program_info,
        read_schedule,
        reschedule,
        schedule,
        write_schedule,
    )
    from obsflow.profiles import load_profile
    from obsflow.proposals import check_program, load_program

    prof = load_profile(profile)
    if previous is not None:
        if status_file is None or now is None or files:
            raise PlanningError("--after needs --status and --now and no program files")
        status = json.loads(status_file.read_text())
        if not isinstance(status, dict):
            raise PlanningError(f"{status_file}: expected a JSON object {{key: status}}")
        sched = reschedule(read_schedule(previous), status, prof,
                           float(Time(now, scale="utc").mjd))
    else:
        if not files:
            raise PlanningError("give program files to schedule (or --after PLAN)")
        cycle = _cycle(prof, start, days, 365.0)
        programs = [load_program(p) for p in files]
        for prog, path in zip(programs, files, strict=True):
            check_program(prog, prof, cycle, str(path))
        sched = schedule(observations(programs, prof), prof, *cycle)
        sched.programs = program_info(programs, prof)
    write_schedule(out, sched, prof)
    _print_report(sched.report())
    click.echo(f"plan written to {out}")


def _print_report(report: dict[str, float]) -> None:
    click.echo(f"scheduled {report['scheduled']}/{report['observations']} observations "
               f"({report['scheduled_fraction']:.0%}); slews {report['total_slew_deg']:.1f} deg; "
               f"filter moves {report['filter_moves']} ({report['filter_steps']} steps); "
               f"science {report['science_hours']:.1f} h, moving {report['move_hours']:.2f} h, "
               f"idle {report['idle_hours']:.1f} h")


@plan_group.command("status")
@click.option("--status", "status_file", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON {observation key: executed|skipped|failed} from the observatory.")
@click.argument("plan", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def plan_status(status_file: Path | None, plan: Path) -> None:
    """Show PLAN: each observation's time and status, then the report."""
    from astropy.time import Time

    from obsflow.planning.scheduler import read_schedule

    sched = read_schedule(plan)
    status = json.loads(status_file.read_text()) if status_file else {}
    for s in sched.scheduled:
        when = Time(s.start, format="mjd").isot[:19]
        click.echo(f"{when}  {s.observation.key:32s} PA {s.pa_v3:6.1f}  "
                   f"{status.get(s.observation.key, 'planned')}")
    for o, reason in sched.unscheduled:
        click.echo(f"{'-':19s}  {o.key:32s} unscheduled: {reason}")
    _print_report(sched.report())


@plan_group.command("visibility")
@_profile_option
@_cycle_option
@_days_option
@click.option("--ra", type=click.FloatRange(0.0, 360.0, max_open=True), required=True,
              help="Right ascension, degrees [0, 360).")
@click.option("--dec", type=click.FloatRange(-90.0, 90.0), required=True,
              help="Declination, degrees [-90, 90].")
def plan_visibility(profile: str, start: str | None, days: float | None, ra: float,
                    dec: float) -> None:
    """Visibility windows of (RA, Dec) in the cycle, with the allowed V3 PA at each start."""
    from astropy.time import Time

    from obsflow.planning.visibility import allowed_pa, windows
    from obsflow.profiles import load_profile

    prof = load_profile(profile)
    for w in windows(prof, ra, dec, *_cycle(prof, start, days, 365.0)):
        lo, hi = allowed_pa(prof, ra, dec, w.start)
        click.echo(f"{Time(w.start, format='mjd').isot[:16]} to "
                   f"{Time(w.end, format='mjd').isot[:16]}  ({w.days:.2f} d)  "
                   f"PA_V3 {lo:.1f}..{hi % 360.0 if hi < 360 else hi:.1f} deg at start")
