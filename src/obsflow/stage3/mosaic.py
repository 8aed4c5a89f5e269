"""Stage 3 of imaging for one association: ``_cal`` members -> ``_crf`` products + ``_i2d`` mosaic.

:func:`make_mosaic` runs the calwebb_image3 chain on the members of an
:class:`~obsflow.stage3.association.Association`, reading them from the
products folder, one member at a time (never the whole stack), in bands of
rows where an image-sized work array would otherwise be made: the peak,
resident and traced, measured by ``benchmarks/bench_stage3.py`` on 8
full-frame inputs, is within the issue's bound of the output arrays plus
two inputs (docs/benchmarks.md; ``tests/stage3/test_memory.py``):

1. **detect** (one member at a time): the stars of each ``_cal``
   (:func:`obsflow.stage3.detect.detect_stars`); only the star lists stay;
2. **align** (:func:`obsflow.stage3.align.align_catalogs`): relative, then
   to the ASTROCAT file when one is given (``absolute``), one correction per
   exposure; too few matches raise ``AlignmentError``;
3. **skymatch** (:func:`obsflow.stage3.skymatch.match_sky`) on the members'
   SCI and DQ memory-mapped from their files only while a pair using them
   is compared (pages the kernel can drop, not the Python heap), through
   the aligned WCSs;
4. **grid**: :func:`obsflow.stage3.grid.output_grid` over every aligned
   input (or the user's scale, rotation, CRVAL, shape);
5. **outlier detection** (:func:`obsflow.stage3.outlier.outlier_masks`, the
   members loaded one at a time, sky-subtracted, through their aligned
   WCSs): one mask per member (a one-member association: none);
   then per member again: the ``_crf`` (the ``_cal`` with its aligned WCS,
   ``ALN_*`` and ``BKG*`` keywords, its outliers flagged OUTLIER |
   DO_NOT_USE in DQ, ``tweakreg``, ``skymatch`` and ``outlier_detection`` steps,
   the ``_cal`` as its one input) is written, then resampled (SCI minus its
   sky level, weights ``ivm`` or ``exptime``, an interpolated pixel map)
   into one :class:`~obsflow.stage3.resample.Resampler`;
6. the mosaic's variances and CON wait on disk while the catalog runs
   (:func:`~obsflow.stage3.resample.spill_planes`); the association file
   (``<basename>_asn.json``), the source catalog of
   the mosaic (:func:`obsflow.stage3.catalog.source_catalog`:
   ``<basename>_cat.ecsv`` and ``<basename>_segm.fits``; a mosaic it cannot
   measure records ``source_catalog`` ``SKIPPED: <why>``; point sources'
   positions measured on the ``_crf`` products, one at a time and in bands of rows:
   :mod:`obsflow.stage3.positions`) and then the
   ``_i2d`` (:func:`obsflow.stage3.product.write_i2d`) are written, each
   atomically.

VAR_FLAT of an input is what its ERR holds beyond VAR_POISSON and
VAR_RNOISE (``_cal`` keeps no VAR_FLAT array): ``max(ERR² - VP - VR, 0)``.

Identity: the mosaic is ``ProductRef.derived("i2d", asn.data_id, run,
asn.digest)``, each ``_crf`` ``derived("crf", member, run, "<cal uuid>:<digest>")``
(an alignment depends on every member): a job re-run after a crash writes
the same files under the same names.
"""

from __future__ import annotations

