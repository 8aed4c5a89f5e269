"""Registrations racing each other: version numbers, content-addressed store keys, store deletes."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import fsspec
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from obsflow.archive.context import Archive, ArchiveSettings
from obsflow.archive.register import ProductRecord, register_product
from obsflow.archive.schema import Exposure, Preview, Product
from obsflow.archive.store import ProductStore
from obsflow.fileio import sha256_file
from obsflow.models.metadata import ExposureMeta
from obsflow.profiles import load_profile

from .factories import meta, write_product

PIVOT_UM = {"F150W": 1.50, "F200W": 1.99, "F277W": 2.76, "F444W": 4.42}
"""The four filters of the webb_like WIRCAM instrument and their pivot wavelengths."""

PROGRAM, TARGET = "01234", "DEEP-FIELD-1"


def _archive(url: str, store_root: Path) -> Archive:
    """An archive whose profile knows four filters (webb_like), so wavelengths order them."""
    settings = ArchiveSettings(store=ProductStore(store_root), default_exclusive_months=6,
                               profile=load_profile("webb_like"))
    return Archive.from_url(url, settings)


def _wircam(flt: str, exposure: int) -> ExposureMeta:
    return meta(instrument="WIRCAM", detector="WRA1", filter=flt, exposure=exposure,
                exposure_id=200 + exposure)


def _inputs(folder: Path) -> list[Path]:
    """Seven products of one target in four filters.

    F200W comes in two versions of the same exposure (different bytes), F444W
    also as an ``i2d`` (calibration level 3, so it must win its filter), and
    F150W has a second exposure.
    """
    paths = []
    for k, flt in enumerate(PIVOT_UM, start=1):
        paths.append(write_product(folder / "a", _wircam(flt, k), kind="cal", seed=k))
    paths.append(write_product(folder / "b", _wircam("F200W", 2), kind="cal", seed=99))
    paths.append(write_product(folder / "a", _wircam("F444W", 4), kind="i2d", seed=7))
    paths.append(write_product(folder / "a", _wircam("F150W", 5), kind="cal", seed=8))
    return paths


def _register_in_threads(url: str, store: Path, work: list[list[Path]]) -> list[ProductRecord]:
    """Each list of files registered by its own thread through its own Archive, all at once."""
    archives = [_archive(url, store) for _ in work]
    barrier = threading.Barrier(len(work))
    records: list[ProductRecord] = []
    errors: list[BaseException] = []

    def run(arch: Archive, paths: list[Path]) -> None:
        try:
            barrier.wait(timeout=30)
            for path in paths:
                records.append(register_product(arch, path))
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(a, p)) for a, p in zip(archives, work, strict=True)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
    finally:
        for a in archives:
            a.close()
    assert errors == []
    return records


def _best_by_filter(session: Session) -> dict[str, Product]:
    """For each filter, the latest version of highest calibration level, then the newest."""
    best: dict[str, Product] = {}
    rows = session.execute(select(Product, Exposure).join(
        Exposure, Product.exposure_id == Exposure.id)).all()
    for product, exposure in rows:
        if not product.is_latest or product.dataproduct_type != "image":
            continue
        rank = (product.calib_level, product.created, product.id)
        old = best.get(exposure.filter)
        if old is None or rank > (old.calib_level, old.created, old.id):
            best[exposure.filter] = product
    return best


def test_concurrent_registrations_number_versions_and_store_once(db_url: str,
                                                                 tmp_path: Path) -> None:
    paths = _inputs(tmp_path / "in")
    store = tmp_path / "store"
    work = [paths[i::4] for i in range(4)]
    records = _register_in_threads(db_url, store, work)
    assert len(records) == len(paths) and all(r.created for r in records)

    with _archive(db_url, store) as arch, arch.session() as s:
        products = s.scalars(select(Product)).all()
        assert len(products) == len(paths)
        # the two F200W versions: numbered 1 and 2, exactly one is the latest
        f200w = s.scalars(select(Product).join(Exposure, Product.exposure_id == Exposure.id)
                          .where(Exposure.filter == "F200W")).all()
        assert sorted(p.version for p in f200w) == [1, 2]
        assert [p.version for p in f200w if p.is_latest] == [2]

        best = _best_by_filter(s)
        assert set(best) == set(PIVOT_UM)
        assert best["F444W"].kind == "i2d"
        assert list(store.rglob("*.part")) == []

        # every product stored once under the key of its reference, holding its bytes
        sources = {sha256_file(p): p for p in paths}
        assert set(sources) == {p.sha256 for p in products}
        for product in products:
            exposure = s.get(Exposure, product.exposure_id)
            assert exposure is not None
            assert product.path == (f"{product.run}/{exposure.program}/{exposure.obs_id}/"
                                    f"{product.uuid[:12]}/{product.filename}")
            assert product.filename == sources[product.sha256].name
            assert arch.settings.store.sha256(product.path) == product.sha256
        previews = s.scalars(select(Preview)).all()
        assert len(previews) == 3 * len(paths)
        for preview in previews:
            owner = next(p for p in products if p.id == preview.product_pk)
            assert preview.path.startswith(f"previews/{owner.product_id.rsplit('_v', 1)[0]}_"
                                           f"{owner.sha256[:16]}.")
            assert arch.settings.store.exists(preview.path)
        assert len({p.path for p in previews}) == len(previews)


@pytest.mark.parametrize("kind", ["local", "memory"])
def test_store_delete_removes_a_key_and_ignores_a_missing_one(kind: str, tmp_path: Path) -> None:
    root = str(tmp_path / "store") if kind == "local" else f"memory://obsflow-{uuid.uuid4().hex}"
    store = ProductStore(root)
    try:
        store.put_bytes(b"one", "previews/a.png")
        store.put_bytes(b"two", "previews/b.png")
        assert store.is_local == (kind == "local")
        store.delete("previews/a.png")
        assert not store.exists("previews/a.png")
        assert store.read_bytes("previews/b.png") == b"two"
        store.delete("previews/a.png")  # gone already: no error
        store.delete("never/there.png")
        assert store.exists("previews/b.png")
    finally:
        if kind == "memory":
            fs = fsspec.filesystem("memory")
            fs.rm(root.removeprefix("memory://"), recursive=True)
