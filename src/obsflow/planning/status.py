"""What became of a plan's observations, from the site's own records.

The site knows two things about an observation once its telemetry is
ingested and its products registered:

* the observation log (ingest's ``observation_log`` table, decoded from the
  downlinked housekeeping): every planned exposure with the status the
  observatory reported (``executed``, ``skipped`` or ``failed``) and its
  metadata (program, target, filter, start time);
* the archive (``exposures``): the exposures whose products are registered.

:func:`site_status` matches a plan's observations to both: an exposure
belongs to a scheduled observation when its program, target and filter
match the observation's key and its start lies inside the observation's
slot (so a rescheduled observation's earlier attempt is not counted).
An observation is

``executed``
    every exposure the log announces for it is in the archive;
``pending``
    the log says it was executed but not all its exposures are archived
    yet (telemetry in transit, or the chain not run);
``skipped`` / ``failed``
    the log reports one of its exposures so (``failed`` wins);
``missed``
    its slot ended before ``now`` and neither the log nor the archive
    knows of it;
``planned``
    anything else (its slot is still ahead).

:func:`obsflow.planning.scheduler.reschedule` keeps ``executed`` and
``pending`` observations where they ran and schedules the others again.
The simulator's ``truth/status.json`` is for tests to check this against.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from obsflow.planning.scheduler import Schedule

__all__ = ["site_status"]

_EPS_DAYS = 1e-6
"""Tolerance on an exposure's start inside its slot (about 0.1 s): MJD round-off."""


def site_status(engine: Engine, plan: Schedule, now: float | None = None) -> dict[str, str]:
    """Each scheduled observation's status (module docstring) from the site database at
    ``engine``; ``now`` (MJD UTC) decides which silent observations are ``missed``."""
    from obsflow.archive.schema import Exposure
    from obsflow.ingest.tables import ObservationLog

    slots = defaultdict(list)
    for s in plan.scheduled:
        slots[s.observation.key].append((s.start, s.end))
    logged: dict[str, list[tuple[str, str]]] = defaultdict(list)  # key -> (status, basename)
    with Session(engine) as session:
        for status, basename, meta in session.execute(
                select(ObservationLog.status, ObservationLog.basename, ObservationLog.meta)):
            key = f"{meta.get('program')}:{meta.get('target')}:{meta.get('filter')}"
            start = float(meta.get("expstart", float("nan")))
            if any(a - _EPS_DAYS <= start <= b + _EPS_DAYS for a, b in slots.get(key, ())):
                logged[key].append((str(status), str(basename)))
        names = {b for rows in logged.values() for _, b in rows}
        archived = set(session.scalars(select(Exposure.obs_id).where(
            Exposure.obs_id.in_(sorted(names))))) if names else set()
    out = {}
    for s in plan.scheduled:
        key = s.observation.key
        said = {st for st, _ in logged[key]}
        if "failed" in said or "skipped" in said:
            out[key] = "failed" if "failed" in said else "skipped"
        elif logged[key]:
            out[key] = ("executed" if all(b in archived for _, b in logged[key])
                        else "pending")
        elif now is not None and s.end < now:
            out[key] = "missed"
        else:
            out[key] = "planned"
    return out
