"""``obsflow etc``: the exposure time calculator on the command line."""

from __future__ import annotations

import json

import click

from obsflow.cli_types import FiniteFloatRange

__all__ = ["etc_cmd"]


@click.command("etc")
@click.option("--profile", default="webb_like", show_default=True,
              help="Observatory profile: built-in name or .toml path.")
@click.option("--filter", "filt", required=True, help="Filter name from the profile.")
@click.option("--readpatt", required=True, help="Readout pattern name from the profile.")
@click.option("--mag", type=FiniteFloatRange(), required=True,
              help="AB magnitude (point source) or AB mag per square arcsec (--surface).")
@click.option("--surface", is_flag=True, help="A surface brightness instead of a point source.")
@click.option("--ngroups", type=int, default=None, help="Groups per integration (S/N of this).")
@click.option("--nints", type=int, default=1, show_default=True, help="Integrations.")
@click.option("--snr", type=float, default=None,
              help="S/N wanted: recommend the shortest exposure reaching it (instead of --ngroups).")
@click.option("--subarray", default="FULL", show_default=True, help="Subarray (frame time).")
@click.option("--aperture", type=(float, float, float), default=(4.0, 12.0, 22.0),
              show_default=True, help="Aperture radius, annulus inner and outer radius, pixels.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def etc_cmd(profile: str, filt: str, readpatt: str, mag: float, surface: bool,
            ngroups: int | None, nints: int, snr: float | None, subarray: str,
            aperture: tuple[float, float, float], as_json: bool) -> None:
    """S/N, saturation and recommended exposure of a source (give --ngroups or --snr)."""
    from obsflow.etc import EtcRequest, Photometry, calculate, recommend
    from obsflow.exceptions import EtcError
    from obsflow.profiles import load_profile

    if (ngroups is None) == (snr is None):
        raise EtcError("give --ngroups (the S/N of that exposure) or --snr (the exposure "
                       "reaching it), not both or neither")
    prof = load_profile(profile)
    request = EtcRequest(filt, readpatt, mag, surface=surface, ngroups=ngroups, nints=nints,
                         snr=snr, subarray=subarray, photometry=Photometry(*aperture))
    result = recommend(prof, request) if snr is not None else calculate(prof, request)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=1))
        return
    sat = "none" if result.saturation_group is None else f"group {result.saturation_group}"
    click.echo(f"{readpatt} {result.ngroups} groups x {result.nints} integrations on {subarray}: "
               f"S/N {result.snr:.1f} ({result.snr_per_integration:.2f} per integration)\n"
               f"exposure {result.exposure_time_s:.1f} s (effective {result.effective_time_s:.1f}"
               f" s); source {result.source_e_s:.4g} e-/s, measured {result.signal_e_s:.4g} e-/s;"
               f" background {result.background_e_s:.3g} e-/s/pix, dark {result.dark_e_s:.3g}\n"
               f"brightest pixel {result.peak_e_s:.4g} e-/s fills {result.peak_fill:.1%} of "
               f"full well; saturates: {sat}")
