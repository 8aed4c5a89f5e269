"""``bulk_select`` gives the answer of ``best_reference``, product by product."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.time import Time
from tests.refdata.factories import meta, rec

from obsflow.exceptions import ReferenceFileError
from obsflow.models.metadata import ExposureMeta
from obsflow.refdata.select import (
    RULES,
    RULES_VERSION,
    ProductSelectors,
    best_reference,
    bulk_select,
    exposure_start_iso,
)
from obsflow.refdata.validate import RefRecord

DETECTORS = ["SSD1", "SSD2", "SSD3"]
FILTERS = ["J", "H", "K"]
READPATTS = ["RAPID", "DEEP8"]
SUBARRAYS = ["FULL", "SUB64", "SUB32"]
USEAFTERS = ["2026-01-01T00:00:00", "2026-03-01T00:00:00", "2026-03-01T00:00:00+00:00",
             "2026-03-01T00:00:01", "2026-05-10T12:00:00", "2027-01-01T00:00:00"]
"""Equal USEAFTERs are likely; one carries a UTC offset (as ``isoformat`` writes aware times)."""


def _random_records(rng: np.random.Generator, n: int) -> list[RefRecord]:
    out = []
    for k in range(n):
        out.append(rec(
            reftype=str(rng.choice(["DARK", "FLAT"])),
            telescope="OBSFLOW-S" if rng.random() > 0.05 else "OTHER",
            instrument="SSCAM" if rng.random() > 0.05 else "OTHERCAM",
            detector=str(rng.choice(DETECTORS)),
            filter=str(rng.choice(["ANY", *FILTERS])),
            readpatt=str(rng.choice(["ANY", *READPATTS])),
            subarray=str(rng.choice(SUBARRAYS)),
            useafter=str(rng.choice(USEAFTERS)),
            delivered=str(rng.choice(["2026-02-01T00:00:00", "2026-02-02T00:00:00"])),
            name=f"f{rng.integers(0, n // 2 + 1)}",  # repeated names: the last tie-break
            path=Path(f"f{k}")))
    return out


def _random_metas(rng: np.random.Generator, n: int) -> list[ExposureMeta]:
    edges = Time(USEAFTERS[:2] + USEAFTERS[3:], format="isot", scale="utc").mjd
    second = 1.0 / 86400.0
    near = rng.choice(edges, n) + rng.choice([-second, -1e-9, 0.0, 1e-9, second / 2, second], n)
    spread = rng.uniform(61000.0, 61500.0, n)
    starts = np.where(rng.random(n) < 0.4, near, spread)  # many exactly at a USEAFTER edge
    return [meta(detector=str(rng.choice(DETECTORS)), filter=str(rng.choice(FILTERS)),
                 readpatt=str(rng.choice(READPATTS)), subarray=str(rng.choice(SUBARRAYS)),
                 telescope="OBSFLOW-S" if rng.random() > 0.02 else "OTHER",
                 expstart=float(s)) for s in starts]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bulk_equals_best_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    records = _random_records(rng, int(rng.integers(20, 120)))
    metas = _random_metas(rng, 2500)
    products = ProductSelectors.from_metas(metas)
    for reftype in ("DARK", "FLAT", "GAIN"):
        chosen = bulk_select(records, products, reftype)
        expected = []
        for m in metas:
            best = best_reference(records, m, reftype).chosen
            expected.append(-1 if best is None else next(i for i, r in enumerate(records)
                                                         if r is best))
        assert chosen.tolist() == expected, reftype
        if reftype != "GAIN":
            assert (chosen >= 0).sum() > 100 and (chosen < 0).sum() > 10  # both cases covered


def test_bulk_tricky_cases() -> None:
    records = [rec(name="full_jan"),
               rec(name="full_mar", useafter="2026-03-01T00:00:00"),
               rec(name="sub_jan", subarray="SUB64"),
               rec(name="tie_a", useafter="2026-05-01T00:00:00", delivered="2026-04-01T00:00:00"),
               rec(name="tie_b", useafter="2026-05-01T00:00:00", delivered="2026-04-01T00:00:00"),
               rec(name="deep_only", readpatt="DEEP8", useafter="2026-06-01T00:00:00"),
               rec(name="h_only", filter="H", useafter="2026-06-02T00:00:00")]
    may = Time("2026-05-01T00:00:00", scale="utc").mjd
    cases = {  # expstart, subarray, readpatt, filter -> expected name
        "exact_useafter": (may, "FULL", "RAPID", "J", "tie_b"),
        "a_ms_before": (may - 0.001 / 86400, "FULL", "RAPID", "J", "full_mar"),
        "sub_beats_later_full": (may + 1, "SUB64", "RAPID", "J", "sub_jan"),
        "other_sub_gets_full": (may + 1, "SUB32", "RAPID", "J", "tie_b"),
        "readpatt": (may + 40, "FULL", "DEEP8", "J", "deep_only"),
        "filter": (may + 40, "FULL", "RAPID", "H", "h_only"),
        "before_all": (may - 200, "FULL", "RAPID", "J", None),
    }
    metas = [meta(expstart=s, subarray=sub, readpatt=rp, filter=f)
             for s, sub, rp, f, _ in cases.values()]
    got = bulk_select(records, ProductSelectors.from_metas(metas), "DARK")
    names = [records[i].name if i >= 0 else None for i in got]
    assert names == [c[-1] for c in cases.values()]
    for m, name in zip(metas, names, strict=True):
        best = best_reference(records, m, "DARK").chosen
        assert (best.name if best else None) == name, exposure_start_iso(m)
    twins = [rec(name="twin", useafter="2026-08-01T00:00:00", path=Path(p)) for p in "ab"]
    august = ProductSelectors.from_metas([meta(expstart=may + 100)])
    assert bulk_select([*records, *twins], august, "DARK").tolist() == [len(records)]
    assert best_reference([*records, *twins], meta(expstart=may + 100), "DARK").chosen is twins[0]


def test_product_selectors_columns() -> None:
    products = ProductSelectors("OBSFLOW-S", "SSCAM", np.array(["SSD1", "SSD2"]), "J",
                                ["RAPID", "DEEP8"], "FULL", np.array([61100.0, 61101.0]))
    assert len(products) == 2 and products.filter.tolist() == ["J", "J"]  # type: ignore[union-attr]
    got = bulk_select([rec(detector="SSD2")], products, "DARK")
    assert got.tolist() == [-1, 0]
    rng = np.random.default_rng(7)
    many = ProductSelectors.from_metas(_random_metas(rng, 500))
    members = np.concatenate([m for _, m in many.groups])
    assert sorted(members.tolist()) == list(range(500))  # every product in exactly one group
    for selector, where in many.groups:
        rows = {tuple(str(getattr(many, f)[k]) for f in ("telescope", "instrument", "detector",
                "filter", "readpatt", "subarray")) for k in where}
        assert rows == {selector}
    assert len({s for s, _ in many.groups}) == len(many.groups)
    with pytest.raises(ValueError, match="detector has shape"):
        ProductSelectors("OBSFLOW-S", "SSCAM", ["SSD1"], "J", "RAPID", "FULL", [61000.0, 1.0])
    assert bulk_select([rec()], ProductSelectors.from_metas([]), "DARK").shape == (0,)


def test_bad_useafter_is_an_error() -> None:
    products = ProductSelectors.from_metas([meta()])
    with pytest.raises(ReferenceFileError, match="not an ISO UTC"):
        bulk_select([rec(useafter="2026-1-1")], products, "DARK")


def test_rules_version_names_the_rules() -> None:
    assert RULES_VERSION.startswith("sha256:") and len(RULES_VERSION) == 7 + 16
    assert any("USEAFTER" in rule for rule in RULES)
