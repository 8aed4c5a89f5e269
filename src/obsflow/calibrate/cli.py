"""``obsflow calibrate FILE... [--set step.param=value] [--skip STEP] [--out DIR]``."""

from __future__ import annotations

from pathlib import Path

import click

from obsflow.calibrate.pipeline import (
    CalibrationOptions,
    RefSource,
    beside,
    calibrate_product,
    check_input,
)
from obsflow.cli_console import output_console
from obsflow.exceptions import ConfigError
from obsflow.profiles import load_profile
from obsflow.refdata.cli import open_site_option, refs_group, site_option
from obsflow.refdata.registry import FolderRefs, SiteRefs

__all__ = ["calibrate_cmd", "refs_group"]


def _overrides(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or "." not in key:
            raise ConfigError(f"--set expects step.param=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


@click.command("calibrate")
@site_option
@click.option("--refs", "refs_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Use a plain folder of reference files instead of the site "
                                 "registry (needs --profile).")
@click.option("--profile", default=None, help="Observatory profile with --refs.")
@click.option("--set", "sets", multiple=True, metavar="STEP.PARAM=VALUE",
              help="Override a step parameter (repeatable).")
@click.option("--skip", multiple=True, metavar="STEP", help="Skip a step (repeatable).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: beside each input).")
@click.option("--block-mb", type=click.FloatRange(min=1.0), default=CalibrationOptions.block_mb,
              show_default=True, help="Memory for one block of integrations, MB: a longer "
                                      "exposure is calibrated block by block.")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def calibrate_cmd(site_dir: Path | None, refs_dir: Path | None, profile: str | None,
                  sets: tuple[str, ...], skip: tuple[str, ...], out_dir: Path | None,
                  block_mb: float, files: tuple[Path, ...]) -> None:
    """Run Level-1 FILES through their recipe: write _rate, _rateints and _cal products.

    Every FILE is checked first (a whole FITS file, a Level-1 product of the
    site's profile: keywords, SCI uint16 of shape NINTS x NGROUPS x SUBSIZE2
    x SUBSIZE1); if one is not, nothing is written and the command exits
    with status 2 and one line naming the file, keyword or HDU and what was
    expected.
    """
    from obsflow.kernel_cache import CALIBRATION_KERNELS, announce_compilation

    source: RefSource
    if refs_dir is not None:
        if profile is None:
            raise ConfigError("--refs needs --profile (the observatory profile of the files)")
        prof = load_profile(profile)
        source = FolderRefs(refs_dir, prof)
    else:
        cfg = open_site_option(site_dir)
        prof = cfg.load_profile()
        source = SiteRefs(cfg.database_url, cfg.refs_dir)
    overrides = _overrides(sets)
    for path in files:
        check_input(path, prof)
    announce_compilation(modules=CALIBRATION_KERNELS)
    console = output_console()
    for path in files:
        options = CalibrationOptions(overrides, tuple(skip), place=beside(out_dir or path.parent),
                                     block_mb=block_mb)
        written = calibrate_product(path, source, prof, options)
        console.print(f"{path.name} -> {', '.join(p.path.name for p in written)}")