import dataclasses
import functools
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from obsflow import __version__
from obsflow.exceptions import AlignmentError, AssociationError, CatalogError
from obsflow.models.identity import ProductRef
from obsflow.models.level2 import CalImage, CrfImage, read_cal, write_crf
from obsflow.models.metadata import ExposureMeta
from obsflow.models.provenance import Provenance, RefFileUse, StepRecord
from obsflow.models.reffiles import AstrometricCatalog
from obsflow.profiles import Profile
from obsflow.stage3.align import (
    Alignment,
    AlignOptions,
    DetectorStars,
    ExposureStars,
    align_catalogs,
    aligned_cal,
    exposure_key,
)
from obsflow.stage3.association import ASN_RULE, Association, write_association
from obsflow.stage3.catalog import (
    CatalogOptions,
    PositionInput,
    point_sources_from_inputs,
    source_catalog,
    write_catalog,
    write_segmentation,
)
from obsflow.stage3.detect import detect_stars
from obsflow.stage3.grid import output_grid, pixel_scale_arcsec
from obsflow.stage3.outlier import (
    OutlierInput,
    OutlierOptions,
    crf_dq,
    outlier_masks,
    unpack_mask,
)
from obsflow.stage3.pixmap import LatticeMap
from obsflow.stage3.product import write_i2d
from obsflow.stage3.psfmodel import MosaicPSF
from obsflow.stage3.resample import (
    I2DArrays,
    Resampler,
    input_weight,
    spill_planes,
    weight_level,
)
from obsflow.stage3.skymatch import match_sky, sky_keywords

__all__ = ["IMAGE3_RECIPE", "Image3Options", "Made", "MosaicProduct", "asn_path", "beside",
           "catalog_refs", "crf_ref",
           "make_mosaic", "mosaic_ref"]

IMAGE3_RECIPE = "image3"
"""The recipe name ``_crf`` and ``_i2d`` products record."""


@dataclass(frozen=True)
class Image3Options:
    """Parameters of stage 3 (recorded in the products' provenance).

    Attributes
    ----------
    fit_mode : str
        Alignment geometry, relative and absolute; "" = ``rshift`` on full
        frames, ``shift`` on subarrays (tens of arcseconds hold a rotation poorly).
    absolute : bool
        Align to the ASTROCAT file (when one is given).
    skymatch : str
        Sky matching method (``global+match``, ``match``, ``global``).
    subtract_sky : bool
        Subtract each input's sky level before resampling.
    kernel, pixfrac : str, float
        Drizzle kernel and pixfrac.
    weight : str
        ``ivm-med`` (the inverse of each input's median read-noise variance,
        the default), ``ivm`` (per pixel: biased low on stars, see
        docs/stage3.md) or ``exptime``.
    pixel_scale, rotation, crval, shape
        Output grid (:func:`obsflow.stage3.grid.output_grid`): arcsec,
        degrees east of north, (RA, Dec) degrees, (ny, nx); None = cover all
        inputs at the first input's scale, north up.
    threads : int
        Threads of the resample kernels.
    align_failure : str
        What too few matched stars do: ``skip`` (default) falls back from
        absolute to relative alignment, then to the header WCSs, and says so
        (``tweakreg`` step ``SKIPPED: <why>`` or a note, ``ALN_REF``
        ``NOT ALIGNED``); ``fail`` raises ``AlignmentError``.
    """

    fit_mode: str = ""
    absolute: bool = True
    skymatch: str = "global+match"
    subtract_sky: bool = True
    kernel: str = "square"
    pixfrac: float = 1.0
    weight: str = "ivm-med"
    pixel_scale: float | None = None
    rotation: float = 0.0
    crval: tuple[float, float] | None = None
    shape: tuple[int, int] | None = None
    threads: int = 1
    align_failure: str = "skip"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Image3Options:
        """Options from a recipe or job inputs (unknown keys: ``AssociationError`` naming them)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise AssociationError(f"image3 options: unknown key(s) {', '.join(unknown)}; "
                                   f"expected {', '.join(sorted(names))}")
        values = dict(data)
        for key in ("crval", "shape"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)


@dataclass(frozen=True)
class Made:
    """A product :func:`make_mosaic` wrote: identity, file, sha256, size, provenance."""

    ref: ProductRef
    path: Path
    sha256: str
    size: int
    provenance: Provenance


@dataclass(frozen=True)
class MosaicProduct:
    """What :func:`make_mosaic` wrote: the ``_crf`` products, the association file, the ``_i2d``."""

    crfs: tuple[Made, ...]
    mosaic: Made
    asn_file: Path
    alignment: Alignment | None
    sky_levels: tuple[float, ...]
    seconds: dict[str, float] = field(default_factory=dict)
    catalog: tuple[Made, ...] = ()
    """The ``_segm`` and ``_cat`` products (none when the catalog step was skipped)."""


def mosaic_ref(asn: Association, run: str) -> ProductRef:
    """The ``_i2d`` of ``asn`` made in ``run`` (UUID named by the member set)."""
    return ProductRef.derived("i2d", asn.data_id, run, asn.digest)


def crf_ref(cal: ProductRef, asn: Association, run: str) -> ProductRef:
    """The ``_crf`` of member ``cal`` in ``asn`` made in ``run``."""
    return ProductRef.derived("crf", cal.data_id, run, f"{cal.uuid}:{asn.digest}")


def beside(mosaic: Path, suffix: str) -> Path:
    """``<basename>_<suffix>`` beside an ``_i2d`` (``asn.json``, ``cat.ecsv``, ``segm.fits``)."""
    return mosaic.with_name(mosaic.name.replace("i2d.fits", suffix))


def asn_path(mosaic: Path) -> Path:
    """The association file beside an ``_i2d`` (``<basename>_asn.json``)."""
    return beside(mosaic, "asn.json")


def catalog_refs(asn: Association, run: str) -> tuple[ProductRef, ProductRef]:
    """The ``_cat`` and ``_segm`` products of ``asn``'s mosaic made in ``run``."""
    return (ProductRef.derived("cat", asn.data_id, run, asn.digest),
            ProductRef.derived("segm", asn.data_id, run, asn.digest))


