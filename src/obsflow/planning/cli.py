"""``obsflow propose check``, ``obsflow plan make|visibility|status``."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["plan_group", "propose_group"]

_profile_option = click.option("--profile", default="webb_like", show_default=True,
                               help="Observatory profile: built-in name or .toml path.")
_cycle_option = click.option("--start", default=None,
                             help="Cycle start, ISO date (default: mission epoch + 300 days).")
_days_option = click.option("--days", type=float, default=None,
                            help="Cycle length in days (default 365).")
_site_option = click.option("--site", "site_dir", default=None,
                            type=click.Path(file_okay=False, path_type=Path),
                            help="Site folder whose observation log and archive give each "
                                 "observation's status (default $OBSFLOW_HOME or "
                                 "./obsflow-site).")


def _site_status(site_dir: Path | None, plan, now: float | None):  # type: ignore[no-untyped-def]
    """Each observation's status in ``plan`` from the site's records (planning.status)."""
    from obsflow.config import default_site_root
    from obsflow.db import make_engine
    from obsflow.planning.status import site_status
    from obsflow.site import open_site

    cfg = open_site((site_dir or default_site_root()).expanduser().resolve())
    engine = make_engine(cfg.database_url)
    try:
        return site_status(engine, plan, now)
    finally:
        engine.dispose()


def _cycle(profile, start: str | None, days: float | None,  # type: ignore[no-untyped-def]
           default_days: float) -> tuple[float, float]:
    from obsflow.planning.scheduler import default_cycle

    if start is None:
        t0 = default_cycle(profile)[0]
    else:
        t0 = _mjd("--start", start)
    return t0, t0 + (days if days is not None else default_days)


def _mjd(option: str, value: str) -> float:
    """``value`` (an ISO date/time, UTC) as MJD; PlanningError naming ``option`` if it is not."""
    from astropy.time import Time

    from obsflow.exceptions import PlanningError

    try:
        return float(Time(value, scale="utc").mjd)
    except ValueError as exc:
        raise PlanningError(f"{option}: {value!r} is not an ISO date/time") from exc


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
              help="Reschedule this plan (skip-ahead) from the --site's records at --now.")
@_site_option
@click.option("--now", default=None, help="ISO time the next plan starts (with --after).")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
def plan_make(profile: str, start: str | None, days: float | None, out: Path,
              previous: Path | None, site_dir: Path | None, now: str | None,
              files: tuple[Path, ...]) -> None:
    """Schedule program FILES into a time-ordered plan (or reschedule one with --after)."""
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
        if now is None or files:
            raise PlanningError("--after needs --now and no program files")
        mjd = _mjd("--now", now)
        before = read_schedule(previous)
        sched = reschedule(before, _site_status(site_dir, before, mjd), prof, mjd)
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
@_site_option
@click.option("--now", default=None,
              help="ISO time (default: the current time): a silent observation whose slot ended "
                   "before it is 'missed'.")
@click.argument("plan", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def plan_status(site_dir: Path | None, now: str | None, plan: Path) -> None:
    """Show PLAN: each observation's time and status from the site's observation log and
    archive (executed, pending, skipped, failed, missed, planned), then the report."""
    from astropy.time import Time

    from obsflow.planning.scheduler import read_schedule

    sched = read_schedule(plan)
    mjd = float(Time.now().utc.mjd) if now is None else _mjd("--now", now)
    status = _site_status(site_dir, sched, mjd)
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
