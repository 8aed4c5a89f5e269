"""Context diffs and affected products, on a real registry (SQLite and PostgreSQL)."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import datetime
from pathlib import Path

import numpy as np
from astropy.time import Time
from tests.refdata.factories import Registry, meta, variant

from obsflow.models.metadata import ExposureMeta
from obsflow.refdata.compare import (
    RefChange,
    affected_mask,
    affected_reftypes,
    diff_contexts,
    select_file_ids,
)
from obsflow.refdata.contexts import RefContext, load_context
from obsflow.refdata.select import ProductSelectors, best_reference
from obsflow.refdata.validate import REFTYPES

FEB, MAR = datetime(2026, 2, 1), datetime(2026, 3, 1)


def _two_contexts(registry: Registry, base_refs: dict[str, Path],
                  tmp_path: Path) -> tuple[RefContext, RefContext, dict[str, str]]:
    """1: SSD1's base files; 2: + an April DARK and a re-made J flat (same USEAFTER)."""
    first = registry.deliver([p for k, p in base_refs.items() if k.startswith("ssd1_")], now=FEB)
    dark = variant(base_refs["ssd1_dark"], tmp_path / "dark_april.fits",
                   USEAFTER="2026-04-01T00:00:00")
    flat = variant(base_refs["ssd1_flatj"], tmp_path / "flat_j_v2.fits", DESCRIP="re-made")
    second = registry.deliver([dark, flat], now=MAR)
    names = {"dark_april": second.records[0].name, "flat_j_v2": second.records[1].name}
    names.update({k: r.name for k, r in zip(
        [k for k in base_refs if k.startswith("ssd1_")], first.records, strict=True)})
    return first.context, second.context, names


def test_diff_lists_exactly_what_changed(registry: Registry, base_refs: dict[str, Path],
                                         tmp_path: Path) -> None:
    one, two, names = _two_contexts(registry, base_refs, tmp_path)
    with registry.session() as session:  # loaded back from the database
        one, two = load_context(session, 1), load_context(session, 2)
    diff = diff_contexts(one, two)
    assert (diff.old, diff.new) == (1, 2) and not diff.rules_changed
    assert {r.name for r in diff.added} == {names["dark_april"], names["flat_j_v2"]}
    assert diff.removed == ()
    kinds = [(c.kind, c.record.reftype, c.old.name if c.old else None,
              c.new.name if c.new else None) for c in diff.changes]
    assert kinds == [("added", "DARK", None, names["dark_april"]),
                     ("replaced", "FLAT", names["ssd1_flatj"], names["flat_j_v2"])]
    back = diff_contexts(two, one)
    assert {r.name for r in back.removed} == {names["dark_april"], names["flat_j_v2"]}
    assert [c.kind for c in back.changes] == ["removed", "replaced"]
    assert back.changes[1].new is not None and back.changes[1].new.name == names["ssd1_flatj"]
    assert diff_contexts(two, two).changes == ()
    as_json = diff.as_dict()
    assert as_json["changes"][0]["useafter"] == "2026-04-01T00:00:00"
    assert as_json["rules"] == {"old": one.rules_version, "new": two.rules_version,
                                "changed": False}
    other_rules = dataclasses.replace(two, rules_version="sha256:0000000000000000")
    assert diff_contexts(one, other_rules).rules_changed


def _exposures() -> list[ExposureMeta]:
    """SSD1/SSD2 x RAPID/DEEP8 x J/H x 9 starts, 15 days apart from 2026-02-15."""
    starts = np.linspace(Time("2026-02-15").mjd, Time("2026-06-15").mjd, 9)
    return [meta(detector=d, readpatt=rp, filter=f, expstart=float(s), exposure=k)
            for k, (d, rp, f, s) in enumerate(itertools.product(
                ["SSD1", "SSD2"], ["RAPID", "DEEP8"], ["J", "H"], starts))]


def test_affected_by_a_new_dark(registry: Registry, base_refs: dict[str, Path],
                                tmp_path: Path) -> None:
    registry.deliver(list(base_refs.values()), now=FEB)
    dark = variant(base_refs["ssd1_dark"], tmp_path / "dark_rapid.fits", READPATT="RAPID",
                   USEAFTER="2026-04-01T00:00:00")
    registry.deliver([dark], now=MAR)
    with registry.session() as session:
        old, new = load_context(session, 1), load_context(session, 2)
    april = Time("2026-04-01T00:00:00", scale="utc").mjd
    exposures = _exposures()
    affected = 0
    for m in exposures:
        changes = affected_reftypes(m, old, new, sorted(REFTYPES))
        if m.detector == "SSD1" and m.readpatt == "RAPID" and m.expstart >= april:
            before = best_reference(old.records, m, "DARK").chosen
            assert before is not None
            assert changes == [RefChange("DARK", before.name, new.records[-1].name)]
            affected += 1
        else:
            assert changes == [], (m.detector, m.readpatt, m.expstart)
    assert affected == 2 * 6  # 2 filters x the 6 starts from April 1 (exactly at USEAFTER) on
    products = ProductSelectors.from_metas(exposures)
    mask = affected_mask(products, old, new, sorted(REFTYPES))
    per_product = [bool(affected_reftypes(m, old, new, sorted(REFTYPES))) for m in exposures]
    assert np.logical_or.reduce(list(mask.values())).tolist() == per_product
    assert not any(mask[t].any() for t in REFTYPES if t != "DARK")
    ids = select_file_ids(new, products, "DARK")
    chosen = [best_reference(new.records, m, "DARK").chosen for m in exposures]
    by_name = dict(zip((r.name for r in new.records), new.file_ids, strict=True))
    assert ids.tolist() == [by_name[c.name] if c else -1 for c in chosen]
