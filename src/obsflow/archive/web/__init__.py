"""The archive's web pages: gallery, search, product pages, download scripts and login
(server-rendered HTML).

``routers()`` gives the routers to pass to :func:`obsflow.archive.api.create_app`.
"""

from __future__ import annotations

from fastapi import APIRouter

__all__ = ["routers"]


def routers() -> list[APIRouter]:
    """The page router (``/``, ``/search``, ``/products/{id}``), the download script and the
    login router."""
    from obsflow.archive.web import auth, bulk, pages

    return [pages.router, bulk.router, auth.router]
