"""obsflow: open, mission-agnostic science data processing for space telescopes.

Downlink files go in, calibrated and archived products come out: ingest and
data accounting, Level-1 assembly, calibration, archive and reprocessing, run
by one orchestrator on a laptop or a cluster.  The ``obsflow`` command
(:mod:`obsflow.cli`) is the entry point; a site is created with
``obsflow init`` (:mod:`obsflow.site`) and configured by one typed object,
:class:`obsflow.config.SiteConfig`.
"""

from __future__ import annotations

from obsflow._lifeline import arm_from_environment

arm_from_environment()  # a pool worker dies with its orchestrator: first, before any import

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    """``obsflow.__version__``, read from the installed metadata when first asked for.

    Lazy because :mod:`importlib.metadata` costs a tenth of a second, which
    every command (``obsflow --help`` too) would otherwise pay at start-up.
    """
    if name != "__version__":
        raise AttributeError(f"module 'obsflow' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("obsflow")
    except PackageNotFoundError:  # pragma: no cover - a source tree without install
        found = "0.1.0"
    globals()["__version__"] = found
    return found
