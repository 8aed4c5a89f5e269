"""Whether numba has compiled obsflow's numerical kernels yet, to say so before it does.

The kernels (``@njit(cache=True)``) compile on first use and are cached next to
their modules (``__pycache__/*.nbi`` and ``*.nbc``); on a fresh install that first
use takes about a minute, which a newcomer would otherwise watch as a silent
progress bar.  Commands that calibrate or make mosaics (``demo``, ``run``, ``calibrate``) call
:func:`announce_compilation` first.
"""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console

__all__ = ["KERNEL_MODULES", "announce_compilation", "uncompiled_modules"]

KERNEL_MODULES = (
    "calibrate/_numeric.py",
    "calibrate/corrections.py",
    "calibrate/jumps.py",
    "calibrate/ramps.py",
    "calibrate/regions.py",
    "stage3/kernels.py",
    "stage3/outlier.py",
    "stage3/pixmap.py",
    "telemetry/crc.py",
    "telemetry/decode.py",
)
"""Every module (relative to the package) with cached numba kernels (``@njit(cache=True)``);
a test keeps the list equal to the package's sources."""

_PACKAGE = Path(__file__).resolve().parent


def uncompiled_modules(package: Path = _PACKAGE) -> list[str]:
    """Kernel modules with no numba cache index yet (empty: every one is compiled).

    Looks where numba writes its cache: ``__pycache__`` beside the module, or
    the same relative layout under ``$NUMBA_CACHE_DIR`` when that is set.
    """
    cache_root = os.environ.get("NUMBA_CACHE_DIR")
    missing = []
    for relative in KERNEL_MODULES:
        source = package / relative
        folder = source.parent / "__pycache__"
        if cache_root:
            folder = Path(cache_root) / str(source.parent).lstrip("/")
        if not any(folder.glob(f"{source.stem}.*.nbi")):
            missing.append(relative)
    return missing


def announce_compilation(console: Console | None = None, package: Path = _PACKAGE) -> bool:
    """Print one line on stderr if kernels are about to be compiled; whether they are."""
    missing = uncompiled_modules(package)
    if missing:
        (console or Console(stderr=True, highlight=False)).print(
            f"[yellow]compiling the numerical kernels ({len(missing)} modules), once per install: "
            "about a minute; later runs load them from the cache[/yellow]")
    return bool(missing)
