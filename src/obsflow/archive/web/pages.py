"""Pages: ``/`` gallery, ``/search`` form and results, ``/products/{id}`` metadata and downloads.

The search finds observations (exposures): one card each, its products
listed inside with a box to select them for the bulk download script
(:mod:`obsflow.archive.web.bulk`).  Under the site's ``metadata`` access
policy the proprietary observations others may not see are listed too, by
their public metadata and release date only (no products, no links).

A product page also shows every version of it, its whole provenance, what
changed from another version (the previous one, or ``?compare=<product_id>``)
and links to its inputs and to the products made from it.

Everything shown goes through the access policy with the visitor's viewer
(anonymous unless logged in): proprietary products, previews, colour
images and source catalogs appear only to the program's members and admins; a hidden
product's page is the same 404 as a missing one.  Images are the API's
preview URLs, which apply the same rule with the same cookie.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from datetime import date, datetime
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import func, not_, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, Response

from obsflow.archive.api.deps import get_archive
from obsflow.archive.api.products import check_product_id
from obsflow.archive.limits import check_text
from obsflow.archive.policy import MJD_EPOCH, listed_clause, visible_clause
from obsflow.archive.schema import Exposure, Preview, Product
from obsflow.archive.search import (
    Cone,
    SearchQuery,
    deep_zoom_key,
    diff_products,
    get_product,
    menu_values,
    observation_products,
    product_dict,
    product_files,
    product_history,
    search_observations,
    visible_products,
)
from obsflow.archive.web.common import (
    WebCaller,
    html_responses,
    query_params,
    render,
    web_caller,
)
from obsflow.archive.web.display import catalog_key, catalog_preview, fits_header, readable
from obsflow.archive.web.skymap import MAP_CSP, footprints, hips_available
from obsflow.exceptions import ProductNotFoundError, SearchParameterError

__all__ = ["GALLERY_LIMIT", "SearchForm", "router"]

router = APIRouter(tags=["web"])

GALLERY_LIMIT = 300
"""Most products looked at for the gallery page (one card per exposure, newest first within
each target)."""

PAGE_SIZE = 50
"""Observations per page of search results."""

LEVELS = ("1", "2a", "2b", "3")
"""The data levels of the level menu."""

_MS_DAYS = 1e-3 / 86400.0
"""One millisecond in days."""

PAGES = 1_000_000
"""Largest page number asked for."""


def _gallery(request: Request, caller: WebCaller) -> dict[str, Any]:
    stmt = (visible_products(caller.viewer, caller.now)
            .join(Preview, (Preview.product_pk == Product.id) & (Preview.kind == "thumb"))
            .where(Product.is_latest.is_(True))
            .order_by(Exposure.target_name, Exposure.t_min.desc(), Exposure.id,
                      Product.calib_level.desc(), Product.id)
            .limit(GALLERY_LIMIT))
    with get_archive(request).session() as session:
        rows = [product_dict(p, e) for p, e in session.execute(stmt)]
        locked = _locked_count(request, caller, session)
    # a target's colour images (from its mosaics in three filters) come first
    colours: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["kind"] == "clr":
            colours.setdefault(row["target_name"], []).append(row)
    rows = [r for r in rows if r["kind"] != "clr"]
    # one card per exposure: its most processed product, the others' kinds named on it
    cards = []
    for _, same in itertools.groupby(rows, key=lambda r: r["obs_id"]):
        products = list(same)
        cards.append({**products[0], "kinds": [p["kind"] for p in products]})
    groups = [{"target": target, "products": list(items), "colours": colours.get(target, [])}
              for target, items in itertools.groupby(cards, key=lambda r: r["target_name"])]
    return {"groups": groups, "count": len(cards), "locked": locked}


def _locked_count(request: Request, caller: WebCaller, session: Session) -> int:
    """How many proprietary exposures the visitor may be told of but not see (0 under the
    ``hidden`` policy)."""
    policy = get_archive(request).settings.access_policy
    return session.scalar(select(func.count(Exposure.id)).where(
        listed_clause(caller.viewer, caller.now, policy),
        not_(visible_clause(caller.viewer, caller.now)))) or 0


@router.get("/", response_class=HTMLResponse, summary="Gallery (HTML)",
            responses=html_responses(s200="The gallery page"))
async def gallery(request: Request) -> HTMLResponse:
    """Thumbnails grouped by target, the target's colour images first."""
    caller = await run_in_threadpool(web_caller, request)
    context = await run_in_threadpool(_gallery, request, caller)
    return render(request, caller, "gallery.html", **context)


