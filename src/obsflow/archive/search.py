"""Catalog queries under the access policy: search, one product, its versions, provenance
and lineage, previews.

Every function takes the :class:`~obsflow.archive.policy.Viewer` and the
time ``now``; rows the viewer may not see are filtered in SQL, so they are
never counted, listed or returned (a hidden product raises
:class:`ProductNotFoundError` exactly like a missing one).  That holds for
links too: a product's versions, its inputs and the products made from it
(``product_inputs``), and the input references inside its provenance list
only products the viewer may see; :func:`diff_provenance` compares two
such filtered documents, so a diff cannot name a hidden product either.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, false, func, not_, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from obsflow.archive.footprints import Region, overlap_clause
from obsflow.archive.policy import PUBLIC_METADATA, Viewer, listed_clause, visible_clause
from obsflow.archive.schema import Exposure, Preview, Product, ProductFile, ProductInput, Program
from obsflow.archive.vo.obscore import latest_clause
from obsflow.exceptions import ProductNotFoundError
from obsflow.models.provenance import Provenance

__all__ = [
    "Cone",
    "SearchPage",
    "SearchQuery",
    "diff_products",
    "deep_zoom_key",
    "diff_provenance",
    "get_deep_zoom",
    "get_preview",
    "get_product",
    "get_product_file",
    "link_dict",
    "menu_values",
    "observation_products",
    "product_dict",
    "product_files",
    "product_history",
    "product_lineage",
    "product_provenance",
    "product_versions",
    "search_observations",
    "search_products",
    "version_dict",
    "visible_provenance",
    "visible_products",
]


@dataclass(frozen=True)
class Cone:
    """A cone on the sky, ICRS degrees."""

    ra: float
    dec: float
    radius: float


@dataclass(frozen=True)
class SearchQuery:
    """What to search for; unset fields do not constrain.

    ``t_min``/``t_max`` (MJD UTC) select exposures overlapping the interval;
    ``target`` matches any target name containing it, whatever the case
    (``cal-field`` and ``CAL`` find ``CAL-FIELD``); ``level`` is a data level (``1``, ``2a``, ``2b``, ``3``); ``latest_only``
    hides superseded versions.  ``page`` counts from 1.
    """

    program: str | None = None
    target: str | None = None
    cone: Cone | None = None
    filter: str | None = None
    instrument: str | None = None
    t_min: float | None = None
    t_max: float | None = None
    level: str | None = None
    kind: str | None = None
    latest_only: bool = True
    page: int = 1
    page_size: int = 100


@dataclass(frozen=True)
class SearchPage:
    """One page of results: catalog rows as dicts (see :func:`product_dict`)."""

    total: int
    page: int
    page_size: int
    results: list[dict[str, Any]] = field(default_factory=list)


def visible_products(viewer: Viewer, now: datetime) -> Select:  # type: ignore[type-arg]
    """``SELECT product, exposure`` restricted to what ``viewer`` may see at ``now``."""
    return (select(Product, Exposure).join(Exposure, Product.exposure_id == Exposure.id)
            .where(visible_clause(viewer, now)))


def menu_values(session: Session, column: InstrumentedAttribute[str], viewer: Viewer,
                now: datetime, policy: str) -> list[str]:
    """The distinct values of an :class:`Exposure` column of :data:`PUBLIC_METADATA` that
    ``viewer`` may be told at ``now`` under ``policy``, sorted (a search form's menu).

    Under ``hidden`` a value only hidden data has (a filter, a program) is not named.
    """
    return sorted(session.scalars(select(column).where(listed_clause(viewer, now, policy))
                                  .distinct()).all())


def _public_conditions(query: SearchQuery) -> list[ColumnElement[bool]]:
    """The conditions of ``query`` on :data:`PUBLIC_METADATA` only (what anyone may ask of
    a proprietary exposure under the ``metadata`` policy)."""
    pairs: list[tuple[Any, Any]] = [
        (query.program, Exposure.program), (query.filter, Exposure.filter),
        (query.instrument, Exposure.instrument_name)]
    where: list[ColumnElement[bool]] = [column == value for value, column in pairs
                                        if value is not None]
    if query.target is not None:
        where.append(func.lower(Exposure.target_name).contains(query.target.lower(),
                                                               autoescape=True))
    if query.t_min is not None:
        where.append(Exposure.t_max >= query.t_min)
    if query.t_max is not None:
        where.append(Exposure.t_min <= query.t_max)
    return where


def _product_conditions(query: SearchQuery) -> list[ColumnElement[bool]]:
    pairs = ((query.level, Product.level), (query.kind, Product.kind))
    where: list[ColumnElement[bool]] = [column == value for value, column in pairs
                                        if value is not None]
    if query.latest_only:
        where.append(latest_clause())
    return where


def _cone_clause(cone: Cone, *, of_exposures: bool = False) -> ColumnElement[bool]:
    """Products (or, ``of_exposures``, exposures) whose footprint overlaps ``cone``."""
    columns = ((Exposure.id, Exposure.s_region, Exposure.s_ra, Exposure.s_dec)
               if of_exposures else None)
    return overlap_clause(Region.circle(cone.ra, cone.dec, cone.radius), columns)


def _conditions(query: SearchQuery) -> list[ColumnElement[bool]]:
    where = _public_conditions(query) + _product_conditions(query)
    if query.cone is not None:
        where.append(_cone_clause(query.cone))
    return where


def product_dict(product: Product, exposure: Exposure) -> dict[str, Any]:
    """A product row as JSON-able metadata (ObsCore names where one exists)."""
    return {
        "product_id": product.product_id, "obs_id": exposure.obs_id,
        "program": exposure.program, "kind": product.kind, "level": product.level,
        "calib_level": product.calib_level, "dataproduct_type": product.dataproduct_type,
        "version": product.version, "is_latest": product.is_latest,
        "filename": product.filename, "size": product.size, "sha256": product.sha256,
        "created": product.created.isoformat(), "target_name": exposure.target_name,
        "s_ra": exposure.s_ra, "s_dec": exposure.s_dec, "s_fov": exposure.s_fov,
        "s_region": exposure.s_region, "t_min": exposure.t_min, "t_max": exposure.t_max,
        "t_exptime": exposure.t_exptime, "em_min": exposure.em_min, "em_max": exposure.em_max,
        "instrument_name": exposure.instrument_name, "facility_name": exposure.facility_name,
        "detector": exposure.detector, "filter": exposure.filter,
        "release_date": exposure.release_date.isoformat(),
        "software_version": product.software_version, "recipe": product.recipe,
        "reference_files": json.loads(product.reference_files),
    }


def search_products(session: Session, query: SearchQuery, viewer: Viewer,
                    now: datetime) -> SearchPage:
    """One page of the products matching ``query`` that ``viewer`` may see."""
    base = visible_products(viewer, now).where(*_conditions(query))
    total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    rows = session.execute(
        base.order_by(Exposure.t_min, Product.id)
        .offset((query.page - 1) * query.page_size).limit(query.page_size)
    ).all()
    return SearchPage(total, query.page, query.page_size,
                      [product_dict(p, e) for p, e in rows])


def _observation_clause(query: SearchQuery, viewer: Viewer, now: datetime,
                        policy: str) -> ColumnElement[bool]:
    """Exposures matching ``query`` with a product matching it: the ones ``viewer`` may see,
    and under ``policy`` the others whose public metadata ``viewer`` may be told, when
    ``query`` asks only about public metadata (a cone, a level or a kind is not: a
    proprietary exposure never matches one, so a probe cannot find out its values)."""
    has_product = exists(select(Product.id).where(Product.exposure_id == Exposure.id,
                                                  *_product_conditions(query)))
    visible = visible_clause(viewer, now)
    seen = [visible]
    if query.cone is not None:
        seen.append(_cone_clause(query.cone, of_exposures=True))
    public_only = query.cone is None and query.level is None and query.kind is None
    told = and_(not_(visible), listed_clause(viewer, now, policy)) if public_only else false()
    return and_(*_public_conditions(query), has_product, or_(and_(*seen), told))


def observation_products(session: Session, exposure_ids: list[int], query: SearchQuery
                         ) -> dict[int, list[dict[str, Any]]]:
    """The products of the exposures ``exposure_ids`` matching ``query``'s level, kind and
    versions (the caller checked that the exposures are visible), by exposure id, in level
    order; each as :func:`link_dict` with ``filename``, ``size`` (bytes) and ``thumb``
    (True when it has a thumbnail)."""
    rows = session.execute(
        select(Product, Exposure, Preview.kind)
        .join(Exposure, Product.exposure_id == Exposure.id)
        .outerjoin(Preview, (Preview.product_pk == Product.id) & (Preview.kind == "thumb"))
        .where(Product.exposure_id.in_(exposure_ids), *_product_conditions(query))
        .order_by(Product.calib_level, Product.level, Product.kind, Product.version)).all()
    out: dict[int, list[dict[str, Any]]] = {}
    for product, exposure, thumb in rows:
        out.setdefault(exposure.id, []).append(
            {**link_dict(product, exposure), "filename": product.filename,
             "size": product.size, "thumb": thumb is not None})
    return out


def _observation_dict(exposure: Exposure, seen: bool) -> dict[str, Any]:
    """An exposure as a search result: every field when it is ``seen`` (``data`` access),
    else :data:`PUBLIC_METADATA` only (``metadata`` access)."""
    public = {key: getattr(exposure, key) for key in PUBLIC_METADATA}
    public["release_date"] = exposure.release_date.isoformat()
    if not seen:
        return {**public, "access": "metadata", "products": []}
    return {**public, "access": "data", "obs_id": exposure.obs_id, "s_ra": exposure.s_ra,
            "s_dec": exposure.s_dec, "s_region": exposure.s_region,
            "t_exptime": exposure.t_exptime, "detector": exposure.detector, "products": []}


def search_observations(session: Session, query: SearchQuery, viewer: Viewer, now: datetime,
                        policy: str) -> SearchPage:
    """One page of the exposures matching ``query``, each with its products listed inside.

    The exposures ``viewer`` may see come whole, with their matching
    products (``products``, see :func:`observation_products`); under the
    ``metadata`` policy the proprietary ones come with
    :data:`PUBLIC_METADATA` only and no products (``access``:
    ``metadata``).  Ordered by start time.
    """
    where = _observation_clause(query, viewer, now, policy)
    total = session.scalar(select(func.count(Exposure.id)).where(where)) or 0
    rows = session.execute(
        select(Exposure, visible_clause(viewer, now)).where(where)
        .order_by(Exposure.t_min, Exposure.id)
        .offset((query.page - 1) * query.page_size).limit(query.page_size)).all()
    results = [(_observation_dict(exposure, bool(seen)), exposure.id) for exposure, seen in rows]
    products = observation_products(
        session, [pk for r, pk in results if r["access"] == "data"], query)
    for result, pk in results:
        if result["access"] == "data":
            result["products"] = products.get(pk, [])
    return SearchPage(total, query.page, query.page_size, [r for r, _ in results])


def get_product(session: Session, product_id: str, viewer: Viewer,
                now: datetime) -> tuple[Product, Exposure]:
    """The product ``product_id`` if ``viewer`` may see it, else :class:`ProductNotFoundError`."""
    row = session.execute(visible_products(viewer, now)
                          .where(Product.product_id == product_id)).first()
    if row is None:
        raise ProductNotFoundError(f"no product {product_id!r}")
    return row[0], row[1]


def get_product_file(session: Session, product_id: str, file_format: str | None,
                     viewer: Viewer, now: datetime) -> Product | ProductFile:
    """The file of a visible product to serve: the product's own (``file_format`` None) or
    its other file of that format (``asdf``); else :class:`ProductNotFoundError`."""
    product, _ = get_product(session, product_id, viewer, now)
    if file_format is None:
        return product
    other = session.get(ProductFile, (product.id, file_format))
    if other is None:
        raise ProductNotFoundError(f"product {product_id!r} has no {file_format} file")
    return other


def product_files(session: Session, product: Product) -> list[dict[str, Any]]:
    """A product's other files (format, filename, size, sha256, content type)."""
    rows = session.scalars(select(ProductFile).where(ProductFile.product_pk == product.id)
                           .order_by(ProductFile.format)).all()
    return [{"format": f.format, "filename": f.filename, "size": f.size, "sha256": f.sha256,
             "content_type": f.content_type} for f in rows]


def get_preview(session: Session, product_id: str, kind: str, viewer: Viewer,
                now: datetime) -> Preview:
    """A visible product's preview of ``kind`` (``png``, ``jpeg``, ``thumb``)."""
    product, _ = get_product(session, product_id, viewer, now)
    preview = session.get(Preview, (product.id, kind))
    if preview is None:
        raise ProductNotFoundError(f"no {kind} preview of product {product_id!r}")
    return preview


def deep_zoom_key(product: Product, part: str | None = None) -> str | None:
    """The store key of a colour image's deep-zoom descriptor (``part`` None: ``x_clr.dzi``)
    or of one of its tiles (``part`` ``"<level>/<col>_<row>.jpg"``, under ``x_clr_files/``),
    as :func:`obsflow.stage3.colour.write_deep_zoom` lays them out beside the PNG; None for a
    product that is not a colour image."""
    if product.kind != "clr":
        return None
    stem = product.path.rsplit(".", 1)[0]
    return f"{stem}.dzi" if part is None else f"{stem}_files/{part}"


def get_deep_zoom(session: Session, product_id: str, part: str | None, viewer: Viewer,
                  now: datetime) -> str:
    """The store key of a visible colour image's deep-zoom descriptor or tile (see
    :func:`deep_zoom_key`); else :class:`ProductNotFoundError`."""
    product, _ = get_product(session, product_id, viewer, now)
    key = deep_zoom_key(product, part)
    if key is None:
        raise ProductNotFoundError(f"product {product_id!r} is a {product.kind}: only colour "
                                   "images (clr) have a deep zoom")
    return key


def program_dict(program: Program) -> dict[str, Any]:
    """Public facts of a program."""
    return {"program": program.program, "pi_name": program.pi_name, "title": program.title,
            "exclusive_months": program.exclusive_months}


# -- versions, lineage and provenance of one product --------------------------------------------

def version_dict(product: Product) -> dict[str, Any]:
    """One version of a product: id, number, run, when, software, recipe, context, current."""
    return {"product_id": product.product_id, "version": product.version, "run": product.run,
            "created": product.created.isoformat(), "software_version": product.software_version,
            "recipe": product.recipe, "ref_context": product.ref_context,
            "is_latest": product.is_latest}


def link_dict(product: Product, exposure: Exposure) -> dict[str, Any]:
    """A product another one links to (an input or an output): who and which version."""
    return {**version_dict(product), "obs_id": exposure.obs_id, "kind": product.kind,
            "level": product.level}


def product_versions(session: Session, product: Product, viewer: Viewer,
                     now: datetime) -> list[dict[str, Any]]:
    """Every version of ``product``'s exposure and kind that ``viewer`` may see, oldest first."""
    rows = session.scalars(
        select(Product).join(Exposure, Product.exposure_id == Exposure.id)
        .where(visible_clause(viewer, now), Product.exposure_id == product.exposure_id,
               Product.kind == product.kind)
        .order_by(Product.version)).all()
    return [version_dict(p) for p in rows]


def product_lineage(session: Session, product: Product, viewer: Viewer,
                    now: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(inputs of ``product``, products made from it), each only what ``viewer`` may see.

    Both come from ``product_inputs``; every version of an output is listed
    (``is_latest`` says which is current).
    """
    inputs = session.execute(
        visible_products(viewer, now).join(ProductInput, ProductInput.input_pk == Product.id)
        .where(ProductInput.product_pk == product.id).order_by(Product.id)).all()
    outputs = session.execute(
        visible_products(viewer, now).join(ProductInput, ProductInput.product_pk == Product.id)
        .where(ProductInput.input_pk == product.id).order_by(Product.id)).all()
    return [link_dict(p, e) for p, e in inputs], [link_dict(p, e) for p, e in outputs]


def product_provenance(product: Product) -> Provenance:
    """The provenance the catalog keeps whole for ``product``.

    A row holding the column's default ``{}`` (no document recorded) gets
    what its columns say: run, software, recipe, context.  Any other
    document that does not parse raises (a damaged catalog is not hidden).
    """
    if product.provenance.strip() in ("", "{}"):
        return Provenance(run=product.run, software=product.software_version,
                          recipe=product.recipe, context=product.ref_context)
    return Provenance.from_json(product.provenance)


def visible_provenance(session: Session, product: Product, viewer: Viewer,
                       now: datetime) -> dict[str, Any]:
    """``product``'s provenance (the form of :meth:`Provenance.as_dict`) as ``viewer`` may see it.

    Every field is whole; each input reference gains its ``product_id``, and
    the inputs ``viewer`` may not see (or that are not in the catalog) are
    left out, so the document never names a hidden product.
    """
    provenance = product_provenance(product)
    uuids = [ref.uuid for ref in provenance.inputs]
    visible: dict[str, str] = {}
    if uuids:
        visible = {uuid: product_id for uuid, product_id in session.execute(
            select(Product.uuid, Product.product_id)
            .join(Exposure, Product.exposure_id == Exposure.id)
            .where(visible_clause(viewer, now), Product.uuid.in_(uuids)))}
    body = provenance.as_dict()
    body["inputs"] = [{**ref.as_dict(), "product_id": visible[ref.uuid]}
                      for ref in provenance.inputs if ref.uuid in visible]
    return body


# -- what changed between two versions ---------------------------------------------------------

def _change(old: Any, new: Any) -> dict[str, Any] | None:
    return None if old == new else {"from": old, "to": new}


def _reference_changes(old: list[list[str]], new: list[list[str]]) -> dict[str, list[Any]]:
    """Reference files added, removed and replaced (same type, other name or sha256), by type."""
    def by_type(refs: list[list[str]]) -> dict[str, list[dict[str, str]]]:
        out: dict[str, list[dict[str, str]]] = {}
        for reftype, name, sha256 in refs:
            out.setdefault(reftype, []).append({"name": name, "sha256": sha256})
        return out

    before, after = by_type(old), by_type(new)
    changes: dict[str, list[Any]] = {"added": [], "removed": [], "replaced": []}
    for reftype in sorted(set(before) | set(after)):
        gone = [r for r in before.get(reftype, []) if r not in after.get(reftype, [])]
        came = [r for r in after.get(reftype, []) if r not in before.get(reftype, [])]
        if len(gone) == len(came) == 1:
            changes["replaced"].append({"reftype": reftype, "from": gone[0], "to": came[0]})
            continue
        changes["removed"] += [{"reftype": reftype, **r} for r in gone]
        changes["added"] += [{"reftype": reftype, **r} for r in came]
    return changes


def _param_changes(step: str, old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    changes = []
    for name in sorted(set(old) | set(new)):
        if name not in new:
            changes.append({"step": step, "param": name, "change": "removed", "from": old[name]})
        elif name not in old:
            changes.append({"step": step, "param": name, "change": "added", "to": new[name]})
        elif old[name] != new[name]:
            changes.append({"step": step, "param": name, "change": "changed",
                            "from": old[name], "to": new[name]})
    return changes


def _step_changes(old: list[list[Any]], new: list[list[Any]]) -> dict[str, list[Any]]:
    """Steps added or removed (by name), status and parameters changed of the steps in both."""
    before = {name: (status, params) for name, status, params in old}
    after = {name: (status, params) for name, status, params in new}
    changes: dict[str, list[Any]] = {
        "added": [n for n in after if n not in before],
        "removed": [n for n in before if n not in after], "status": [], "params": []}
    for name in (n for n in after if n in before):
        if before[name][0] != after[name][0]:
            changes["status"].append({"step": name, "from": before[name][0],
                                      "to": after[name][0]})
        changes["params"] += _param_changes(name, before[name][1], after[name][1])
    return changes


def _added_removed(old: list[Any], new: list[Any]) -> dict[str, list[Any]]:
    return {"added": [x for x in new if x not in old], "removed": [x for x in old if x not in new]}


def diff_provenance(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """What changed from provenance ``old`` to ``new`` (both as :func:`visible_provenance` gives).

    Returns ``software``, ``recipe``, ``context`` and ``run`` as
    ``{"from", "to"}`` (None when equal); ``references`` (``added``,
    ``removed``, ``replaced``: type, name, sha256); ``steps`` (``added``,
    ``removed`` step names, ``status`` and ``params`` changes, each param
    ``added``/``removed``/``changed`` with its values whole); ``inputs``
    and ``input_files`` (``added``, ``removed``); ``same_processing``: True
    when nothing but the run differs.
    """
    diff: dict[str, Any] = {key: _change(old.get(key), new.get(key))
                            for key in ("software", "recipe", "context", "run")}
    diff["references"] = _reference_changes(old.get("references", []),
                                            new.get("references", []))
    diff["steps"] = _step_changes(old.get("steps", []), new.get("steps", []))
    for key in ("inputs", "input_files"):
        diff[key] = _added_removed(old.get(key, []), new.get(key, []))
    diff["same_processing"] = not any(
        (diff["software"], diff["recipe"], diff["context"],
         *(any(group.values()) for group in (diff["references"], diff["steps"], diff["inputs"],
                                             diff["input_files"]))))
    return diff


def product_history(session: Session, product: Product, viewer: Viewer,
                    now: datetime) -> dict[str, Any]:
    """``versions``, ``provenance``, ``inputs`` and ``outputs`` of a product ``viewer`` sees.

    See :func:`product_versions`, :func:`visible_provenance` and
    :func:`product_lineage`: what its page and its metadata show.
    """
    inputs, outputs = product_lineage(session, product, viewer, now)
    return {"versions": product_versions(session, product, viewer, now),
            "provenance": visible_provenance(session, product, viewer, now),
            "inputs": inputs, "outputs": outputs}


def diff_products(session: Session, product_id: str, other_id: str, viewer: Viewer,
                  now: datetime) -> dict[str, Any]:
    """What changed from product ``product_id`` to ``other_id`` (see :func:`diff_provenance`).

    Both must be visible to ``viewer`` (else :class:`ProductNotFoundError`,
    as for a missing one); ``from`` and ``to`` say which versions they are.
    """
    rows = [get_product(session, pid, viewer, now) for pid in (product_id, other_id)]
    old, new = (visible_provenance(session, p, viewer, now) for p, _ in rows)
    (a, ea), (b, eb) = rows
    return {"from": link_dict(a, ea), "to": link_dict(b, eb), **diff_provenance(old, new)}
