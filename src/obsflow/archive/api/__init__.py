"""The archive's HTTP API (FastAPI): one router per resource, built by :func:`create_app`."""

from obsflow.archive.api.app import create_app
from obsflow.archive.api.deps import ApiSettings

__all__ = ["ApiSettings", "create_app"]
