"""Which products a change affects: the plan of a reprocessing campaign.

:func:`plan_reprocessing` looks at the *current* calibrated products (one
per exposure and kind) that pass the filters (program, kind, observation
start) and finds those a change affects, and why:

* ``reference`` -- the best reference file of a type the product's recipe
  reads differs between the reference context the product recorded and the
  target context (CRDS's "affected datasets": the old and new selection on
  the product's own metadata); a product that recorded no context (made
  before contexts, or from a folder) is compared by the file names it
  recorded;
* ``software`` -- it was made by another obsflow version than the one asked;
* ``recipe`` -- it was made with the named recipe;
* ``input`` -- it was made from an affected product (downstream, followed
  transitively through ``product_inputs``).

With no criterion at all the target is the newest context.  The selection is
vectorised (:func:`obsflow.refdata.compare.select_file_ids`): products are
grouped by recorded context and selector tuple, so a million products plan in
seconds; a test checks the answer against the product-by-product rule.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from obsflow.archive.schema import Exposure, Product, ProductInput
from obsflow.refdata.compare import select_file_ids
from obsflow.refdata.contexts import RefContext, load_context, newest_context
from obsflow.refdata.select import ProductSelectors

__all__ = ["REPROCESSABLE_KINDS", "AffectedProduct", "Plan", "PlanCriteria", "plan_reprocessing",
           "recipe_reftypes"]

REPROCESSABLE_KINDS = ("rate", "rateints", "cal")
"""Kinds a campaign remakes (from the exposure's current Level-1 product)."""

_CHUNK = 900
"""Ids per ``IN (...)`` list (SQLite allows 999 parameters by default in old builds)."""


@dataclass(frozen=True)
class PlanCriteria:
    """What changed, and which products to consider.

    Attributes
    ----------
    context : int or None
        Target reference context (None: the newest, when it is the question).
    software : str or None
        Products made by another obsflow version than this one are affected.
    recipe : str or None
        Products made with this recipe are affected.
    program : str or None
        Only this program's products.
    since : float or None
        Only exposures that started at or after this time, MJD UTC.
    kind : str or None
        Only this product kind.
    """

    context: int | None = None
    software: str | None = None
    recipe: str | None = None
    program: str | None = None
    since: float | None = None
    kind: str | None = None

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in REPROCESSABLE_KINDS:
            from obsflow.exceptions import UnknownOptionError

            raise UnknownOptionError("product kind to reprocess", self.kind, REPROCESSABLE_KINDS)

    @property
    def compares_context(self) -> bool:
        """True when references are compared (a context given, or no other change named)."""
        return self.context is not None or (self.software is None and self.recipe is None)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"context": self.context, "software": self.software, "recipe": self.recipe,
                "program": self.program, "since": self.since, "kind": self.kind}


