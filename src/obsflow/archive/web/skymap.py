"""The sky map of the search page: the archive's HiPS at ``/hips/``, Aladin Lite at
``/static/aladin-lite/``, and the footprints of a page of results.

Everything the map loads comes from the archive itself (Aladin Lite is
vendored in ``static/aladin-lite``, GPL-3, and the HiPS is the one
:mod:`obsflow.archive.hips` builds), so it works with no network; the
search page forbids any other origin with its ``Content-Security-Policy``
(:data:`MAP_CSP`).  The HiPS holds public images only, so it is served to
everyone.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import FileResponse, PlainTextResponse, Response

from obsflow.archive.api.deps import ApiSettings

__all__ = ["MAP_CSP", "STATIC_DIR", "footprints", "hips_available", "router"]

router = APIRouter(tags=["web"])

STATIC_DIR = Path(__file__).parent / "static"
"""The static assets: the map's script and the vendored Aladin Lite with its licence."""

_STATIC_TYPES = {"skymap.js": "text/javascript; charset=utf-8",
                 "aladin-lite/aladin.js": "text/javascript; charset=utf-8",
                 "aladin-lite/COPYING": "text/plain; charset=utf-8",
                 "aladin-lite/README.md": "text/markdown; charset=utf-8",
                 "deepzoom.js": "text/javascript; charset=utf-8",
                 "openseadragon/openseadragon.min.js": "text/javascript; charset=utf-8",
                 "openseadragon/LICENSE.txt": "text/plain; charset=utf-8",
                 "openseadragon/README.md": "text/markdown; charset=utf-8"}
"""The files served under ``/static/`` and their media types (nothing else is): the sky
map's and the deep-zoom viewer's scripts, and the vendored Aladin Lite and OpenSeadragon
with their licences."""

_HIPS_FILE = re.compile(r"properties|Moc\.fits|Norder\d{1,2}/Allsky\.png"
                        r"|Norder(\d{1,2})/Dir(\d{1,12})/Npix(\d{1,14})\.png")
"""The paths of a HiPS that ``/hips/`` serves."""

_HIPS_TYPES = {".png": "image/png", ".fits": "application/fits",
               "": "text/plain; charset=utf-8"}

MAP_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval' "
           "'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
           "connect-src 'self' data: blob:; worker-src 'self' blob:; font-src 'self' data:; "
           "object-src 'none'; base-uri 'self'; form-action 'self'")
"""The search page's Content-Security-Policy: nothing from another origin (Aladin Lite
needs ``eval`` and WebAssembly compilation, and its inline styles)."""


def _hips_dir(request: Request) -> Path | None:
    settings: ApiSettings = request.app.state.api_settings
    return settings.hips_dir


def hips_available(request: Request) -> bool:
    """True when the archive has a HiPS to show (its ``properties`` file exists)."""
    folder = _hips_dir(request)
    return folder is not None and (folder / "properties").is_file()


def footprints(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The footprints of a page of search results, for the map: ``obs`` (the card's
    observation id), ``label`` and ``polygon`` (``[[ra, dec], ...]``, ICRS degrees), for
    each visible observation whose ``s_region`` is a polygon."""
    out = []
    for o in results:
        region = str(o.get("s_region") or "").split()
        if o.get("access") != "data" or len(region) < 8 or region[0].upper() != "POLYGON":
            continue
        values = [float(v) for v in region[2:]]
        out.append({"obs": o["obs_id"], "label": f"{o['target_name']} {o['filter']}",
                    "polygon": [values[i:i + 2] for i in range(0, len(values) - 1, 2)]})
    return out


@router.get("/static/{name:path}", include_in_schema=False)
async def static_file(name: str) -> Response:
    """A vendored asset (Aladin Lite), cached for a day; 404 for anything else."""
    if name not in _STATIC_TYPES:
        return PlainTextResponse("not found", status_code=404)
    return FileResponse(STATIC_DIR / name, media_type=_STATIC_TYPES[name],
                        headers={"Cache-Control": "public, max-age=86400"})


@router.get("/hips/{name:path}", include_in_schema=False)
async def hips_file(name: str, request: Request) -> Response:
    """A file of the archive's HiPS (``properties``, ``Norder3/Allsky.png``, tiles
    ``NorderK/DirD/NpixN.png``); 404 when it does not exist."""
    folder = _hips_dir(request)
    if folder is None or not _HIPS_FILE.fullmatch(name):
        return PlainTextResponse("not found", status_code=404)
    path = folder.resolve() / name  # the link points at the current build
    if not path.is_file():
        return PlainTextResponse("no such HiPS file", status_code=404)
    return FileResponse(path, media_type=_HIPS_TYPES[path.suffix],
                        headers={"Cache-Control": "public, max-age=300"})
