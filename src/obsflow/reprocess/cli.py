"""``obsflow reprocess plan|run|status|cancel|retry``: reprocessing campaigns from the shell."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from astropy.time import Time
from rich.table import Table

from obsflow.cli_console import output_console
from obsflow.config import SiteConfig, default_site_root
from obsflow.db import make_engine
from obsflow.exceptions import ConfigError
from obsflow.reprocess.campaign import (
    CampaignStatus,
    campaign_status,
    cancel_campaign,
    retry_campaign,
    start_campaign,
)
from obsflow.reprocess.plan import REPROCESSABLE_KINDS, Plan, PlanCriteria, plan_reprocessing
from obsflow.site import open_site

__all__ = ["reprocess_group"]

_site_option = click.option("--site", "site_dir", type=click.Path(path_type=Path), default=None,
                            help="Site folder (default $OBSFLOW_HOME or ./obsflow-site).")


def _site(site_dir: Path | None) -> SiteConfig:
    return open_site(site_dir or default_site_root())


def _criteria_options(func: Any) -> Any:
    options = [
        click.option("--context", type=int, default=None,
                     help="Target reference context (default: the newest, when no other "
                          "change is named)."),
        click.option("--software", default=None, metavar="VERSION",
                     help="Products made by another obsflow version than VERSION."),
        click.option("--recipe", default=None, help="Products made with this recipe."),
        click.option("--program", default=None, help="Only this program."),
        click.option("--since", default=None, metavar="DATE",
                     help="Only exposures started on or after DATE (ISO, UTC)."),
        click.option("--kind", type=click.Choice(REPROCESSABLE_KINDS), default=None,
                     help="Only this product kind."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _criteria(context: int | None, software: str | None, recipe: str | None,
              program: str | None, since: str | None, kind: str | None) -> PlanCriteria:
    mjd = None
    if since is not None:
        try:
            mjd = float(Time(datetime.fromisoformat(since), scale="utc").mjd)
        except ValueError as exc:
            raise ConfigError(f"--since {since!r}: expected an ISO date such as 2027-03-01 "
                              "or 2027-03-01T12:00:00") from exc
    return PlanCriteria(context, software, recipe, program, mjd, kind)


def _plan(cfg: SiteConfig, criteria: PlanCriteria) -> Plan:
    engine = make_engine(cfg.database_url)
    try:
        return plan_reprocessing(engine, criteria)
    finally:
        engine.dispose()


def _reason_text(reasons: list[dict[str, Any]]) -> str:
    parts = []
    for r in reasons:
        if r["type"] == "reference":
            parts.append(f"{r['reftype']}: {r['old'] or '-'} -> {r['new'] or '-'}")
        elif r["type"] == "software":
            parts.append(f"software {r['old'] or '?'} -> {r['new']}")
        elif r["type"] == "recipe":
            parts.append(f"recipe {r['recipe']}")
        else:
            parts.append(f"made from {r['input']}")
    return "; ".join(parts)


def _print_plan(plan: Plan, limit: int) -> None:
    console = output_console()
    target = f"context {plan.context}" if plan.context is not None else "no reference change"
    console.print(f"{len(plan.products)} of {plan.scanned} current products affected "
                  f"({target}; planned in {plan.seconds:.2f} s)")
    summary = plan.summary()
    for what in ("instrument", "detector", "kind", "reason"):
        if summary[what]:
            console.print(f"  by {what}: " + ", ".join(
                f"{k} {v}" for k, v in sorted(summary[what].items())))
    if not plan.products or limit == 0:
        return
    table = Table(title="affected products" + (f" (first {limit})" if len(plan.products) > limit
                                               else ""))
    for column in ("product", "kind", "version", "detector", "why"):
        table.add_column(column)
    for p in plan.products[:limit]:
        table.add_row(p.product_id, p.kind, str(p.version), p.detector, _reason_text(p.reasons))
    console.print(table)


@click.group("reprocess")
def reprocess_group() -> None:
    """Reprocessing: which products a change affects, and campaigns that remake them."""


@reprocess_group.command("plan")
@_site_option
@_criteria_options
@click.option("--json", "as_json", is_flag=True, help="The whole plan as JSON on stdout.")
@click.option("--limit", type=int, default=50, show_default=True,
              help="Products listed in the table (0: summary only).")
def plan_cmd(site_dir: Path | None, context: int | None, software: str | None,
             recipe: str | None, program: str | None, since: str | None, kind: str | None,
             as_json: bool, limit: int) -> None:
    """List exactly the current products a change affects, why, and what depends on them."""
    plan = _plan(_site(site_dir), _criteria(context, software, recipe, program, since, kind))
    if as_json:
        click.echo(json.dumps(plan.as_dict(), indent=1))
    else:
        _print_plan(plan, limit)


@reprocess_group.command("run")
@_site_option
@_criteria_options
@click.option("--name", default=None, help="Run name (default reprocess-<UTC time>).")
@click.option("--no-wait", is_flag=True, help="Enqueue the campaign only; `obsflow run` runs it.")
@click.option("--workers", type=int, default=None, help="Worker processes (local executor).")
def run_cmd(site_dir: Path | None, context: int | None, software: str | None,
            recipe: str | None, program: str | None, since: str | None, kind: str | None,
            name: str | None, no_wait: bool, workers: int | None) -> None:
    """Plan, then remake the affected products in a new run (below fresh data in priority)."""
    from obsflow.orchestrate.cli import progress_display, summary_line
    from obsflow.orchestrate.jobs import policy_of
    from obsflow.orchestrate.runner import run_site

    cfg = _site(site_dir)
    plan = _plan(cfg, _criteria(context, software, recipe, program, since, kind))
    console = output_console()
    _print_plan(plan, 0)
    engine = make_engine(cfg.database_url)
    try:
        try:
            run = start_campaign(engine, plan, policy_of(cfg), name=name)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        console.print(f"campaign {run}: {len({p.exposure_pk for p in plan.products})} exposures "
                      "enqueued")
        if no_wait:
            return
        with progress_display(console) as update:
            summary = run_site(cfg, workers=workers, progress=update)
        console.print(f"jobs: {summary_line(summary)}")
        _print_status(campaign_status(engine, run))
    finally:
        engine.dispose()


def _print_status(status: CampaignStatus) -> None:
    console = output_console()
    console.print(f"campaign {status.name}: {status.state} (context {status.context}, "
                  f"started {status.created}"
                  + (f", finished {status.finished}" if status.finished else "") + ")")
    console.print("  items: " + ", ".join(f"{k} {v}" for k, v in status.counts.items()))
    if status.seconds:
        console.print(f"  calibration and registration time: {status.seconds:.1f} s")
    for kind, change in sorted(status.change.items()):
        console.print(f"  {kind}: median change of SCI {change['median_change']:+.4g} "
                      f"(median over {int(change['items'])} exposures)")
    for failure in status.failed:
        console.print(f"  [red]failed[/red] item {failure['item']} ({', '.join(failure['kinds'])}): "
                      f"{failure['error']}")


def _with_engine(site_dir: Path | None) -> Any:
    return make_engine(_site(site_dir).database_url)


@reprocess_group.command("status")
@_site_option
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
def status_cmd(site_dir: Path | None, name: str | None, as_json: bool) -> None:
    """Where campaign NAME (default: the newest) stands, and its report once done."""
    engine = _with_engine(site_dir)
    try:
        status = campaign_status(engine, name)
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps(status.as_dict(), indent=1))
    else:
        _print_status(status)


@reprocess_group.command("cancel")
@_site_option
@click.argument("name")
def cancel_cmd(site_dir: Path | None, name: str) -> None:
    """Cancel campaign NAME: pending items stop, none is left half registered."""
    engine = _with_engine(site_dir)
    try:
        count = cancel_campaign(engine, name)
    finally:
        engine.dispose()
    click.echo(f"campaign {name} cancelled ({count} items had not finished)")


@reprocess_group.command("retry")
@_site_option
@click.argument("name")
def retry_cmd(site_dir: Path | None, name: str) -> None:
    """Put the failed items of campaign NAME back in the queue (`obsflow run` runs them)."""
    from obsflow.orchestrate.jobs import policy_of

    cfg = _site(site_dir)
    engine = make_engine(cfg.database_url)
    try:
        count = retry_campaign(engine, name, policy_of(cfg))
    finally:
        engine.dispose()
    click.echo(f"{count} failed items of {name} are pending again")
