"""Registration of per-integration stacks, and of one product by many writers at once."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from astropy.io import fits
from sqlalchemy import func, select

from obsflow.archive.register import register_product
from obsflow.archive.schema import Exposure, Product

from .conftest import make_archive
from .factories import _wcs, meta


def _rateints(folder: Path) -> Path:
    m = meta(nints=3)
    primary = fits.PrimaryHDU()
    m.to_header(primary.header)
    stack = np.random.default_rng(1).normal(5.0, 1.0, (3, m.subsize2, m.subsize1)).astype(np.float32)
    sci = fits.ImageHDU(stack, name="SCI")
    sci.header.update(_wcs(m))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{m.basename}_rateints.fits"
    fits.HDUList([primary, sci]).writeto(path, checksum=True)
    return path


def test_rateints_stack_is_registered_with_a_preview(archive, tmp_path) -> None:
    record = register_product(archive, _rateints(tmp_path / "in"))
    assert record.created
    with archive.session() as s:
        row = s.scalars(select(Product).where(Product.kind == "rateints")).one()
        assert row.dataproduct_type == "cube" and row.calib_level == 2
        assert row.previews


def test_concurrent_registration_of_one_product(db_url, tmp_path) -> None:
    path = _rateints(tmp_path / "in")
    archives = [make_archive(db_url, tmp_path / "store") for _ in range(4)]
    errors: list[BaseException] = []

    def work(arch) -> None:  # type: ignore[no-untyped-def]
        try:
            register_product(arch, path)
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(a,)) for a in archives]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    with archives[0].session() as s:
        assert s.scalar(select(func.count()).select_from(Exposure)) == 1
        assert s.scalar(select(func.count()).select_from(Product)) == 1
    for a in archives:
        a.close()
