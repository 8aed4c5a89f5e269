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
from collections import Counter
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


_COLUMNS = (Product.id, Product.product_id, Product.uuid, Product.kind, Product.version,
            Product.ref_context, Product.recipe, Product.software_version,
            Product.reference_files, Exposure.id, Exposure.obs_id, Exposure.facility_name,
            Exposure.instrument_name, Exposure.detector, Exposure.filter, Exposure.readpatt,
            Exposure.subarray, Exposure.t_min)
_NAMES = ("pk", "product_id", "uuid", "kind", "version", "context", "recipe", "software",
          "reference_files", "exposure_pk", "obs_id", "telescope", "instrument", "detector",
          "filter", "readpatt", "subarray", "expstart")


def _candidates(session: Session, criteria: PlanCriteria) -> dict[str, np.ndarray]:
    """The current products under consideration, as columns (numpy arrays)."""
    kinds = [criteria.kind] if criteria.kind else list(REPROCESSABLE_KINDS)
    query = (select(*_COLUMNS).join(Exposure, Exposure.id == Product.exposure_id)
             .where(Product.is_latest.is_(True), Product.kind.in_(kinds)))
    if criteria.program is not None:
        query = query.where(Exposure.program == criteria.program)
    if criteria.since is not None:
        query = query.where(Exposure.t_min >= criteria.since)
    rows = session.execute(query.order_by(Product.id)).all()
    if not rows:
        return {name: np.array([], dtype=object) for name in _NAMES}
    return {name: np.array(values, dtype=np.float64 if name == "expstart" else object)
            for name, values in zip(_NAMES, zip(*rows, strict=True), strict=True)}


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


def _recorded_names(cols: dict[str, np.ndarray], where: np.ndarray,
                    reftype: str) -> np.ndarray:
    """File names of ``reftype`` that products recorded (no context: by what they wrote down)."""
    import json

    out = []
    for text in cols["reference_files"][where]:
        found = dict(str(item).partition("=")[::2] for item in json.loads(text or "[]"))
        out.append(found.get(reftype, ""))
    return np.array(out, dtype=object)


def _groups(cols: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Row indices of the products sharing recorded context, recipe and kind."""
    keys = np.array([f"{c}\x1f{r}\x1f{k}" for c, r, k in zip(
        cols["context"], cols["recipe"], cols["kind"], strict=True)])
    if keys.size == 0:
        return []
    _, inverse = np.unique(keys, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(inverse))])
    return [order[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _reference_reasons(session: Session, cols: dict[str, np.ndarray], target: RefContext,
                       reasons: list[list[dict[str, Any]]]) -> None:
    """Add a ``reference`` reason to every product whose selection differs under ``target``."""
    loaded: dict[int, RefContext] = {target.number: target}
    for where in _groups(cols):
        first = where[0]
        context, recipe, kind = cols["context"][first], cols["recipe"][first], cols["kind"][first]
        selectors = _selectors(cols, where)
        old = None
        if context is not None:
            old = loaded.get(int(context)) or load_context(session, int(context))
            loaded[int(context)] = old
        for reftype in recipe_reftypes(str(recipe), str(kind)):
            new_ids = select_file_ids(target, selectors, reftype)
            if old is not None:
                old_ids = select_file_ids(old, selectors, reftype)
                for k in np.flatnonzero(new_ids != old_ids):
                    reasons[where[k]].append({
                        "type": "reference", "reftype": reftype,
                        "old": _name_of(old, int(old_ids[k])),
                        "new": _name_of(target, int(new_ids[k]))})
                continue
            recorded = _recorded_names(cols, where, reftype)
            for j in range(len(new_ids)):
                new = _name_of(target, int(new_ids[j]))
                if (new or "") != recorded[j]:
                    reasons[where[j]].append({"type": "reference", "reftype": reftype,
                                              "old": recorded[j] or None, "new": new})


def _downstream(session: Session, affected: set[int]) -> dict[int, int]:
    """Current products made (transitively) from ``affected`` ones: product pk -> input pk."""
    found: dict[int, int] = {}
    frontier = sorted(affected)
    while frontier:
        batch: list[int] = []
        for start in range(0, len(frontier), _CHUNK):
            rows = session.execute(
                select(ProductInput.product_pk, ProductInput.input_pk)
                .join(Product, Product.id == ProductInput.product_pk)
                .where(ProductInput.input_pk.in_(frontier[start:start + _CHUNK]),
                       Product.is_latest.is_(True))).all()
            for product, source in rows:
                if product not in affected and product not in found:
                    found[product] = source
                    batch.append(product)
        frontier = batch
    return found


def _affected(cols: dict[str, np.ndarray], k: int, reasons: list[dict[str, Any]]
              ) -> AffectedProduct:
    return AffectedProduct(int(cols["pk"][k]), str(cols["product_id"][k]), str(cols["uuid"][k]),
                           str(cols["kind"][k]), int(cols["version"][k]),
                           int(cols["exposure_pk"][k]), str(cols["obs_id"][k]),
                           str(cols["instrument"][k]), str(cols["detector"][k]), reasons)


def _downstream_products(session: Session, found: dict[int, int],
                         names: dict[int, str]) -> list[AffectedProduct]:
    out = []
    pks = sorted(found)
    for start in range(0, len(pks), _CHUNK):
        rows = session.execute(select(*_COLUMNS).join(Exposure, Exposure.id == Product.exposure_id)
                               .where(Product.id.in_(pks[start:start + _CHUNK]))).all()
        for row in rows:
            cols = {n: np.array([v], dtype=object) for n, v in zip(_NAMES, row, strict=True)}
            source = found[int(row[0])]
            out.append(_affected(cols, 0, [{"type": "input", "input": names.get(source, "")}]))
            names[int(row[0])] = str(row[1])
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
        reasons: list[list[dict[str, Any]]] = [[] for _ in range(n)]
        target = None
        if criteria.compares_context:
            target = (load_context(session, criteria.context) if criteria.context is not None
                      else newest_context(session))
            _reference_reasons(session, cols, target, reasons)
        if criteria.software is not None:
            for k in np.flatnonzero(cols["software"] != criteria.software):
                reasons[k].append({"type": "software", "old": str(cols["software"][k]),
                                   "new": criteria.software})
        if criteria.recipe is not None:
            for k in np.flatnonzero(cols["recipe"] == criteria.recipe):
                reasons[k].append({"type": "recipe", "recipe": criteria.recipe})
        products = [_affected(cols, k, why) for k, why in enumerate(reasons) if why]
        names = {p.pk: p.product_id for p in products}
        products += _downstream_products(session, _downstream(session, set(names)), names)
    return Plan(criteria, None if target is None else target.number, products, n,
                time.perf_counter() - started)
