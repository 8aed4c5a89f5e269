"""The ASDF extension every FITS product carries, read as the JWST tools read it."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from tests.archive.factories import meta

from obsflow.fileio import Written, sha256_file
from obsflow.models.asdfmeta import ASDF_EXTNAME, KEYWORD_PATHS
from obsflow.models.identity import ProductRef
from obsflow.models.level1 import Level1, write_uncal_hashed
from obsflow.models.level2 import (
    CalImage,
    RateImage,
    RateInts,
    RateIntsWriter,
    write_cal,
    write_rate,
    write_rateints,
)
from obsflow.models.pointing import detector_wcs
from obsflow.models.provenance import Provenance, StepRecord
from obsflow.stage3.catalog import write_segmentation
from obsflow.stage3.product import write_i2d
from obsflow.stage3.resample import I2DArrays

META = meta(nints=2, subsize1=24, subsize2=16)
WCS = detector_wcs(META.ra_v1, META.dec_v1, META.pa_v3, (0.0, 0.0, 0.0), 0.5,
                   (24, 16, 1, 1, 24, 16))
PROV = Provenance(run="r1", software="obsflow-test", recipe="image2",
                  steps=(StepRecord("flat_field", "COMPLETE", {}),))


def _ref(kind: str) -> ProductRef:
    return ProductRef.derived(kind, META.data_id, "r1", "origin")


def _arrays(shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    sci = rng.normal(5.0, 1.0, shape).astype(np.float32)
    return {"sci": sci, "err": np.abs(sci) * 0.1, "dq": (sci > 6).astype(np.uint32) * 4,
            "var_poisson": sci * 0.01, "var_rnoise": np.full(shape, 0.02, np.float32)}


def _uncal(path: Path) -> Written:
    cube = np.random.default_rng(2).integers(0, 60000, (2, 3, 16, 24), dtype=np.uint16)
    return write_uncal_hashed(path, Level1(cube, META, wcs=WCS, ref=_ref("uncal")))


def _rate(path: Path) -> Written:
    return write_rate(path, RateImage(**_arrays((16, 24)), meta=META, ref=_ref("rate"),
                                      provenance=PROV, wcs=WCS))


def _cal(path: Path) -> Written:
    return write_cal(path, CalImage(**_arrays((16, 24)), meta=META, ref=_ref("cal"),
                                    provenance=PROV, wcs=WCS,
                                    header_extra={"BKGLEVEL": 0.5}))


def _rateints(path: Path) -> Written:
    return write_rateints(path, RateInts(**_arrays((2, 16, 24)), meta=META,
                                         ref=_ref("rateints"), provenance=PROV))


def _i2d(path: Path) -> Written:
    a = _arrays((16, 24))
    arrays = I2DArrays(sci=a["sci"], err=a["err"], wht=np.ones((16, 24), np.float32),
                       con=np.ones((1, 16, 24), np.int32), var_poisson=a["var_poisson"],
                       var_rnoise=a["var_rnoise"], var_flat=a["var_rnoise"], wcs=WCS, n_inputs=1)
    return write_i2d(path, arrays, META, _ref("i2d"), PROV, {"PIXFRAC": 1.0})


def _segm(path: Path) -> Written:
    segm = np.zeros((16, 24), np.int32)
    segm[4:8, 5:9] = 1
    return write_segmentation(path, segm, WCS, META, _ref("segm"), PROV)


WRITERS: dict[str, Callable[[Path], Written]] = {
    "uncal": _uncal, "rate": _rate, "rateints": _rateints, "cal": _cal, "i2d": _i2d,
    "segm": _segm}


def _embedded_tree(hdul: fits.HDUList) -> dict:
    """The ASDF tree as jwst/stdatamodels reach it: the ``ASDF`` extension's one cell (array
    nodes left as written: they point into the FITS file, not this ASDF file)."""
    import asdf

    raw = hdul[ASDF_EXTNAME].data["ASDF_METADATA"][0].tobytes()
    with asdf.open(io.BytesIO(raw), _force_raw_types=True) as af:
        return {key: af.tree[key] for key in af.tree if not key.startswith("asdf")}


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_every_product_carries_the_asdf_tree(kind: str, tmp_path: Path) -> None:
    """The ASDF extension is there, its meta equals the headers, its array nodes point at
    the product's image extensions; checksums and sha256 stay right."""
    from stdatamodels.fits_support import from_fits_asdf

    written = WRITERS[kind](tmp_path / f"x_{kind}.fits")
    assert written.sha256 == sha256_file(written.path)
    assert written.size == written.path.stat().st_size
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # astropy warns on a checksum that does not verify
        with fits.open(written.path, checksum=True) as hdul:
            assert hdul[-1].name == ASDF_EXTNAME
            assert all("CHECKSUM" in h.header and "DATASUM" in h.header for h in hdul)
            tree = _embedded_tree(hdul)
            header = hdul[0].header
            flat = {}
            for key, path in KEYWORD_PATHS.items():
                node = tree["meta"]
                for part in path.split("."):
                    node = node.get(part, {}) if isinstance(node, dict) else {}
                flat[key] = node if node != {} else None
            assert {k: v for k, v in flat.items() if v is not None} == \
                {k: header[k] for k in KEYWORD_PATHS if k in header}
            assert tree["meta"]["instrument"]["name"] == "SSCAM"
            assert tree["meta"]["observation"]["visit_number"] == "001"
            images = [h for h in hdul[1:] if h.is_image and h.data is not None]
            resolved = from_fits_asdf(hdul).tree  # arrays mapped onto the FITS extensions
            for hdu in images:
                key = "data" if hdu.name == "SCI" else hdu.name.lower()
                np.testing.assert_array_equal(resolved[key], hdu.data)
            assert set(tree) - {"meta", "history"} == {"data" if h.name == "SCI" else h.name.lower()
                                                         for h in images}
            assert sorted(tree[k]["source"] for k in tree if k not in ("meta", "history")) == \
                sorted(f"fits:{h.name},1" for h in images)


