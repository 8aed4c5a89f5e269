"""Numbered reference contexts on a real registry (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from tests.refdata.factories import Registry, meta, variant

from obsflow.exceptions import (
    ContextNotFoundError,
    ObsflowError,
    RefContextError,
    ReferenceFileError,
)
from obsflow.refdata.contexts import (
    BACKFILL_DESCRIPTION,
    list_contexts,
    load_context,
    newest_context,
    operational_context,
    pin_context,
    pinned_number,
)
from obsflow.refdata.registry import SiteRefs, deliver
from obsflow.refdata.select import RULES_VERSION, best_reference
from obsflow.refdata.tables import RefContextFile, RefContextRow, ReferenceFile


def _three_deliveries(registry: Registry, base_refs: dict[str, Path],
                      tmp_path: Path) -> list[set[str]]:
    """Context 1: SSD1's files; 2: SSD2's; 3: a new SSD1 DARK. Returns each context's stored names."""
    ssd1 = [p for k, p in base_refs.items() if k.startswith("ssd1_")]
    ssd2 = [p for k, p in base_refs.items() if k.startswith("ssd2_")]
    dark = variant(base_refs["ssd1_dark"], tmp_path / "dark_march.fits",
                   USEAFTER="2026-03-01T00:00:00")
    out = []
    for batch in (ssd1, ssd2, [dark]):
        done = registry.deliver(batch, description=f"{len(batch)} files")
        out.append({r.name for r in done.context.records})
    return out


def test_numbered_per_delivery(registry: Registry, base_refs: dict[str, Path],
                               tmp_path: Path) -> None:
    stored = _three_deliveries(registry, base_refs, tmp_path)
    n_ssd1 = sum(k.startswith("ssd1_") for k in base_refs)
    with registry.session() as session:
        summary = list_contexts(session)
        assert [c.number for c in summary] == [1, 2, 3]
        assert [c.parent for c in summary] == [None, 1, 2]
        assert [c.n_files for c in summary] == [n_ssd1, len(base_refs), len(base_refs) + 1]
        assert [c.added for c in summary] == [n_ssd1, len(base_refs) - n_ssd1, 1]
        assert [c.description for c in summary] == [f"{n_ssd1} files",
                                                    f"{len(base_refs) - n_ssd1} files", "1 files"]
        assert {c.rules_version for c in summary} == {RULES_VERSION}
        newest = newest_context(session)
        assert newest.number == 3 and len(newest.file_ids) == newest.n_files
        assert stored[0] < stored[1] < stored[2]
        total = session.scalar(select(func.count()).select_from(RefContextFile))
        assert total == sum(c.n_files for c in summary)


def test_single_file_deliver_makes_a_context(registry: Registry,
                                             base_refs: dict[str, Path]) -> None:
    with registry.session() as session, session.begin():
        rec = deliver(session, registry.refs_dir, base_refs["ssd1_gain"], registry.profile)
        assert (registry.refs_dir / rec.name).is_file()
    with registry.session() as session:
        context = newest_context(session, refs_dir=registry.refs_dir)
        assert context.number == 1 and [r.name for r in context.records] == [rec.name]
        assert context.records[0].path == registry.refs_dir / rec.name


def test_earlier_context_never_changes(registry: Registry, base_refs: dict[str, Path],
                                       tmp_path: Path) -> None:
    stored = _three_deliveries(registry, base_refs, tmp_path)
    with registry.session() as session:
        first = load_context(session, 1)
        assert {r.name for r in first.records} == stored[0]
        assert all(r.detector == "SSD1" for r in first.records)
        assert {r.name for r in load_context(session, 2).records} == stored[1]
        row = session.get(RefContextRow, 1)
        assert row is not None
        row.description = "rewritten"
        with pytest.raises(RefContextError, match="immutable"):
            session.flush()
        session.rollback()
        link = session.scalars(select(RefContextFile).where(RefContextFile.context == 1)).first()
        session.delete(link)
        with pytest.raises(RefContextError, match="immutable"):
            session.flush()
        session.rollback()
    with registry.session() as session:
        assert load_context(session, 1).description != "rewritten"
        assert {r.name for r in load_context(session, 1).records} == stored[0]


def test_refused_delivery_makes_no_context(registry: Registry, base_refs: dict[str, Path],
                                           tmp_path: Path) -> None:
    first = registry.deliver([base_refs["ssd1_dark"]])
    fresh = variant(base_refs["ssd1_gain"], tmp_path / "gain2.fits", DESCRIP="second gain")
    with pytest.raises(ReferenceFileError, match="already delivered"):
        registry.deliver([fresh, base_refs["ssd1_dark"]])
    with pytest.raises(ReferenceFileError, match="same delivery"):
        registry.deliver([fresh, fresh])
    with pytest.raises(ReferenceFileError, match="at least one"):
        registry.deliver([])
    with registry.session() as session:
        assert [c.number for c in list_contexts(session)] == [1]
        assert session.scalar(select(func.count()).select_from(ReferenceFile)) == 1
    # nothing of a refused delivery was copied into the refs folder
    assert [p.name for p in registry.refs_dir.iterdir()] == [first.records[0].name]


