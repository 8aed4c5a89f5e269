"""Ingest: incoming folder -> raw archive -> accounting ledger -> Level-1 products.

Public surface::

    ingest_once(cfg) -> IngestReport      one pass (``obsflow ingest --once``)
    watch(cfg)                            keep polling (``obsflow ingest --watch``)
    pending_work(cfg, engine) -> bool     whether a pass has anything to do (for the job layer)
    current_level1_version(engine, id)    the newest Level-1 version of a ledger exposure
    accounting_status(engine), gap_report(engine)   what arrived, what is missing

Assembled Level-1 versions are announced as ``exposure_ready`` events on the
job layer's queue (:mod:`obsflow.events`).
"""

from typing import TYPE_CHECKING

from obsflow._lazy import lazy_exports

if TYPE_CHECKING:
    from obsflow.ingest.assemble import current_level1_version
    from obsflow.ingest.service import IngestReport, ingest_once, pending_work, watch
    from obsflow.ingest.status import accounting_status, gap_report

__all__ = ["IngestReport", "accounting_status", "current_level1_version", "gap_report",
           "ingest_once", "pending_work", "watch"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "current_level1_version": "assemble",
    "IngestReport": "service",
    "ingest_once": "service",
    "pending_work": "service",
    "watch": "service",
    "accounting_status": "status",
    "gap_report": "status",
})
