"""Archive commands: ``obsflow archive add|hips|program add``, ``users add``, ``tokens create``, ``serve``."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

import click
from rich.table import Table

from obsflow.archive.context import Archive
from obsflow.archive.register import register_product, register_program
from obsflow.archive.users import add_user, create_token
from obsflow.cli_console import output_console
from obsflow.cli_types import FiniteFloatRange
from obsflow.config import SiteConfig, default_site_root
from obsflow.exceptions import ConfigError
from obsflow.site import open_site

__all__ = ["archive", "serve", "tokens", "users"]

_site_option = click.option(
    "--site", "site_dir", type=click.Path(path_type=Path), default=None,
    help="Site folder (default $OBSFLOW_HOME or ./obsflow-site).")


def _site(site_dir: Path | None) -> SiteConfig:
    return open_site((site_dir or default_site_root()).expanduser().resolve())


@click.group()
def archive() -> None:
    """Register programs and products in the archive."""


@archive.command("add")
@_site_option
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True,
                                                                   dir_okay=False))
def archive_add(site_dir: Path | None, files: tuple[Path, ...]) -> None:
    """Register product FILES (idempotent; changed content makes a new version).

    FITS products, tables, colour images, and obsflow's pure-ASDF products
    (``x_cal.asdf``): one whose FITS twin is registered becomes that product's
    ASDF file; an ASDF file obsflow did not write is refused."""
    table = Table(title="registered products")
    for column in ("file", "product", "version", "status"):
        table.add_column(column)
    with Archive.from_site(_site(site_dir)) as arch:
        for path in files:
            record = register_product(arch, path)
            status = ("[green]attached to its twin[/green]" if record.attached else
                      "[green]added[/green]" if record.created else "already there")
            table.add_row(path.name, record.product_id, str(record.version), status)
    output_console().print(table)


@archive.command("hips")
@_site_option
def archive_hips(site_dir: Path | None) -> None:
    """Build the HiPS of the public images (the sky of the search page's map); re-run it after
    new products (the previous HiPS is served until the new one is complete)."""
    from obsflow.archive.hips import site_hips

    click.echo(site_hips(_site(site_dir)))


@archive.group("program")
def program() -> None:
    """Programs: PI, title, exclusive-access period, members."""


@program.command("add")
@_site_option
@click.argument("program_id")
@click.option("--pi", "pi_name", default="", help="Principal investigator.")
@click.option("--title", default="", help="Program title.")
@click.option("--exclusive-months", type=click.IntRange(min=0), required=True,
              help="Exclusive-access period in months (0 = public at once).")
@click.option("--member", "members", multiple=True, help="User name of a member (repeatable).")
def program_add(site_dir: Path | None, program_id: str, pi_name: str, title: str,
                exclusive_months: int, members: tuple[str, ...]) -> None:
    """Create or update PROGRAM_ID (release dates of its data follow)."""
    with Archive.from_site(_site(site_dir)) as arch:
        register_program(arch, program_id, pi_name=pi_name, title=title,
                         exclusive_months=exclusive_months, members=members)
    click.echo(f"program {program_id}: {exclusive_months} months exclusive access")


@click.group()
def users() -> None:
    """Archive users."""


@users.command("add")
@_site_option
@click.argument("name")
@click.option("--admin", is_flag=True, help="May see every product.")
@click.option("--password-stdin", is_flag=True, help="Read a web-login password from stdin.")
def users_add(site_dir: Path | None, name: str, admin: bool, password_stdin: bool) -> None:
    """Create user NAME (or update an existing one)."""
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    with Archive.from_site(_site(site_dir)) as arch, arch.session() as session, session.begin():
        add_user(session, name, admin=admin, password=password)
    click.echo(f"user {name}{' (admin)' if admin else ''}")


@click.group()
def tokens() -> None:
    """API tokens."""


@tokens.command("create")
@_site_option
@click.argument("user")
@click.option("--days", type=FiniteFloatRange(min=0, min_open=True), default=None,
              help="Expire after this many days (default: never).")
@click.option("--label", default="", help="What the token is for.")
def tokens_create(site_dir: Path | None, user: str, days: float | None, label: str) -> None:
    """Create an API token for USER and print it (it is shown only once)."""
    with Archive.from_site(_site(site_dir)) as arch, arch.session() as session, session.begin():
        secret = create_token(session, user, days=days, label=label)
    click.echo(secret)


def _check_loopback(host: str) -> None:
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(f"server.host = {host!r}: obsflow serve binds loopback addresses only "
                          "(put a reverse proxy in front to publish the archive)")


@click.command()
@_site_option
@click.option("--host", default=None, help="Interface (default [server] host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Port (default [server] port, 8000).")
def serve(site_dir: Path | None, host: str | None, port: int | None) -> None:
    """Serve the archive: web pages at /, HTTP API at /api (OpenAPI at /docs), VO at /vo."""
    import uvicorn

    from obsflow.archive import vo, web
    from obsflow.archive.api import ApiSettings, create_app
    from obsflow.archive.hips import site_hips_dir
    from obsflow.archive.server import listening_socket, server_config

    cfg = _site(site_dir)
    host = host or cfg.server.host
    port = port or cfg.server.port
    _check_loopback(host)
    sock = listening_socket(host, port)
    with sock, Archive.from_site(cfg) as arch:
        app = create_app(arch, ApiSettings(hips_dir=site_hips_dir(cfg.root)),
                         routers=[*vo.routers(), *web.routers()])
        uvicorn.Server(server_config(app, host, port, cfg.server.trusted_proxies)).run(
            sockets=[sock])
