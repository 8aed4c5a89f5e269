"""Access policy: who may see which exposure, product, or preview.

* The release date of an exposure is its end (``EXPEND``, MJD UTC) plus its
  program's exclusive-access months (calendar months; 0 = public at once).
* Data whose release date has passed is public: anyone sees it.
* Before that only the program's members and admins see it.

The same rule is given twice: :func:`visible_clause` as a SQL condition for
queries (search, ObsCore, SIA2, TAP) and :func:`can_see` for one row.

What others are told of proprietary data before its release is the site's
*access policy* (:data:`ACCESS_POLICIES`, ``[archive] access_policy``):

* ``metadata`` (the default, as MAST shows it): the web search lists
  proprietary observations by the fields of :data:`PUBLIC_METADATA` only
  (program, target, instrument, filter, start and end, release date), and
  its menus name their programs, instruments and filters; their products,
  files, previews, headers, positions and provenance stay private.
* ``hidden``: nothing of proprietary data is told to anyone else.

:func:`listed_clause` is the SQL condition of the exposures whose public
metadata may be listed.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, or_, true

from obsflow.archive.schema import Exposure
from obsflow.exceptions import ConfigError

__all__ = [
    "ACCESS_POLICIES",
    "ANONYMOUS",
    "PUBLIC_METADATA",
    "MJD_EPOCH",
    "Viewer",
    "add_months",
    "can_see",
    "check_policy",
    "listed_clause",
    "mjd_to_datetime",
    "release_date",
    "utcnow",
    "visible_clause",
]

ACCESS_POLICIES = ("metadata", "hidden")
"""The access policies a site may choose (the first is the default)."""

PUBLIC_METADATA = ("program", "target_name", "instrument_name", "filter", "t_min", "t_max",
                   "release_date")
"""What the ``metadata`` policy tells anyone of a proprietary exposure (catalog names)."""

MJD_EPOCH = datetime(1858, 11, 17)
"""MJD 0 as a naive UTC datetime."""


@dataclass(frozen=True)
class Viewer:
    """Who is asking: anonymous, a user (with the programs they belong to) or an admin."""

    name: str | None = None
    user_id: int | None = None
    is_admin: bool = False
    programs: frozenset[str] = field(default_factory=frozenset)


ANONYMOUS = Viewer()
"""The viewer of a request without credentials."""


def utcnow() -> datetime:
    """Now as a naive UTC datetime (the form the catalog stores)."""
    return datetime.now(UTC).replace(tzinfo=None)


def mjd_to_datetime(mjd: float) -> datetime:
    """MJD (UTC) -> naive UTC datetime, to the microsecond."""
    return MJD_EPOCH + timedelta(days=float(mjd))


def add_months(when: datetime, months: int) -> datetime:
    """``when`` plus calendar months; the day is clamped to the month's length."""
    index = when.month - 1 + months
    year, month = when.year + index // 12, index % 12 + 1
    day = min(when.day, calendar.monthrange(year, month)[1])
    return when.replace(year=year, month=month, day=day)


def release_date(expend_mjd: float, exclusive_months: int) -> datetime:
    """End of exposure plus the exclusive-access period (naive UTC)."""
    return add_months(mjd_to_datetime(expend_mjd), exclusive_months)


def can_see(viewer: Viewer, program: str, released: datetime, now: datetime) -> bool:
    """True if ``viewer`` may see data of ``program`` released at ``released``."""
    return released <= now or viewer.is_admin or program in viewer.programs


def visible_clause(viewer: Viewer, now: datetime) -> ColumnElement[bool]:
    """SQL condition on :class:`Exposure` rows that ``viewer`` may see at ``now``."""
    if viewer.is_admin:
        return true()
    public = Exposure.release_date <= now
    if not viewer.programs:
        return public
    return or_(public, Exposure.program.in_(sorted(viewer.programs)))


def check_policy(policy: str) -> str:
    """``policy`` if it is one of :data:`ACCESS_POLICIES`, else :class:`ConfigError`."""
    if policy not in ACCESS_POLICIES:
        raise ConfigError(f"access_policy {policy!r}: expected one of {', '.join(ACCESS_POLICIES)}")
    return policy


def listed_clause(viewer: Viewer, now: datetime, policy: str) -> ColumnElement[bool]:
    """SQL condition on :class:`Exposure` rows whose :data:`PUBLIC_METADATA` ``viewer`` may
    be told at ``now`` under the access ``policy``."""
    return true() if check_policy(policy) == "metadata" else visible_clause(viewer, now)
