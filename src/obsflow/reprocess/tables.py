"""Reprocessing campaigns: ``campaigns`` and ``campaign_items``.

A campaign is a named run (``runs.name``) that re-makes a planned set of
products.  Its items are the exposures to recalibrate: each names its
Level-1 source product, the kinds of product the plan wants new versions of
(the others made along the way are discarded), why, and the job that does
it.  States of a campaign: ``running`` -> ``done`` | ``cancelled``; of an
item: ``pending`` -> ``done`` | ``failed`` | ``cancelled``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from obsflow.db import Base

__all__ = ["CAMPAIGN_STATES", "ITEM_STATES", "Campaign", "CampaignItem"]

CAMPAIGN_STATES = ("running", "done", "cancelled")
ITEM_STATES = ("pending", "done", "failed", "cancelled")


class Campaign(Base):
    """One reprocessing campaign (its run is the products' permanent home)."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run: Mapped[str] = mapped_column(ForeignKey("runs.name"), unique=True)
    state: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer)
    ref_context: Mapped[int | None] = mapped_column(Integer, nullable=True)
    software_version: Mapped[str] = mapped_column(String(32))
    criteria: Mapped[dict[str, Any]] = mapped_column(JSON)
    created: Mapped[datetime] = mapped_column(DateTime)
    finished: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class CampaignItem(Base):
    """One exposure of a campaign: its Level-1 source, the kinds to remake, why, and how it went."""

    __tablename__ = "campaign_items"
    __table_args__ = (Index("ix_campaign_items_campaign", "campaign_id", "state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    source_pk: Mapped[int] = mapped_column(ForeignKey("products.id"))
    kinds: Mapped[list[str]] = mapped_column(JSON)
    reasons: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"), nullable=True)
    outputs: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