def _write_catalog(path: Path, arrays: I2DArrays, profile: Profile, meta: ExposureMeta,
                   opts: Image3Options, extra: dict[str, Any], prov: Provenance,
                   refs: tuple[ProductRef, ProductRef],
                   inputs: Iterable[PositionInput],
                   seconds: dict[str, float]) -> tuple[str, tuple[Made, ...]]:
    """The mosaic's source catalog, ``_cat.ecsv`` and ``_segm.fits`` beside it (before the
    ``_i2d``: a mosaic on disk has them), products of their own whose inputs are the mosaic
    (``prov.inputs[0]``) and its ``_crf`` products; the ``source_catalog`` step's status and
    the two products.  Point sources' positions and own aperture corrections come from
    ``inputs`` (the ``_crf`` products' SCI, DQ, aligned WCS, PSF FWHM and drizzle weight, one
    at a time: see :func:`obsflow.stage3.catalog.point_sources_from_inputs`; their seconds go
    to ``seconds["positions"]``)."""
    psf = MosaicPSF.for_image(profile, meta.instrument, meta.filter,
                              pixel_scale_arcsec(arrays.wcs), opts.pixfrac,
                              inputs=int(extra["NEXPOSUR"][0]))  # (a source: one detector per exposure)
    try:
        found = source_catalog(arrays.sci, arrays.err, arrays.wht, arrays.wcs, psf,
                               name=path.name)
    except CatalogError as exc:
        return f"SKIPPED: {exc}", ()
    t0 = time.perf_counter()
    point_sources_from_inputs(found.table, arrays.wcs, inputs, psf, opts.kernel, opts.pixfrac)
    seconds["positions"] = time.perf_counter() - t0
    cat_ref, segm_ref = refs
    step = StepRecord("source_catalog", "COMPLETE", {
        "mosaic": path.name, "sources": len(found.table),
        "options": dataclasses.asdict(CatalogOptions())})
    own = dataclasses.replace(prov, steps=(step,))
    segm = write_segmentation(path.with_name(segm_ref.filename), found.segm, arrays.wcs, meta,
                              segm_ref, own,
                              {k: v for k, v in extra.items() if k in ("ASNID", "NINPUTS")})
    cat = write_catalog(path.with_name(cat_ref.filename), found.table, cat_ref, own)
    return "COMPLETE", (Made(segm_ref, segm.path, segm.sha256, segm.size, own),
                        Made(cat_ref, cat.path, cat.sha256, cat.size, own))


