"""Virtual Observatory endpoints of the archive: SIA v2 and TAP over an ObsCore view.

``routers()`` gives the two FastAPI routers (``/vo/sia2``, ``/vo/tap``) to
pass to :func:`obsflow.archive.api.create_app`.
"""

from __future__ import annotations

from fastapi import APIRouter

__all__ = ["routers"]


def routers() -> list[APIRouter]:
    """The VO routers: ``/vo/sia2``, ``/vo/tap`` and ``/vo/datalink``."""
    from obsflow.archive.vo import datalink, sia2_router, tap_router

    return [sia2_router.router, tap_router.router, datalink.router]
