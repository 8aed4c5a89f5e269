"""Errors of the job layer (all are :class:`~obsflow.exceptions.ObsflowError`).

The hierarchy::

    ObsflowError
    └── OrchestrateError(RuntimeError)     the job layer cannot do what was asked
        ├── JobNotFoundError(LookupError)  no job with that id
        ├── JobStateError                  the job is not in a state that allows it
        └── ExecutorError                  an executor cannot start (no scheduler, no schedd)
"""

from __future__ import annotations

from obsflow.exceptions import ObsflowError

__all__ = ["ExecutorError", "JobNotFoundError", "JobStateError", "OrchestrateError"]


class OrchestrateError(ObsflowError, RuntimeError):
    """The job layer cannot do what was asked."""


class JobNotFoundError(OrchestrateError, LookupError):
    """No job has the given id."""


class JobStateError(OrchestrateError):
    """The job's state does not allow the operation (e.g. retrying a running job)."""


class ExecutorError(OrchestrateError):
    """An executor cannot start: no Dask scheduler at the address, bad settings, ..."""