def _read_member(products_dir: Path, asn: Association, k: int) -> CalImage:
    member = asn.members[k]
    cal = read_cal(products_dir / member.path)
    if cal.ref.uuid != member.ref.uuid:
        raise AssociationError(f"{asn.asn_id}: {member.path} holds product {cal.ref.uuid}, the "
                               f"association lists {member.ref.uuid}")
    if cal.wcs is None:
        raise AssociationError(f"{asn.asn_id}: {member.path} has no WCS")
    return cal


def _fwhm_pix(profile: Profile, meta: ExposureMeta) -> float:
    inst = profile.instrument(meta.instrument)
    return float(inst.psf_fwhm_pix_per_um * inst.filter(meta.filter).pivot_um)


def _mosaic_meta(asn: Association, metas: list[ExposureMeta], shape: tuple[int, int]
                 ) -> ExposureMeta:
    """The mosaic's keywords: the first member's, for all of them (module docstring of product)."""
    first = metas[0]
    durations = {exposure_key(m): m.exposure_duration for m in metas}
    return dataclasses.replace(
        first, detector=asn.data_id.detector, visit=0, exposure=0, exposure_id=0,
        dither_position=0, subarray="MOSAIC", substrt1=1, substrt2=1, subsize1=shape[1],
        subsize2=shape[0], expstart=min(m.expstart for m in metas),
        expend=max(m.expend for m in metas), expmid=float(np.mean([m.expmid for m in metas])),
        exposure_duration=float(sum(durations.values())), extra={})


@dataclass(frozen=True)
class _MappedSky:
    """A member's SCI and DQ for sky matching (a ``SkySource``), memory-mapped from its file
    afresh each time they are asked for and unmapped when dropped: matching holds the file
    pages of the pair it compares, never of every member (DQ as stored: int32 with its top
    bit flipped, the low bits -- every flag tested -- unchanged)."""

    path: Path
    wcs: WCS

    @property
    def sci(self) -> np.ndarray:
        return self._extension("SCI")

    @property
    def dq(self) -> np.ndarray:
        return self._extension("DQ")

    def _extension(self, name: str) -> np.ndarray:
        with fits.open(self.path, memmap=True, do_not_scale_image_data=True) as hdul:
            data: np.ndarray = hdul[name].data
        return data


def _position_inputs(paths: Sequence[Path], wcss: Sequence[WCS], fwhms: Sequence[float],
                     weights: Sequence[float]) -> Iterator[PositionInput]:
    """The ``_crf`` products for point-source positions, one at a time: SCI and DQ as
    sections of the file opened without a memory map (read a band of rows when sliced: the
    fits hold a few bands in memory, never a whole input or its file pages), the aligned WCS
    the PSF FWHM in its pixels (DQ as stored: see :class:`_MappedSky`) and its drizzle
    weight."""
    for path, wcs, fwhm, weight in zip(paths, wcss, fwhms, weights, strict=True):
        with fits.open(path, memmap=False, lazy_load_hdus=True,
                       do_not_scale_image_data=True) as hdul:
            yield hdul["SCI"].section, hdul["DQ"].section, wcs, fwhm, weight


