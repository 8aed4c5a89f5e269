"""Planning: visibility of targets and the scheduler that orders approved programs.

:mod:`obsflow.planning.visibility` (field of regard, occultation, position
angles), :mod:`obsflow.planning.scheduler` (programs -> a time-ordered plan);
see docs/planning.md.
"""