@dataclass
class AffectedProduct:
    """One current product the plan would remake, and every reason why."""

    pk: int
    product_id: str
    uuid: str
    kind: str
    version: int
    exposure_pk: int
    obs_id: str
    instrument: str
    detector: str
    reasons: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (the ``--json`` output's items)."""
        return {"product_id": self.product_id, "uuid": self.uuid, "kind": self.kind,
                "version": self.version, "obs_id": self.obs_id, "instrument": self.instrument,
                "detector": self.detector, "reasons": self.reasons}


@dataclass
class Plan:
    """The affected products, the target context and what it took to find them."""

    criteria: PlanCriteria
    context: int | None
    products: list[AffectedProduct]
    scanned: int
    seconds: float

    def summary(self) -> dict[str, dict[str, int]]:
        """Counts of affected products by instrument, detector, kind and reason."""
        why: Counter[str] = Counter()
        for p in self.products:
            for r in p.reasons:
                why[r.get("reftype") or r["type"]] += 1
        return {"instrument": dict(Counter(p.instrument for p in self.products)),
                "detector": dict(Counter(p.detector for p in self.products)),
                "kind": dict(Counter(p.kind for p in self.products)),
                "reason": dict(why)}

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form of the whole plan."""
        return {"criteria": self.criteria.as_dict(), "context": self.context,
                "scanned": self.scanned, "affected": len(self.products),
                "seconds": round(self.seconds, 3), "summary": self.summary(),
                "products": [p.as_dict() for p in self.products]}


@cache
def recipe_reftypes(recipe: str, kind: str) -> tuple[str, ...]:
    """Reference types a product of ``kind`` made with ``recipe`` depends on.

    ``rate`` and ``rateints`` depend on the stage-1 steps' references, ``cal``
    on every step's (see :mod:`obsflow.calibrate.pipeline`).  An unknown
    recipe (a legacy product) gives every type any built-in step reads.
    """
    from obsflow.calibrate.pipeline import load_recipe
    from obsflow.calibrate.steps import STEPS
    from obsflow.exceptions import UnknownOptionError

    stage = 1 if kind in ("rate", "rateints") else 2
    try:
        steps: Sequence[str] = load_recipe(recipe).steps
    except UnknownOptionError:
        steps = tuple(STEPS)
    return tuple(sorted({t for s in steps if STEPS[s].stage <= stage for t in STEPS[s].reftypes}))


_PRODUCT_COLUMNS = (Product.id, Product.kind, Product.ref_context, Product.recipe,
                   Product.software_version, Product.exposure_id)
_PRODUCT_NAMES = ("pk", "kind", "context", "recipe", "software", "exposure_pk")
_EXPOSURE_COLUMNS = (Exposure.id, Exposure.facility_name, Exposure.instrument_name,
                     Exposure.detector, Exposure.filter, Exposure.readpatt, Exposure.subarray,
                     Exposure.t_min)
_EXPOSURE_NAMES = ("id", "telescope", "instrument", "detector", "filter", "readpatt", "subarray",
                   "expstart")


def _raw_rows(session: Session, query: Any) -> list[tuple[Any, ...]]:
    """All rows of ``query`` as the driver's plain tuples (no SQLAlchemy row objects)."""
    result = session.connection().execute(query)
    return list(result.cursor.fetchall())  # type: ignore[attr-defined]


_NUMERIC = {"pk": np.int64, "exposure_pk": np.int64, "id": np.int64, "expstart": np.float64}


def _columns(rows: list[tuple[Any, ...]], names: Sequence[str]) -> dict[str, np.ndarray]:
    if not rows:
        return {name: np.array([], dtype=_NUMERIC.get(name, object)) for name in names}
    table = np.array(rows, dtype=object)  # one conversion; columns are views of it
    return {name: table[:, k].astype(_NUMERIC[name]) if name in _NUMERIC else table[:, k]
            for k, name in enumerate(names)}


def _candidates(session: Session, criteria: PlanCriteria) -> dict[str, np.ndarray]:
    """The current products under consideration, as columns (numpy arrays).

    Two plain queries (the products' few columns, then their exposures'
    selectors, joined in numpy), read as the driver's tuples: a million
    products take a couple of seconds on SQLite.  Names and ids of the
    products are read later, for the affected ones only.
    """
    kinds = [criteria.kind] if criteria.kind else list(REPROCESSABLE_KINDS)
    exposures = select(*_EXPOSURE_COLUMNS)
    if criteria.program is not None:
        exposures = exposures.where(Exposure.program == criteria.program)
    if criteria.since is not None:
        exposures = exposures.where(Exposure.t_min >= criteria.since)
    products = select(*_PRODUCT_COLUMNS).where(Product.is_latest.is_(True),
                                               Product.kind.in_(kinds))
    if criteria.program is not None or criteria.since is not None:
        products = products.where(Product.exposure_id.in_(
            exposures.with_only_columns(Exposure.id).scalar_subquery()))
    cols = _columns(_raw_rows(session, products), _PRODUCT_NAMES)
    exp = _columns(_raw_rows(session, exposures), _EXPOSURE_NAMES)
    ids = exp["id"].astype(np.int64)
    order = np.argsort(ids)
    at = order[np.searchsorted(ids[order], cols["exposure_pk"].astype(np.int64))]
    for name in _EXPOSURE_NAMES[1:]:
        cols[name] = exp[name][at]
    return cols


def _selectors(cols: dict[str, np.ndarray], where: np.ndarray) -> ProductSelectors:
    def column(name: str) -> np.ndarray:
        return cols[name][where].astype(str)

    return ProductSelectors(
        telescope=column("telescope"), instrument=column("instrument"),
        detector=column("detector"), filter=column("filter"), readpatt=column("readpatt"),
        subarray=column("subarray"), expstart=cols["expstart"][where])


def _name_of(context: RefContext, file_id: int) -> str | None:
    """File name of registry id ``file_id`` in ``context`` (-1: None)."""
    if file_id < 0:
        return None
    return context.records[context.file_ids.index(file_id)].name


def _recorded_names(session: Session, pks: np.ndarray, reftype: str) -> list[str]:
    """File names of ``reftype`` that products recorded (no context: by what they wrote down)."""
    import json

    names = {}
    for start in range(0, len(pks), _CHUNK):
        chunk = [int(k) for k in pks[start:start + _CHUNK]]
        for pk, text in session.execute(select(Product.id, Product.reference_files)
                                        .where(Product.id.in_(chunk))):
            found = dict(str(item).partition("=")[::2] for item in json.loads(text or "[]"))
            names[pk] = found.get(reftype, "")
    return [names[int(k)] for k in pks]


def _groups(cols: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Row indices of the products sharing recorded context and recipe (a handful of groups)."""
    if cols["pk"].size == 0:
        return []
    context = np.where(cols["context"] == None, 0, cols["context"]).astype(np.int64)  # noqa: E711
    recipes, recipe = np.unique(cols["recipe"].astype(str), return_inverse=True)
    _, group = np.unique(context * len(recipes) + recipe.reshape(-1), return_inverse=True)
    group = group.reshape(-1)
    order = np.argsort(group, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(group))])
    return [order[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


@dataclass(frozen=True)
class _Group:
    """Products of one recorded context and recipe, with their exposures' selectors."""

    rows: np.ndarray
    """Row indices (into the candidate columns)."""
    exposure_of: np.ndarray
    """For each row, the index of its exposure in ``selectors``."""
    selectors: ProductSelectors
    kinds: np.ndarray


def _group(cols: dict[str, np.ndarray], rows: np.ndarray) -> _Group:
    """Selectors once per exposure: a product's kinds share them."""
    _, first, inverse = np.unique(cols["exposure_pk"][rows].astype(np.int64),
                                  return_index=True, return_inverse=True)
    return _Group(rows, inverse.reshape(-1), _selectors(cols, rows[first]),
                  cols["kind"][rows].astype(str))


def _reftype_rows(group: _Group, recipe: str) -> dict[str, np.ndarray]:
    """Reference type -> mask of the group's rows whose kind reads it."""
    out: dict[str, np.ndarray] = {}
    for kind in np.unique(group.kinds):
        for reftype in recipe_reftypes(recipe, str(kind)):
            mask = group.kinds == kind
            out[reftype] = out[reftype] | mask if reftype in out else mask
    return out


def _reference_reasons(session: Session, cols: dict[str, np.ndarray], target: RefContext,
                       reasons: defaultdict[int, list[dict[str, Any]]]) -> None:
    """Add a ``reference`` reason to every product whose selection differs under ``target``."""
    loaded: dict[int, RefContext] = {target.number: target}
    for rows in _groups(cols):
        context, recipe = cols["context"][rows[0]], str(cols["recipe"][rows[0]])
        group = _group(cols, rows)
        old = None
        if context is not None:
            old = loaded.get(int(context)) or load_context(session, int(context))
            loaded[int(context)] = old
        for reftype, applies in _reftype_rows(group, recipe).items():
            new_ids = select_file_ids(target, group.selectors, reftype)[group.exposure_of]
            if old is not None:
                old_ids = select_file_ids(old, group.selectors, reftype)[group.exposure_of]
                for j in np.flatnonzero((new_ids != old_ids) & applies):
                    reasons[int(rows[j])].append({
                        "type": "reference", "reftype": reftype,
                        "old": _name_of(old, int(old_ids[j])),
                        "new": _name_of(target, int(new_ids[j]))})
                continue
            where = np.flatnonzero(applies)
            recorded = _recorded_names(session, cols["pk"][rows[where]], reftype)
            for j, was in zip(where, recorded, strict=True):
                new = _name_of(target, int(new_ids[j]))
                if (new or "") != was:
                    reasons[int(rows[j])].append({"type": "reference", "reftype": reftype,
                                             "old": was or None, "new": new})


def _downstream(session: Session, affected: set[int]) -> dict[int, int]:
    """Current products made (transitively) from ``affected`` ones: product pk -> input pk."""
    found: dict[int, int] = {}
    frontier = sorted(affected)
    while frontier:
        made: dict[int, int] = {}
        for start in range(0, len(frontier), _CHUNK):  # by the index on input_pk
            made.update({int(p): int(i) for p, i in session.execute(
                select(ProductInput.product_pk, ProductInput.input_pk)
                .where(ProductInput.input_pk.in_(frontier[start:start + _CHUNK])))})
        candidates = sorted(set(made) - affected - set(found))
        batch: list[int] = []
        for start in range(0, len(candidates), _CHUNK):  # then by primary key
            batch += [int(p) for p in session.scalars(select(Product.id).where(
                Product.id.in_(candidates[start:start + _CHUNK]), Product.is_latest.is_(True)))]
        found.update({p: made[p] for p in batch})
        frontier = sorted(batch)
    return found


_DETAILS = (Product.id, Product.product_id, Product.uuid, Product.kind, Product.version,
            Product.exposure_id, Exposure.obs_id, Exposure.instrument_name, Exposure.detector)


def _details(session: Session, reasons: dict[int, list[dict[str, Any]]]) -> list[AffectedProduct]:
    """The affected products (pk -> reasons), with their names, read for them only."""
    out = []
    pks = sorted(reasons)
    for start in range(0, len(pks), _CHUNK):
        rows = session.execute(select(*_DETAILS).join(Exposure, Exposure.id == Product.exposure_id)
                               .where(Product.id.in_(pks[start:start + _CHUNK]))).all()
        for pk, product_id, uuid, kind, version, exposure_pk, obs_id, instrument, detector in rows:
            out.append(AffectedProduct(int(pk), str(product_id), str(uuid), str(kind),
                                       int(version), int(exposure_pk), str(obs_id),
                                       str(instrument), str(detector), reasons[int(pk)]))
    return sorted(out, key=lambda p: p.pk)


def _product_ids(session: Session, pks: set[int]) -> dict[int, str]:
    ordered, out = sorted(pks), {}
    for start in range(0, len(ordered), _CHUNK):
        out.update({int(pk): str(name) for pk, name in session.execute(
            select(Product.id, Product.product_id).where(
                Product.id.in_(ordered[start:start + _CHUNK])))})
    return out


def plan_reprocessing(engine: Engine, criteria: PlanCriteria | None = None) -> Plan:
    """The products ``criteria`` says must be remade, with their reasons (module docstring).

    Raises
    ------
    obsflow.exceptions.UnknownOptionError, LookupError
        An unknown kind, or a context number the site does not have.
    """
    criteria = criteria or PlanCriteria()
    started = time.perf_counter()
    with Session(engine) as session:
        cols = _candidates(session, criteria)
        n = len(cols["pk"])
        reasons: defaultdict[int, list[dict[str, Any]]] = defaultdict(list)  # row -> reasons
        target = None
        if criteria.compares_context:
            target = (load_context(session, criteria.context) if criteria.context is not None
                      else newest_context(session))
            _reference_reasons(session, cols, target, reasons)
        if criteria.software is not None:
            for k in np.flatnonzero(cols["software"] != criteria.software).tolist():
                reasons[k].append({"type": "software", "old": str(cols["software"][k]),
                                   "new": criteria.software})
        if criteria.recipe is not None:
            for k in np.flatnonzero(cols["recipe"] == criteria.recipe).tolist():
                reasons[k].append({"type": "recipe", "recipe": criteria.recipe})
        products = _details(session, {int(cols["pk"][k]): why for k, why in reasons.items()})
        names = {p.pk: p.product_id for p in products}
        downstream = _downstream(session, set(names))
        names |= _product_ids(session, set(downstream.values()) - set(names))
        products += _details(session, {pk: [{"type": "input", "input": names[src]}]
                                       for pk, src in downstream.items()})
    return Plan(criteria, None if target is None else target.number, products, n,
                time.perf_counter() - started)
