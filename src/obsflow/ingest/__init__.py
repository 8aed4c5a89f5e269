"""Ingest: incoming folder -> raw archive -> accounting ledger -> Level-1 products.

Public surface::

    ingest_once(cfg) -> IngestReport      one pass (``obsflow ingest --once``)
    watch(cfg)                            keep polling (``obsflow ingest --watch``)
    accounting_status(engine), gap_report(engine)   what arrived, what is missing
"""

from obsflow.ingest.service import IngestReport, ingest_once, watch
from obsflow.ingest.status import accounting_status, gap_report

__all__ = ["IngestReport", "accounting_status", "gap_report", "ingest_once",
           "watch"]
