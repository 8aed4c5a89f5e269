"""What changed between two reference contexts, and which products it affects.

:func:`diff_contexts` lists the files one context has and the other not,
and the changes per *slot*: a slot is a reference type with its selectors
(telescope, instrument, detector, filter, readout pattern, subarray) and
USEAFTER.  Within a slot only the latest delivery can ever be chosen, so a
slot whose winner differs is ``replaced``, a slot only in the newer context
``added`` and one only in the older ``removed``.

:func:`affected_reftypes` is CRDS's "affected datasets" for one product:
the reference types whose best file differs between the two contexts.
:func:`affected_mask` answers the same for many products at once
(:func:`obsflow.refdata.select.bulk_select`), to plan a reprocessing.
Both contexts are judged with the selection rules of this obsflow; a
change of rules shows as ``rules_changed`` in the diff.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from obsflow.models.metadata import ExposureMeta
from obsflow.refdata.contexts import RefContext
from obsflow.refdata.select import ProductSelectors, best_reference, bulk_select
from obsflow.refdata.validate import RefRecord

__all__ = ["ContextDiff", "FileChange", "RefChange", "affected_mask", "affected_reftypes",
           "diff_contexts", "select_file_ids"]

@dataclass(frozen=True)
class FileChange:
    """One slot (reftype + selectors + USEAFTER) whose file differs between two contexts.

    ``kind`` is ``added`` (``old`` None), ``removed`` (``new`` None) or ``replaced``.
    """

    kind: str
    old: RefRecord | None
    new: RefRecord | None

    @property
    def record(self) -> RefRecord:
        """The newer file if there is one, else the older (for the slot's selectors)."""
        rec = self.new if self.new is not None else self.old
        assert rec is not None
        return rec

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: kind, the slot's selectors and both file names."""
        r = self.record
        return {"kind": self.kind, "reftype": r.reftype, "instrument": r.instrument,
                "detector": r.detector, "filter": r.filter, "readpatt": r.readpatt,
                "subarray": r.subarray, "useafter": r.useafter,
                "old": self.old.name if self.old else None,
                "new": self.new.name if self.new else None}


@dataclass(frozen=True)
class ContextDiff:
    """Differences from context ``old`` to context ``new``.

    ``added`` and ``removed`` are the files only in ``new`` / only in
    ``old``; ``changes`` the slots that changed, sorted by reftype and
    selectors.
    """

    old: int
    new: int
    old_rules: str
    new_rules: str
    added: tuple[RefRecord, ...]
    removed: tuple[RefRecord, ...]
    changes: tuple[FileChange, ...]

    @property
    def rules_changed(self) -> bool:
        """Whether the two contexts were made under different selection rules."""
        return self.old_rules != self.new_rules

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (``obsflow refs diff --json``)."""
        return {"old": self.old, "new": self.new,
                "rules": {"old": self.old_rules, "new": self.new_rules,
                          "changed": self.rules_changed},
                "added": [r.name for r in self.added], "removed": [r.name for r in self.removed],
                "changes": [c.as_dict() for c in self.changes]}


@dataclass(frozen=True)
class RefChange:
    """A reference type whose chosen file differs between two contexts (None: no file)."""

    reftype: str
    old_name: str | None
    new_name: str | None


def _slot(r: RefRecord) -> tuple[str, ...]:
    return (r.reftype, r.telescope, r.instrument, r.detector, r.filter, r.readpatt,
            r.subarray, r.useafter)


def _winners(records: Iterable[RefRecord]) -> dict[tuple[str, ...], RefRecord]:
    """Per slot, the file the rules would choose over the others of its slot."""
    out: dict[tuple[str, ...], RefRecord] = {}
    for r in records:
        best = out.get(_slot(r))
        if best is None or (r.delivered, r.name) > (best.delivered, best.name):
            out[_slot(r)] = r
    return out


def diff_contexts(a: RefContext, b: RefContext) -> ContextDiff:
    """What changed from context ``a`` to context ``b`` (files, slots, rules)."""
    ids_a, ids_b = set(a.file_ids), set(b.file_ids)
    added = tuple(r for i, r in zip(b.file_ids, b.records, strict=True) if i not in ids_a)
    removed = tuple(r for i, r in zip(a.file_ids, a.records, strict=True) if i not in ids_b)
    win_a, win_b = _winners(a.records), _winners(b.records)
    changes = []
    for slot in sorted(win_a.keys() | win_b.keys()):
        old, new = win_a.get(slot), win_b.get(slot)
        if old is None:
            changes.append(FileChange("added", None, new))
        elif new is None:
            changes.append(FileChange("removed", old, None))
        elif old.name != new.name:
            changes.append(FileChange("replaced", old, new))
    return ContextDiff(a.number, b.number, a.rules_version, b.rules_version, added, removed,
                       tuple(changes))


def affected_reftypes(meta: ExposureMeta, old: RefContext, new: RefContext,
                      reftypes: Iterable[str]) -> list[RefChange]:
    """The reference types whose best file for ``meta`` differs between ``old`` and ``new``.

    Parameters
    ----------
    meta : ExposureMeta
        The product's metadata.
    old, new : RefContext
        The context the product was calibrated with, and the candidate one.
    reftypes : iterable of str
        The reference types the product's recipe uses.

    Returns
    -------
    list of RefChange
        One per changed reftype, in the order of ``reftypes`` (empty: the
        product would be calibrated with the same files).
    """
    out = []
    for reftype in reftypes:
        before = best_reference(old.records, meta, reftype).chosen
        after = best_reference(new.records, meta, reftype).chosen
        names = (before.name if before else None, after.name if after else None)
        if names[0] != names[1]:
            out.append(RefChange(reftype, *names))
    return out


def select_file_ids(context: RefContext, products: ProductSelectors,
                    reftype: str) -> np.ndarray:
    """Registry id of the file of ``reftype`` chosen in ``context`` per product (-1: none).

    The bulk form of :func:`~obsflow.refdata.select.best_reference`: int64,
    shape (N,), the same choice product by product.
    """
    ids = np.array((*context.file_ids, -1), dtype=np.int64)
    return ids[bulk_select(context.records, products, reftype)]


def affected_mask(products: ProductSelectors, old: RefContext, new: RefContext,
                  reftypes: Sequence[str]) -> dict[str, np.ndarray]:
    """Per reftype, which products would get another file under ``new`` than under ``old``.

    Returns
    -------
    dict of str to numpy.ndarray
        bool, shape (N,), per reftype of ``reftypes``; a product needs
        reprocessing where any of its recipe's reftypes is True.
    """
    return {t: select_file_ids(old, products, t) != select_file_ids(new, products, t)
            for t in reftypes}