@pytest.mark.parametrize("kind", ["uncal", "rate", "rateints", "i2d"])
def test_stdatamodels_reads_meta_and_arrays(kind: str, tmp_path: Path) -> None:
    """stdatamodels opens the product with its ASDF extension: meta values and arrays."""
    from stdatamodels.jwst import datamodels
    from tests.jwst_models import MODELS

    path = WRITERS[kind](tmp_path / f"x_{kind}.fits").path
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the mission's own names: tests/jwst_models.py
        with datamodels.open(path) as model:
            assert type(model).__name__ == MODELS[kind]
            assert model.meta.instrument.name == "SSCAM"
            assert model.meta.observation.program_number == "01234"
            assert model.meta.exposure.nints == 2
            assert model.meta.pointing.ra_v1 == pytest.approx(META.ra_v1)
            with fits.open(path) as hdul:
                np.testing.assert_array_equal(model.data, hdul["SCI"].data)


def test_streamed_rateints_equal_one_piece(tmp_path: Path) -> None:
    """The block-by-block writer's file has the same ASDF extension, byte for byte."""
    arrays = _arrays((2, 16, 24))
    whole = _rateints(tmp_path / "whole_rateints.fits")
    with RateIntsWriter(tmp_path / "blocks_rateints.fits", META, _ref("rateints"), PROV) as w:
        w.write(0, **{k: v[:1] for k, v in arrays.items()})
        w.write(1, **{k: v[1:] for k, v in arrays.items()})
    assert w.written is not None
    with fits.open(whole.path) as a, fits.open(w.written.path) as b:
        assert a[ASDF_EXTNAME].data.tobytes() == b[ASDF_EXTNAME].data.tobytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with fits.open(w.written.path, checksum=True) as hdul:
            assert hdul[-1].name == ASDF_EXTNAME


_TWO_PROCESS_PROBE = """
import hashlib, io, sys
sys.path.insert(0, sys.argv[1])
if sys.argv[2] == "uncached":  # asdf's own schema loading, as without obsflow's cache
    import asdf.schema
    asdf.schema._make_schema_loader.obsflow_cached = True
from tests.models.test_asdf_extension import META, WCS
from obsflow.models.asdfmeta import asdf_bytes, meta_tree
from astropy.io import fits
import astropy.units as u
header = fits.Header({"TELESCOP": "X", "EXPSTART": 60000.5})
tree = {"meta": {**meta_tree(header), "wcs": WCS, "exptime": 12.5 * u.s}}
print(hashlib.sha256(asdf_bytes(tree)).hexdigest())
"""


def test_the_asdf_tree_is_the_same_bytes_in_every_process() -> None:
    """asdf lists the extensions it used in a set's order (object identities): written once,
    in the order obsflow's serialization context sorts them, every process writes one file."""
    import os
    import subprocess
    import sys

    import asdf

    from obsflow.models.asdfmeta import asdf_bytes

    root = str(Path(__file__).resolve().parents[2])
    digests = set()
    for seed, schemas in (("1", "cached"), ("2", "cached"), ("3", "cached"), ("1", "uncached")):
        run = subprocess.run([sys.executable, "-c", _TWO_PROCESS_PROBE, root, schemas], check=True,
                             capture_output=True, text=True, timeout=120,
                             env=dict(os.environ, PYTHONHASHSEED=seed))
        digests.add(run.stdout.strip().splitlines()[-1])
    assert len(digests) == 1, digests
    import astropy.units as u
    raw = asdf_bytes({"meta": {"wcs": WCS, "exptime": 12.5 * u.s}})
    with asdf.open(io.BytesIO(raw), _force_raw_types=True) as af:
        used = [(str(e.get("extension_uri", "")), str(e.get("extension_class", "")))
                for e in af.tree["history"]["extensions"]]
    assert len(used) >= 3 and used == sorted(used)  # core, gwcs, astropy: one sorted list


def test_cached_schemas_still_validate_every_write() -> None:
    """The referenced schemas are parsed once per process (obsflow's loader cache), and a
    write still validates: a tree breaking a schema is refused on the second write too."""
    import asdf
    import asdf.schema

    from obsflow.models.asdfmeta import asdf_bytes

    good = {"meta": {"wcs": WCS}}
    first = asdf_bytes(good)
    assert getattr(asdf.schema._make_schema_loader, "obsflow_cached", False)
    assert asdf.schema._make_schema_loader() is asdf.schema._make_schema_loader()  # one cache
    assert asdf_bytes(good) == first
    bad = asdf.tagged.TaggedDict({"source": 0, "shape": "not a shape", "datatype": "float32"},
                                 "tag:stsci.edu:asdf/core/ndarray-1.1.0")
    for _ in range(2):
        with pytest.raises(asdf.ValidationError):
            asdf_bytes({"meta": {"wcs": WCS}, "data": bad})