def _var_flat_inplace(err: np.ndarray, var_poisson: np.ndarray,
                      var_rnoise: np.ndarray) -> np.ndarray:
    """``max(ERR² - VAR_POISSON - VAR_RNOISE, 0)`` (0 where not finite), float32, in ``err``'s
    own array when it is float32, as read from a FITS file (big-endian) or native (an ERR
    already written to its ``_crf``: no new input-sized array), else in a new one."""
    own = err.dtype.kind == "f" and err.dtype.itemsize == 4  # (float32 of either byte order)
    rest = np.square(err, out=err) if own else np.square(err, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        rest -= var_poisson
        rest -= var_rnoise
        np.maximum(rest, np.float32(0.0), out=rest)
    rest[~np.isfinite(rest)] = 0.0
    return rest


def _outlier_input(products_dir: Path, asn: Association, k: int, wcs: WCS,
                   level: float) -> OutlierInput:
    """Member ``k`` for outlier detection: its aligned WCS, its sky level subtracted."""
    cal = _read_member(products_dir, asn, k)
    cal.sci -= np.float32(level)
    return OutlierInput(cal.sci, cal.err, cal.dq, wcs, cal.var_rnoise,
                        cal.meta.exposure_duration, cal.meta.basename)


def _crf(cal: CalImage, alignment: Alignment | None, notes: list[str], ref: ProductRef,
         level: float, options: Image3Options, outliers: np.ndarray) -> CrfImage:
    if alignment is None:  # recorded, never silent: the step says why it was skipped
        aligned = dataclasses.replace(
            cal, header_extra={**cal.header_extra, "ALN_REF": ("NOT ALIGNED", "tweakreg "
                                                                "skipped: too few stars")},
            provenance=dataclasses.replace(cal.provenance, steps=(
                *cal.provenance.steps, StepRecord("tweakreg", "SKIPPED: " + " / ".join(notes),
                                                  {}))))
    else:
        aligned = aligned_cal(cal, alignment)
    sky = sky_keywords(level, options.skymatch, False)
    prov = dataclasses.replace(
        aligned.provenance, run=ref.run, software=__version__, inputs=(cal.ref,),
        steps=(*aligned.provenance.steps,
               StepRecord("skymatch", "COMPLETE", {"method": options.skymatch,
                                                   "level": float(level)}),
               StepRecord("outlier_detection", "COMPLETE",
                          {"flagged": int(outliers.sum())})))
    return CrfImage(aligned.sci, aligned.err, crf_dq(aligned.dq, outliers), aligned.var_poisson,
                    aligned.var_rnoise, aligned.meta, ref, prov,
                    {**aligned.header_extra, **sky}, aligned.wcs)


def _align(groups: dict[str, list[DetectorStars]],
           catalog: tuple[AstrometricCatalog, RefFileUse] | None, opts: Image3Options,
           full_frame: bool) -> tuple[Alignment | None, list[str]]:
    """Absolute alignment, else (``align_failure`` "skip") relative only, else none; the notes
    say what failed and why."""
    mode = opts.fit_mode or ("rshift" if full_frame else "shift")
    exposures = [ExposureStars(key, tuple(v)) for key, v in groups.items()]
    tries = [True, False] if opts.absolute and catalog is not None else [False]
    notes: list[str] = []
    for absolute in tries:
        try:
            return align_catalogs(exposures, catalog[0] if absolute and catalog else None,
                                  AlignOptions(fit_mode=mode, abs_fit_mode=mode,
                                               absolute=absolute),
                                  catalog[1] if catalog else None), notes
        except AlignmentError as exc:
            if opts.align_failure == "fail":
                raise
            notes.append(str(exc))
    return None, notes


def make_mosaic(asn: Association, products_dir: Path, profile: Profile, run: str,
                catalog: tuple[AstrometricCatalog, RefFileUse] | None = None,
                options: Image3Options | None = None) -> MosaicProduct:
    """Stage 3 of ``asn``'s members into ``products_dir`` (module docstring).

    ``catalog`` is the ASTROCAT reference (its table and its file); without
    it (or with ``options.absolute`` False) alignment is relative only.

    Raises
    ------
    AssociationError
        A member file is not the product the association names, or has no WCS.
    AlignmentError
        Too few stars matched (names the exposure and the counts).
    """
    opts = options or Image3Options()
    products_dir = Path(products_dir)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    metas: list[ExposureMeta] = []
    wcses: list[WCS] = []
    shapes: list[tuple[int, int]] = []
    groups: dict[str, list[DetectorStars]] = {}
    for k in range(len(asn.members)):  # 1. detect, one member at a time
        cal = _read_member(products_dir, asn, k)
        assert cal.wcs is not None
        stars = detect_stars(cal.sci, cal.err, cal.dq, _fwhm_pix(profile, cal.meta))
        groups.setdefault(exposure_key(cal.meta), []).append(
            DetectorStars(cal.meta.basename, cal.wcs, stars.x, stars.y))
        metas.append(cal.meta)
        wcses.append(cal.wcs)
        shapes.append(cal.sci.shape)
        del cal
    seconds["detect"] = time.perf_counter() - t0
    alignment, notes = _align(groups, catalog, opts, metas[0].subarray == "FULL")
    aligned = [w if alignment is None else alignment.wcs_for(exposure_key(m), w)
               for m, w in zip(metas, wcses, strict=True)]
    seconds["align"] = time.perf_counter() - t0 - seconds["detect"]
    t1 = time.perf_counter()
    sky = match_sky([_MappedSky(products_dir / member.path, wcs)  # 3. skymatch, mapped pairwise
                     for member, wcs in zip(asn.members, aligned, strict=True)], opts.skymatch)
    levels = [float(v) for v in sky.levels]
    seconds["skymatch"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    grid = output_grid(aligned, shapes, pixel_scale=opts.pixel_scale, rotation=opts.rotation,
                       crval=opts.crval, shape=opts.shape)
    t_out = time.perf_counter()
    masks = outlier_masks([functools.partial(_outlier_input, products_dir, asn, k, aligned[k],
                                             levels[k] if opts.subtract_sky else 0.0)
                           for k in range(len(asn.members))], grid,
                          OutlierOptions(tmpdir=products_dir, threads=opts.threads), packed=True)
    seconds["outlier"] = time.perf_counter() - t_out
    resampler = Resampler(grid, opts.kernel, opts.pixfrac, opts.threads)
    crfs = []
    weights = []  # each input's drizzle weight level (the catalog models its stars with them)
    for k, member in enumerate(asn.members):  # 5. crf, then resample, one member at a time
        cal = _read_member(products_dir, asn, k)
        crf = _crf(cal, alignment, notes, crf_ref(member.ref, asn, run), levels[k], opts,
                   unpack_mask(masks[k], cal.sci.shape))
        masks[k] = np.zeros(0, np.uint8)  # (used: dropped)
        written = write_crf(products_dir / crf.ref.relpath(), crf)
        crfs.append(Made(crf.ref, written.path, written.sha256, written.size, crf.provenance))
        level = levels[k] if opts.subtract_sky else 0.0
        weight = input_weight(crf.sci, crf.dq, crf.var_rnoise, opts.weight,
                              crf.meta.exposure_duration)
        weights.append(weight_level(weight))
        assert crf.wcs is not None
        sci = crf.sci  # (written: its SCI may now lose the sky level in place, its ERR become
        sci -= np.float32(level)  # VAR_FLAT)
        resampler.add_mapped(sci, weight, LatticeMap(crf.wcs, crf.sci.shape, grid),
                             var_poisson=crf.var_poisson, var_rnoise=crf.var_rnoise,
                             var_flat=_var_flat_inplace(crf.err, crf.var_poisson,
                                                        crf.var_rnoise))
        del cal, crf, weight, sci
    arrays = resampler.finish()
    del resampler  # (it holds CON)
    seconds["resample"] = time.perf_counter() - t2
    with tempfile.TemporaryDirectory(prefix="obsflow-i2d-", dir=products_dir) as tmp:
        arrays = spill_planes(arrays, Path(tmp))  # the catalog reads SCI, ERR and WHT only
        ref = mosaic_ref(asn, run)
        prov = _provenance(ref, crfs, alignment, notes, opts, levels, grid)
        path = products_dir / ref.relpath()
        write_association(asn_path(path), asn)  # first: a mosaic on disk has its association
        extra = _keywords(asn, metas, opts, grid)
        t3 = time.perf_counter()
        mosaic_meta = _mosaic_meta(asn, metas, arrays.sci.shape)
        catalog_prov = dataclasses.replace(prov, inputs=(ref, *prov.inputs))
        inputs = _position_inputs([m.path for m in crfs], aligned,
                                  [_fwhm_pix(profile, meta) for meta in metas], weights)
        catalog_note, catalog_made = _write_catalog(
            path, arrays, profile, mosaic_meta, opts, extra, catalog_prov, catalog_refs(asn, run),
            inputs, seconds)
        seconds["catalog"] = time.perf_counter() - t3
        prov = dataclasses.replace(prov, steps=(*prov.steps, StepRecord(
            "source_catalog", catalog_note, {"catalog": beside(path, "cat.ecsv").name,
                                              "segmentation": beside(path, "segm.fits").name})))
        written = write_i2d(path, arrays, mosaic_meta, ref, prov, extra)
        seconds["total"] = time.perf_counter() - t0
        return MosaicProduct(tuple(crfs), Made(ref, written.path, written.sha256, written.size,
                                               prov), asn_path(path), alignment, tuple(levels),
                             {k: round(v, 3) for k, v in seconds.items()}, catalog_made)


def _keywords(asn: Association, metas: list[ExposureMeta], opts: Image3Options,
              grid: WCS) -> dict[str, Any]:
    return {"ASNID": (asn.asn_id, "association id"),
            "ASNRULE": (ASN_RULE, "association rule"),
            "ASNDIGST": (asn.digest[:16], "sha256 of the member UUIDs (first 16)"),
            "NINPUTS": (len(asn.members), "member products resampled"),
            "NEXPOSUR": (len({exposure_key(m) for m in metas}), "member exposures"),
            "KERNEL": (opts.kernel, "resample kernel"),
            "PIXFRAC": (opts.pixfrac, "resample pixfrac"),
            "WHTTYPE": (opts.weight, "resample weight type"),
            "PIXSCALE": (round(pixel_scale_arcsec(grid), 6), "[arcsec] output pixel scale")}


def _tweakreg_step(alignment: Alignment | None, notes: list[str]) -> StepRecord:
    if alignment is None:
        return StepRecord("tweakreg", "SKIPPED: " + " / ".join(notes), {})
    absolute = alignment.absolute
    return StepRecord("tweakreg", "COMPLETE", {
        **dataclasses.asdict(alignment.options), "notes": notes,
        "absolute_rms_mas": None if absolute is None else absolute.rms_mas,
        "absolute_matches": None if absolute is None else absolute.n_used})


def _provenance(ref: ProductRef, crfs: list[Made], alignment: Alignment | None,
                notes: list[str], opts: Image3Options, levels: list[float],
                grid: WCS) -> Provenance:
    options = dataclasses.asdict(opts)
    nx, ny = grid.pixel_shape
    steps = (
        _tweakreg_step(alignment, notes),
        StepRecord("skymatch", "COMPLETE", {"method": opts.skymatch,
                                            "subtracted": opts.subtract_sky,
                                            "levels": dict(zip([m.ref.filename for m in crfs],
                                                               levels, strict=True))}),
        StepRecord("resample", "COMPLETE", {
            "kernel": opts.kernel, "pixfrac": opts.pixfrac, "weight": opts.weight,
            "pixel_scale_arcsec": pixel_scale_arcsec(grid), "shape": [int(ny), int(nx)],
            "crval": [float(v) for v in grid.wcs.crval], "options": options}),
    )
    refs = (alignment.catalog,) if alignment and alignment.catalog is not None else ()
    contexts = {m.provenance.context for m in crfs}
    return Provenance(run=ref.run, software=__version__, recipe=IMAGE3_RECIPE,
                      context=contexts.pop() if len(contexts) == 1 else None, inputs=tuple(m.ref for m in crfs),
                      references=refs, steps=steps)

