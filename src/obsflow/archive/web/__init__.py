"""The archive's web pages: gallery, search, product pages, download scripts and login
(server-rendered HTML).

``routers()`` gives the routers to pass to :func:`obsflow.archive.api.create_app`.
"""

from __future__ import annotations

from fastapi import APIRouter

__all__ = ["routers"]


def routers() -> list[APIRouter]:
    """The page router (``/``, ``/search``, ``/products/{id}``), the download script, the
    login router and the sky map's files (``/hips/``, ``/static/``)."""
    from obsflow.archive.web import auth, bulk, pages, skymap

    return [pages.router, bulk.router, auth.router, skymap.router]
