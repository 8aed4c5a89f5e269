"""The job layer's errors; they are defined with every other error in :mod:`obsflow.exceptions`."""

from __future__ import annotations

from obsflow.exceptions import ExecutorError, JobNotFoundError, JobStateError, OrchestrateError

__all__ = ["ExecutorError", "JobNotFoundError", "JobStateError", "OrchestrateError"]
