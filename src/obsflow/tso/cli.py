"""``obsflow lightcurve RATEINTS... [--ephemeris FILE]``: stage 3 of a time series by hand."""

from __future__ import annotations

from pathlib import Path

import click

from obsflow.cli_console import output_console
from obsflow.fileio import atomic_path
from obsflow.models.fitsfile import open_fits
from obsflow.models.level2 import RateInts, read_rateints
from obsflow.refdata.cli import open_site_option, site_option
from obsflow.tso.photometry import Apertures, phot_path, photometry, plot_light_curve, write_phot
from obsflow.tso.product import read_ecsv

__all__ = ["lightcurve_cmd"]


def _rateints(path: Path) -> RateInts:
    """The product, after a check that it is a whole FITS file (one error line naming it)."""
    with open_fits(path, "a _rateints.fits product"):
        pass
    return read_rateints(path)


@click.command("lightcurve")
@site_option
@click.option("--ephemeris", "ephemeris_file", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Observatory ephemeris ECSV (default: the one ingest stored in the site).")
@click.option("--radius", default=Apertures.radius, show_default=True, type=float,
              help="Aperture radius, pixels.")
@click.option("--annulus", default=(Apertures.r_in, Apertures.r_out), show_default=True,
              type=(float, float), help="Background annulus inner and outer radius, pixels.")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def lightcurve_cmd(site_dir: Path | None, ephemeris_file: Path | None, radius: float,
                   annulus: tuple[float, float], files: tuple[Path, ...]) -> None:
    """Per-integration photometry of _rateints FILES: write <basename>_phot.ecsv and _phot.png.

    Times are given in MJD UTC and BJD TDB (barycentric correction from the
    observatory's ephemeris and the target's coordinates).
    """
    from obsflow.db import make_engine
    from obsflow.tso.ephemeris import ingested_ephemeris

    apertures = Apertures(radius=radius, r_in=annulus[0], r_out=annulus[1])
    if not (0 < radius < annulus[0] < annulus[1]):
        raise click.BadParameter("need 0 < radius < annulus inner < annulus outer",
                                 param_hint="--radius/--annulus")
    ephemeris = read_ecsv(ephemeris_file, "ECSV ephemeris") if ephemeris_file is not None else None
    site = open_site_option(site_dir) if ephemeris is None else None
    outputs = [phot_path(path) for path in files]  # every name checked before any work
    console = output_console()
    for path, out in zip(files, outputs, strict=True):
        product = _rateints(path)
        if site is not None:
            engine = make_engine(site.database_url)
            try:
                table = photometry(product, ingested_ephemeris(
                    engine, product.meta.expstart, product.meta.expend), apertures, str(path))
            finally:
                engine.dispose()
        else:
            assert ephemeris is not None
            table = photometry(product, ephemeris, apertures, str(path))
        write_phot(out, table)
        png = out.with_suffix(".png")
        with atomic_path(png) as tmp:
            tmp.write_bytes(plot_light_curve(table))
        console.print(f"{path.name} -> {out.name}, {png.name} ({len(table)} integrations)")