@dataclass(frozen=True)
class SearchForm:
    """The search form as typed: every field a string (echoed back into the form)."""

    target: str = ""
    program: str = ""
    instrument: str = ""
    filter: str = ""
    level: str = ""
    ra: str = ""
    dec: str = ""
    radius: str = ""
    date_from: str = ""
    date_to: str = ""
    page: str = "1"

    def query_string(self, page: int) -> str:
        """The URL query of this form at ``page`` (the pager's links)."""
        from urllib.parse import urlencode

        fields = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "page"}
        return urlencode({**{k: v for k, v in fields.items() if v}, "page": page})


def _number(text: str, name: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SearchParameterError(f"{name} must be a number") from None
    if not (math.isfinite(value) and low <= value <= high):
        raise SearchParameterError(f"{name} must be between {low:g} and {high:g}")
    return value


def _mjd(text: str, name: str) -> float:
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise SearchParameterError(f"{name} must be a date (YYYY-MM-DD)") from None
    return (datetime(day.year, day.month, day.day) - MJD_EPOCH).total_seconds() / 86400.0


def _page(text: str) -> int:
    """The page number of the form (1 if empty)."""
    if not (text or "1").strip().isdigit():
        raise SearchParameterError("page must be a whole number")
    return int(_number(text or "1", "page", 1, PAGES))


def _query(form: SearchForm) -> SearchQuery:
    """The catalog query of a filled-in form; ValueError with a message for bad fields."""
    cone = None
    if form.ra or form.dec or form.radius:
        if not (form.ra and form.dec):
            raise SearchParameterError("a cone search needs RA and Dec (degrees)")
        cone = Cone(_number(form.ra, "RA", 0, 360), _number(form.dec, "Dec", -90, 90),
                    _number(form.radius or "0.1", "radius", 1e-6, 10))
    t_min = _mjd(form.date_from, "from") if form.date_from else None
    # through the end of the "to" day (an exposure starting at the next midnight is not in)
    t_max = _mjd(form.date_to, "to") + 1.0 - _MS_DAYS if form.date_to else None
    if t_min is not None and t_max is not None and t_min >= t_max:
        raise SearchParameterError("the start date must not be after the end date")
    texts = {"target": form.target, "program": form.program, "instrument": form.instrument,
             "filter": form.filter}
    for name, text in texts.items():
        if len(text) > 128:
            raise SearchParameterError(f"{name} is too long")
        check_text(name, text)
    if form.level and form.level not in LEVELS:
        raise SearchParameterError(f"level must be one of {', '.join(LEVELS)}")
    page = _page(form.page)
    given = {name: text.strip() or None for name, text in texts.items()}
    return SearchQuery(target=given["target"], program=given["program"],
                       instrument=given["instrument"], filter=given["filter"],
                       level=form.level or None, cone=cone, t_min=t_min, t_max=t_max,
                       page=page, page_size=PAGE_SIZE)


def _menus(request: Request, caller: WebCaller) -> dict[str, list[str]]:
    """The form's menus and target suggestions: values the visitor may be told of."""
    policy = get_archive(request).settings.access_policy
    columns = {"targets": Exposure.target_name, "programs": Exposure.program,
               "instruments": Exposure.instrument_name, "filters": Exposure.filter}
    with get_archive(request).session() as session:
        return {name: menu_values(session, column, caller.viewer, caller.now, policy)
                for name, column in columns.items()}


def _search(request: Request, caller: WebCaller, form: SearchForm,
            submitted: bool) -> tuple[int, dict[str, Any]]:
    """The page's context: the form only when nothing was ``submitted``, else the results
    (every observation when every field is empty)."""
    context: dict[str, Any] = {"form": form, "page": None, "error": None, "levels": LEVELS,
                               **_menus(request, caller)}
    try:
        if not submitted:
            return 200, context
        query = _query(form)
    except ValueError as exc:
        return 400, {**context, "error": str(exc)}
    with get_archive(request).session() as session:
        page = search_observations(session, query, caller.viewer, caller.now,
                                   get_archive(request).settings.access_policy)
    return 200, {**context, "page": page, "pages": max(1, math.ceil(page.total / PAGE_SIZE)),
                 "footprints": footprints(page.results), "hips": hips_available(request)}


def _or_empty(schema: dict[str, Any]) -> dict[str, Any]:
    """A form field: ``schema``, or empty (a browser sends empty fields as ``name=``)."""
    return {"anyOf": [schema, {"type": "string", "maxLength": 0}]}


_TEXT = {"type": "string", "maxLength": 128}
_SEARCH_PARAMS = query_params(
    target=_TEXT, program=_TEXT, instrument=_TEXT, filter=_TEXT,
    level=_or_empty({"type": "string", "enum": list(LEVELS)}),
    ra=_or_empty({"type": "number", "minimum": 0, "maximum": 360, "description": "degrees"}),
    dec=_or_empty({"type": "number", "minimum": -90, "maximum": 90, "description": "degrees"}),
    radius=_or_empty({"type": "number", "minimum": 1e-6, "maximum": 10,
                      "description": "degrees"}),
    date_from=_or_empty({"type": "string", "format": "date"}),
    date_to=_or_empty({"type": "string", "format": "date"}),
    page=_or_empty({"type": "integer", "minimum": 1, "maximum": PAGES}))


@router.get("/search", response_class=HTMLResponse, summary="Search form and results (HTML)",
            openapi_extra=_SEARCH_PARAMS,
            responses=html_responses(s200="The form (and the results)",
                                     s400="The form with what is wrong with a field"))
async def search(request: Request) -> HTMLResponse:
    """The search form; once submitted (any field given, even empty), the matching
    observations and their products."""
    fields = SearchForm.__dataclass_fields__
    form = SearchForm(**{k: v[:200] for k, v in request.query_params.items() if k in fields})
    caller = await run_in_threadpool(web_caller, request)
    submitted = any(k in fields for k in request.query_params)
    status, context = await run_in_threadpool(_search, request, caller, form, submitted)
    response = render(request, caller, "search.html", status=status, **context)
    response.headers["Content-Security-Policy"] = MAP_CSP
    return response


def _compare_with(history: dict[str, Any], product: Product, compare: str | None) -> str | None:
    """The product to diff with: ``compare`` if given, else the previous visible version."""
    if compare:
        return compare
    older = [v["product_id"] for v in history["versions"] if v["version"] < product.version]
    return older[-1] if older else None


def _product(request: Request, caller: WebCaller, product_id: str,
             compare: str | None) -> dict[str, Any]:
    with get_archive(request).session() as session:
        product, exposure = get_product(session, check_product_id(product_id), caller.viewer,
                                        caller.now)
        kinds = set(session.scalars(select(Preview.kind)
                                    .where(Preview.product_pk == product.id)).all())
        history = product_history(session, product, caller.viewer, caller.now)
        other = _compare_with(history, product, compare)
        diff, diff_error = None, None
        if other is not None:
            try:
                diff = diff_products(session, check_product_id(other), product.product_id,
                                     caller.viewer, caller.now)
            except ProductNotFoundError:
                diff_error = f"No product {other[:100]!r} to compare with."
        meta = {**product_dict(product, exposure), "files": product_files(session, product)}
        siblings = observation_products(session, [exposure.id], SearchQuery())
        store = get_archive(request).settings.store
        header = fits_header(store, product.path)
        catalog = catalog_preview(store, product.path)
        dzi = deep_zoom_key(product)
        deep_zoom = dzi is not None and store.exists(dzi)
    return {"catalog": catalog, "p": meta, "has_preview": "png" in kinds, **history, "diff": diff,
            "deep_zoom": deep_zoom,
            "diff_error": diff_error, "proprietary": exposure.release_date > caller.now,
            "readable": readable(meta), "siblings": siblings.get(exposure.id, []),
            "header": header}


@router.get("/products/{product_id}", response_class=HTMLResponse,
            summary="A product's page (HTML)",
            openapi_extra=query_params(compare={"type": "string"}),
            responses=html_responses(s200="The product page",
                                     s404="No such product (or not visible)"))
async def product_page(product_id: str, request: Request) -> HTMLResponse:
    """Metadata, versions, provenance, changes, lineage and downloads (404 if hidden)."""
    caller = await run_in_threadpool(web_caller, request)
    compare = request.query_params.get("compare") or None
    try:
        context = await run_in_threadpool(_product, request, caller, product_id, compare)
    except ProductNotFoundError:
        return render(request, caller, "error.html", status=404,
                      message="No such product (or you are not allowed to see it).")
    return render(request, caller, "product.html", **context)


def _catalog_file(request: Request, caller: WebCaller, product_id: str) -> tuple[str, bytes]:
    with get_archive(request).session() as session:
        product, _ = get_product(session, check_product_id(product_id), caller.viewer,
                                 caller.now)
    store = get_archive(request).settings.store
    key = catalog_key(product.path)
    if key is None or not store.exists(key):
        raise ProductNotFoundError(f"{product_id}: no source catalog")
    return key.rsplit("/", 1)[-1], store.read_bytes(key)


@router.get("/products/{product_id}/catalog.ecsv", response_class=Response,
            summary="A mosaic's source catalog (ECSV)",
            responses=html_responses(s200="The catalog", s404="No such mosaic or catalog "
                                                              "(or not visible)"))
async def catalog_download(product_id: str, request: Request) -> Response:
    """The ``_cat.ecsv`` of an ``_i2d`` mosaic, under the mosaic's access rule (session
    cookie or API token)."""
    caller = await run_in_threadpool(partial(web_caller, request, cookie_only=False))
    try:
        name, data = await run_in_threadpool(_catalog_file, request, caller, product_id)
    except ProductNotFoundError:
        return render(request, caller, "error.html", status=404,
                      message="No such catalog (or you are not allowed to see it).")
    return Response(data, media_type="text/x-ecsv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
