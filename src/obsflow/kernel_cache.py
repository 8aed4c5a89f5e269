"""Whether numba has compiled obsflow's numerical kernels yet, to say so before it does.

The kernels (``@njit(cache=True)``) compile on first use and are cached next to
their modules (``__pycache__/*.nbi`` and ``*.nbc``); on a fresh install that first
use takes about a minute, which a newcomer would otherwise watch as a silent
progress bar.  Commands that calibrate or make mosaics (``demo``, ``run``, ``calibrate``) call
:func:`announce_compilation` once their input is checked, with the modules they use.
"""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console

__all__ = ["CALIBRATION_KERNELS", "KERNEL_MODULES", "MOSAIC_KERNELS", "announce_compilation",
           "uncompiled_modules"]

CALIBRATION_KERNELS = (
    "calibrate/_numeric.py",
    "calibrate/corrections.py",
    "calibrate/image.py",
    "calibrate/jumps.py",
    "calibrate/ramps.py",
    "calibrate/refpix.py",
    "calibrate/regions.py",
    "fitswords.py",
    "telemetry/crc.py",
    "telemetry/decode.py",
)
"""Modules (relative to the package) whose compiled kernels ingest and calibration use."""

MOSAIC_KERNELS = (
    "stage3/kernels.py",
    "stage3/outlier.py",
    "stage3/pixmap.py",
)
"""Modules whose compiled kernels stage 3 (outlier detection, resampling) uses."""

KERNEL_MODULES = CALIBRATION_KERNELS + MOSAIC_KERNELS
"""Every module with cached numba kernels (``@njit(cache=True)``); a test keeps it equal to
the package's sources."""

_PACKAGE = Path(__file__).resolve().parent


def uncompiled_modules(package: Path = _PACKAGE,
                       modules: tuple[str, ...] = KERNEL_MODULES) -> list[str]:
    """Kernel modules with no numba cache index yet (empty: every one is compiled).

    Looks where numba writes its cache: ``__pycache__`` beside the module, or
    the same relative layout under ``$NUMBA_CACHE_DIR`` when that is set.
    """
    cache_root = os.environ.get("NUMBA_CACHE_DIR")
    missing = []
    for relative in modules:
        source = package / relative
        folder = source.parent / "__pycache__"
        if cache_root:
            folder = Path(cache_root) / str(source.parent).lstrip("/")
        if not any(folder.glob(f"{source.stem}.*.nbi")):
            missing.append(relative)
    return missing


def announce_compilation(console: Console | None = None, package: Path = _PACKAGE,
                         modules: tuple[str, ...] = KERNEL_MODULES) -> bool:
    """Print one line on stderr if kernels of ``modules`` are about to be compiled; whether they
    are.  Commands call it once their input is checked (bad input compiles nothing)."""
    missing = uncompiled_modules(package, modules)
    if missing:
        (console or Console(stderr=True, highlight=False)).print(
            f"[yellow]compiling the numerical kernels ({len(missing)} modules), once per install: "
            "about a minute; later runs load them from the cache[/yellow]")
    return bool(missing)
