"""Synthetic products for the archive tests: small FITS files with full metadata."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from astropy.io import fits

from obsflow.archive.context import Archive
from obsflow.archive.register import register_product
from obsflow.models.identity import ProductRef
from obsflow.models.level1 import Level1, write_uncal
from obsflow.models.metadata import ExposureMeta
from obsflow.models.pointing import detector_wcs
from obsflow.models.provenance import FileUse, Provenance, RefFileUse, StepRecord

BASE = ExposureMeta(
    telescope="OBSFLOW-S", instrument="SSCAM", detector="SSD1", filter="J", program="01234",
    observation=1, visit=1, exposure=1, exposure_id=1, pi_name="A. Rivera",
    title="Deep field", target="DEEP-FIELD-1", target_ra=53.16, target_dec=-27.78,
    ra_v1=53.16, dec_v1=-27.78, pa_v3=0.0, dither_pattern="NONE", dither_position=1,
    dither_npoints=1, readpatt="RAPID", nints=1, ngroups=3, nframes=1, groupgap=0,
    frame_time=1.0, group_time=1.0, subarray="SUB64", substrt1=1, substrt2=1, subsize1=32,
    subsize2=32, expstart=61000.0, expmid=61000.005, expend=61000.01, exposure_duration=864.0,
)


def meta(**changes: object) -> ExposureMeta:
    """:data:`BASE` with some fields changed."""
    return dataclasses.replace(BASE, **changes)  # type: ignore[arg-type]


def _wcs(m: ExposureMeta) -> fits.Header:
    w = detector_wcs(m.ra_v1, m.dec_v1, m.pa_v3, (0.0, 0.0, 0.0), 0.5,
                     (m.subsize1, m.subsize2, 1, 1, m.subsize1, m.subsize2))
    return w.to_header()


def write_product(folder: Path, m: ExposureMeta, kind: str = "cal", seed: int = 0,
                  extra: dict[str, object] | None = None,
                  made: tuple[ProductRef, Provenance] | None = None) -> Path:
    """Write ``<basename>_<kind>.fits``: a 2-D SCI image (or a 4-D ramp for ``uncal``).

    ``made`` (not for ``uncal``) is the product's reference and provenance:
    written as the pipeline's writers do (``PRODUUID``..., summary keywords
    and the ``PROVENANCE`` table), so registration reads them from the file.
    """
    rng = np.random.default_rng(seed)
    path = folder / f"{m.basename}_{kind}.fits"
    if kind == "uncal":
        cube = rng.integers(1000, 2000, (m.nints, m.ngroups, m.subsize2, m.subsize1),
                            dtype=np.uint16)
        cube[:, :, 10:14, 10:14] += np.arange(m.ngroups, dtype=np.uint16)[None, :, None, None] * 500
        write_uncal(path, Level1(cube, m))
        return path
    primary = fits.PrimaryHDU()
    m.to_header(primary.header)
    for key, value in (extra or {}).items():
        primary.header[key] = value
    image = rng.normal(10.0, 1.0, (m.subsize2, m.subsize1)).astype(np.float32)
    image[12:16, 8:12] += 200.0
    sci = fits.ImageHDU(image, name="SCI")
    sci.header.update(_wcs(m))
    sci.header["BUNIT"] = "DN/s"
    hdus = [primary, sci]
    if made is not None:
        ref, provenance = made
        ref.to_header(primary.header)
        provenance.write_keywords(primary.header)
        hdus.append(provenance.to_hdu())
    folder.mkdir(parents=True, exist_ok=True)
    fits.HDUList(hdus).writeto(path, checksum=True, overwrite=True)
    return path


def write_light_curve(folder: Path, ref: ProductRef, provenance: Provenance,
                      n: int = 30) -> Path:
    """Write ``<basename>_phot.ecsv``: a small light curve (a 1% dip in its middle third) with
    its reference and provenance in its metadata, as :mod:`obsflow.tso.product` writes it
    (no PNG beside it: registration draws the preview from the table)."""
    from astropy.table import Table

    t = 61000.0 + np.arange(n) / 1440.0
    flux = np.where((np.arange(n) >= n // 3) & (np.arange(n) < 2 * n // 3), 0.99, 1.0) * 1e5
    table = Table({"integration": np.arange(n), "mjd_utc": t, "bjd_tdb": t + 0.0035,
                   "flux": flux, "flux_err": np.full(n, 30.0)})
    table.meta.update({"product": ref.as_dict(), "provenance": provenance.as_dict(),
                       "transit_fit": {"status": "SKIPPED: a test light curve"}})
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ref.filename
    table.write(path, format="ascii.ecsv", overwrite=True)
    return path


# -- several versions of products, with provenance and lineage ---------------------------------

PUBLIC_CAL = {"program": "03456", "ra_v1": 80.49, "dec_v1": -69.5, "target": "CAL-FIELD"}
"""Fields of a public exposure (program 03456, no exclusive access)."""

LONG_VALUE = "x" * 20_000 + "-end"
"""A step parameter value longer than any column or FITS card."""


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _refs(*pairs: tuple[str, str]) -> tuple[RefFileUse, ...]:
    return tuple(RefFileUse(t, n, _sha(n)) for t, n in sorted(pairs))


@dataclass
class VersionedSite:
    """What :func:`register_versions` made: product ids and provenance by key.

    Keys: ``rate`` (public), ``cal_v1``..``cal_v3`` (three versions of its
    public ``cal``), ``secret_v1``/``secret_v2`` (program 01234's ``cal``),
    ``secret_i2d`` (01234, made from ``cal_v2`` and ``secret_v2``) and
    ``public_i2d`` (03456, made from ``cal_v3`` and ``secret_v2``).
    """

    ids: dict[str, str] = field(default_factory=dict)
    uuids: dict[str, str] = field(default_factory=dict)
    provenance: dict[str, Provenance] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


def _cal_v1(rate: ProductRef) -> Provenance:
    return Provenance(
        run="prompt-1", software="0.2.0", recipe="image2", context=3, inputs=(rate,),
        references=_refs(("flat", "flat_0001.fits"), ("photom", "photom_0001.fits"),
                         ("area", "area_0001.fits")),
        steps=(StepRecord("flat_field", "COMPLETE", {"apply": True}),
               StepRecord("photom", "COMPLETE", {"mode": "fast", "scale": 1.0})))


def _cal_v2(rate: ProductRef) -> Provenance:
    return Provenance(
        run="campaign-2", software="0.2.1", recipe="image2", context=5, inputs=(rate,),
        references=_refs(("flat", "flat_0002.fits"), ("photom", "photom_0001.fits"),
                         ("distortion", "distortion_0001.asdf")),
        steps=(StepRecord("flat_field", "COMPLETE", {"apply": True, "fill": 0.0}),
               StepRecord("photom", "COMPLETE", {"mode": "exact"}),
               StepRecord("skymatch", "SKIPPED: one exposure", {})))


def _cal_v3(rate: ProductRef) -> Provenance:
    many = tuple((f"ref{i:02d}", f"ref{i:02d}_{'y' * 80}.fits") for i in range(60))
    return Provenance(
        run="campaign-3", software="0.3.0", recipe="image2-long", context=6, inputs=(rate,),
        references=_refs(*many),
        steps=(StepRecord("flat_field", "COMPLETE", {"apply": True, "note": LONG_VALUE,
                                                     "grid": [[i, i * 0.5] for i in range(500)],
                                                     "nested": {"a": {"b": [1, "two", None]}}}),),
        input_files=tuple(FileUse(f"raw_{i:04d}.dat", _sha(str(i))) for i in range(40)))


def _add(site: VersionedSite, archive: Archive, folder: Path, key: str,
         m: ExposureMeta, ref: ProductRef, provenance: Provenance) -> ProductRef:
    path = write_product(folder / key, m, kind=ref.kind, seed=len(site.ids),
                         made=(ref, provenance))
    when = datetime(2026, 1, 1) + timedelta(hours=len(site.ids))
    site.ids[key] = register_product(archive, path, now=when).product_id
    site.uuids[key], site.provenance[key], site.files[key] = ref.uuid, provenance, path
    return ref


def register_versions(archive: Archive, folder: Path) -> VersionedSite:
    """Register the products of :class:`VersionedSite` (programs 01234, 03456 must exist)."""
    site = VersionedSite()
    public, secret = meta(**PUBLIC_CAL), meta(exposure=5)  # type: ignore[arg-type]
    rate = _add(site, archive, folder, "rate", public, ProductRef("rate", public.data_id, "prompt-1"),
                Provenance("prompt-1", "0.2.0", "image2", 3,
                           input_files=(FileUse("raw_0001.dat", _sha("raw")),)))
    cals = {}
    for n, make in enumerate((_cal_v1, _cal_v2, _cal_v3), start=1):
        prov = make(rate)
        cals[n] = _add(site, archive, folder, f"cal_v{n}", public,
                       ProductRef("cal", public.data_id, prov.run), prov)
    for n, run in ((1, "prompt-1"), (2, "campaign-2")):
        prov = Provenance(run, f"0.2.{n - 1}", "image2", 3 + n,
                          references=_refs(("flat", f"flat_000{n}.fits")))
        secret_ref = _add(site, archive, folder, f"secret_v{n}", secret,
                          ProductRef("cal", secret.data_id, run), prov)
    mosaics = (("secret_i2d", meta(exposure=7), cals[2]),  # type: ignore[arg-type]
               ("public_i2d", meta(**PUBLIC_CAL, exposure=8), cals[3]))  # type: ignore[arg-type]
    for key, m, public_input in mosaics:
        prov = Provenance("campaign-2", "0.2.1", "image3", 5, inputs=(public_input, secret_ref),
                          steps=(StepRecord("resample", "COMPLETE", {"kernel": "square"}),))
        _add(site, archive, folder, key, m, ProductRef("i2d", m.data_id, prov.run), prov)
    return site
