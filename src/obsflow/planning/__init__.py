"""Planning: visibility of targets and the scheduler that orders approved programs.

:mod:`obsflow.planning.visibility` (field of regard, occultation, position
angles), :mod:`obsflow.planning.scheduler` (programs -> a time-ordered plan),
:mod:`obsflow.planning.ordering` (the local search that shortens its travel),
:mod:`obsflow.planning.status` (what became of a plan, from the site's
records); see docs/planning.md.
"""
