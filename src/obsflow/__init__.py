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

from importlib.metadata import PackageNotFoundError, version  # noqa: E402

try:
    __version__ = version("obsflow")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.1.0"

__all__ = ["__version__"]