def test_unknown_context_names_the_range(registry: Registry, base_refs: dict[str, Path]) -> None:
    with registry.session() as session:
        with pytest.raises(ContextNotFoundError, match="no reference contexts yet"):
            operational_context(session)
    registry.deliver([base_refs["ssd1_dark"]])
    registry.deliver([base_refs["ssd1_gain"]])
    with registry.session() as session:
        for bad in (0, 3, -1):
            with pytest.raises(ContextNotFoundError, match="numbered 1 to 2") as info:
                load_context(session, bad)
            assert isinstance(info.value, LookupError) and isinstance(info.value, ObsflowError)
        with pytest.raises(ContextNotFoundError, match="cannot pin reference context 7"):
            pin_context(session, 7)


def test_pin_and_operational(registry: Registry, base_refs: dict[str, Path],
                             tmp_path: Path) -> None:
    _three_deliveries(registry, base_refs, tmp_path)
    with registry.session() as session, session.begin():
        assert pinned_number(session) is None and operational_context(session).number == 3
        assert pin_context(session, 1) is None
    with registry.session() as session:
        assert pinned_number(session) == 1 and operational_context(session).number == 1
    registry.deliver([variant(base_refs["ssd2_dark"], tmp_path / "d2.fits", DESCRIP="x")])
    with registry.session() as session, session.begin():
        assert operational_context(session).number == 1
        assert newest_context(session).number == 4
        assert pin_context(session, None) == 1
    with registry.session() as session:
        assert pinned_number(session) is None and operational_context(session).number == 4


def test_site_refs_use_a_context(registry: Registry, base_refs: dict[str, Path],
                                 tmp_path: Path) -> None:
    url = registry.engine.url.render_as_string(hide_password=False)
    empty = SiteRefs(url, registry.refs_dir)
    assert empty.records() == [] and empty.context_number is None
    stored = _three_deliveries(registry, base_refs, tmp_path)
    operational = SiteRefs(url, registry.refs_dir)
    assert {r.name for r in operational.records()} == stored[2]
    assert operational.context_number == 3
    first = SiteRefs(url, registry.refs_dir, context=1)
    records = first.records()
    assert {r.name for r in records} == stored[0] and first.context_number == 1
    assert all(r.path.parent == registry.refs_dir and r.path.is_file() for r in records)
    with registry.session() as session, session.begin():
        pin_context(session, 2)
    assert {r.name for r in operational.records()} == stored[1]
    assert operational.context_number == 2
    with pytest.raises(ContextNotFoundError, match="1 to 3"):
        SiteRefs(url, registry.refs_dir, context=9).records()


def test_best_differs_by_context(registry: Registry, base_refs: dict[str, Path],
                                 tmp_path: Path) -> None:
    _three_deliveries(registry, base_refs, tmp_path)
    june = meta()  # SSD1, starts 2026-06-28: the March DARK of context 3 applies
    with registry.session() as session:
        in_2 = best_reference(load_context(session, 2).records, june, "DARK").chosen
        in_3 = best_reference(load_context(session, 3).records, june, "DARK").chosen
    assert in_2 is not None and in_3 is not None
    assert in_2.useafter == "2026-01-01T00:00:00" and in_3.useafter == "2026-03-01T00:00:00"
    assert in_3.name.startswith("dark_march_")


def test_backfill_of_an_older_site(registry: Registry, base_refs: dict[str, Path]) -> None:
    old = [base_refs["ssd1_dark"], base_refs["ssd1_gain"]]
    with registry.session() as session, session.begin():  # as a site before contexts did it
        for k, path in enumerate(old):
            session.add(ReferenceFile(
                reftype="DARK" if k == 0 else "GAIN", telescope="OBSFLOW-S", instrument="SSCAM",
                detector="SSD1", filter="ANY", readpatt="ANY", subarray="FULL",
                useafter="2026-01-01T00:00:00", delivered=datetime(2026, 1, 2, 3, 4, 5),
                original_name=path.name, stored_name=f"old{k}.fits", sha256=f"{k:064d}",
                pedigree="", description=""))
    with registry.session() as session, session.begin():
        first = load_context(session, None)
        assert first.number == 1 and first.description == BACKFILL_DESCRIPTION
        assert {r.name for r in first.records} == {"old0.fits", "old1.fits"}
    done = registry.deliver([base_refs["ssd1_readnoise"]])
    assert done.context.number == 2 and done.context.parent == 1
    with registry.session() as session:
        assert load_context(session, 1).n_files == 2 and load_context(session, 2).n_files == 3
