"""Recipes and the calibration pipeline: ``_uncal`` -> ``_rate``, ``_rateints``, ``_cal``.

A recipe is a TOML file in ``obsflow/calibrate/recipes/`` (``name``,
``description``, ``steps`` in order, ``[params.<step>]``); ``index.toml``
chooses one from the product's metadata (instrument, number of
integrations).  Parameters are overridden with ``"step.param" -> value``
(values given as strings are parsed as TOML literals and must have the
default's type); steps can be skipped (not ``ramp_fit``).  Unknown step or
parameter names raise :class:`~obsflow.exceptions.UnknownOptionError` with
the allowed names.

:func:`calibrate_product` is the entry point for the CLI and the
orchestrator.  Every product it writes gets its own
:class:`~obsflow.models.ProductRef` in the caller's run and its own
:class:`~obsflow.models.Provenance`: ``_rate`` and ``_rateints`` the stage-1
steps and references, ``_cal`` every step and reference; all three list the
Level-1 product as their input.
"""

from __future__ import annotations

import contextlib
import logging
import tomllib
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from obsflow import __version__
from obsflow.calibrate.steps import STEPS, Work
from obsflow.exceptions import CalibrationError, ConfigError, ProductFileError, UnknownOptionError
from obsflow.fileio import Written, sha256_file
from obsflow.models.fitsfile import open_fits
from obsflow.models.identity import ProductRef
from obsflow.models.level1 import EXPECTED, UncalBlocks, check_uncal
from obsflow.models.level2 import (
    CalImage,
    RateImage,
    RateInts,
    RateIntsWriter,
    write_cal,
    write_rate,
    write_rateints,
)
from obsflow.models.metadata import ExposureMeta
from obsflow.models.provenance import FileUse, Provenance, RefFileUse, StepRecord
from obsflow.profiles import Profile
from obsflow.refdata.select import best_reference
from obsflow.refdata.validate import RefRecord

__all__ = ["CalibratedProduct", "CalibrationOptions", "Placement", "Recipe", "RefSource", "beside",
           "block_size", "calibrate_product", "check_input", "choose_recipe", "in_runs",
           "integration_bytes", "load_recipe", "output_ref", "resolve_parameters", "warm_up"]

logger = logging.getLogger(__name__)


class RefSource(Protocol):
    """Anything that lists reference-file records (a site registry or a folder)
    and tells a record's sha256 (registered, or hashed on use).

    ``context_number`` is the reference context the records belong to (None
    for a folder of files outside any site); it is read after ``records()``.
    """

    def records(self) -> list[RefRecord]: ...

    def sha256_of(self, record: RefRecord) -> str: ...


Placement = Callable[[ProductRef], Path]
"""Where a product's file goes, given its reference (e.g. ``products/<ref.relpath()>``)."""


@dataclass(frozen=True)
class CalibratedProduct:
    """A product :func:`calibrate_product` wrote: identity, file, sha256, size, provenance."""

    ref: ProductRef
    path: Path
    sha256: str
    size: int
    provenance: Provenance = field(repr=False)


@dataclass(frozen=True)
class Recipe:
    """A recipe: ordered step names and per-step parameter overrides."""

    name: str
    description: str
    steps: tuple[str, ...]
    params: dict[str, dict[str, Any]]


def load_recipe(name: str) -> Recipe:
    """Load a built-in recipe by name, checking every step and parameter name."""
    folder = resources.files("obsflow.calibrate.recipes")
    names = sorted(f.name[:-5] for f in folder.iterdir() if f.name.endswith(".toml")
                   and f.name != "index.toml")
    if name not in names:
        raise UnknownOptionError("recipe", name, names)
    data = tomllib.loads((folder / f"{name}.toml").read_text())
    recipe = Recipe(data["name"], data.get("description", ""), tuple(data["steps"]),
                    data.get("params", {}))
    for step in recipe.steps:
        if step not in STEPS:
            raise UnknownOptionError(f"step in recipe {name}", step, STEPS)
    resolve_parameters(recipe, {})
    return recipe


def choose_recipe(meta: ExposureMeta) -> Recipe:
    """The first rule of ``recipes/index.toml`` matching the product's metadata."""
    text = (resources.files("obsflow.calibrate.recipes") / "index.toml").read_text()
    for rule in tomllib.loads(text)["rule"]:
        if rule.get("instrument", "*") not in ("*", meta.instrument):
            continue
        if meta.nints < int(rule.get("min_nints", 0)):
            continue
        return load_recipe(rule["recipe"])
    raise ConfigError(f"no recipe rule matches {meta.basename} ({meta.instrument}, "
                      f"nints={meta.nints})")


def _coerce(key: str, value: Any, default: Any) -> Any:
    if isinstance(value, str) and not isinstance(default, str):
        try:
            value = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{key}: cannot read {value!r} as a {type(default).__name__}") from exc
    if isinstance(default, bool) != isinstance(value, bool):
        raise ConfigError(f"{key} must be a {type(default).__name__}, got {value!r}")
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    if not isinstance(value, type(default)):
        raise ConfigError(f"{key} must be a {type(default).__name__}, got {value!r}")
    return value


def resolve_parameters(recipe: Recipe, overrides: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each step's parameters: defaults, then the recipe's, then ``overrides`` ("step.param")."""
    params = {s: dict(STEPS[s].defaults) for s in recipe.steps}
    layers = [(f"{s}.{k}", v) for s, d in recipe.params.items() for k, v in d.items()]
    layers += list(overrides.items())
    for key, value in layers:
        step, _, name = key.partition(".")
        if step not in params:
            raise UnknownOptionError("step", step, recipe.steps)
        if name not in params[step]:
            allowed = [f"{step}.{k}" for k in params[step]] or [f"({step} has no parameters)"]
            raise UnknownOptionError("parameter", key, allowed)
        params[step][name] = _coerce(key, value, STEPS[step].defaults[name])
    return params


def _select_refs(recipe: Recipe, meta: ExposureMeta, source: RefSource,
                 skip: set[str]) -> dict[str, RefRecord]:
    records = source.records()
    needed = sorted({r for s in recipe.steps if s not in skip for r in STEPS[s].reftypes})
    chosen: dict[str, RefRecord] = {}
    missing = []
    for reftype in needed:
        sel = best_reference(records, meta, reftype)
        if sel.chosen is None:
            missing.append(reftype)
        else:
            chosen[reftype] = sel.chosen
    if missing:
        raise ConfigError(f"{meta.basename}: no matching reference file of type "
                          f"{', '.join(missing)} (run `obsflow refs best` for details)")
    return chosen


@dataclass(frozen=True)
class _Made:
    """What every output of one calibration shares."""

    run: str
    recipe: str
    context: int | None
    inputs: tuple[ProductRef, ...]
    input_files: tuple[FileUse, ...]
    references: tuple[RefFileUse, ...]
    reftype_stage: dict[str, int]

    def ref(self, kind: str, meta: ExposureMeta) -> ProductRef:
        """The output of ``kind``: its UUID follows from the run and the input's identity."""
        if self.inputs:
            return output_ref(kind, self.inputs[0], self.run)
        return ProductRef.derived(kind, meta.data_id, self.run, self.input_files[0].sha256)


def _made(recipe: Recipe, level1_ref: ProductRef | None, path: Path,
          refs: dict[str, RefRecord], run: str, source: RefSource) -> _Made:
    context = getattr(source, "context_number", None)
    uses = tuple(RefFileUse(t, rec.name, source.sha256_of(rec)) for t, rec in sorted(refs.items()))
    stage = {t: STEPS[s].stage for s in recipe.steps for t in STEPS[s].reftypes}
    if level1_ref is not None:  # a catalogued product: its reference says what it is
        return _Made(run, recipe.name, context, (level1_ref,), (), uses, stage)
    return _Made(run, recipe.name, context, (), (FileUse(path.name, sha256_file(path)),), uses,
                 stage)


def _provenance_for(made: _Made, steps: list[StepRecord], max_stage: int) -> Provenance:
    """The provenance of an output made by the steps of stages <= ``max_stage``."""
    return Provenance(
        run=made.run, software=__version__, recipe=made.recipe, context=made.context,
        inputs=made.inputs, input_files=made.input_files,
        references=tuple(r for r in made.references if made.reftype_stage[r.reftype] <= max_stage),
        steps=tuple(s for s in steps if STEPS[s.name].stage <= max_stage))


def _output(ref: ProductRef, written: Written, prov: Provenance) -> CalibratedProduct:
    return CalibratedProduct(ref, written.path, written.sha256, written.size, prov)


def _stage1_header(work: Work) -> dict[str, Any]:
    """The product keywords the steps of stage 1 set (stage 2's belong to ``_cal`` only)."""
    return {k: v for k, v in work.header.items()
            if k not in ("PHOTMJSR", "BUNIT", "BKGLEVEL", "BKGRMS")}


_Job = tuple[ProductRef, Provenance, Callable[[], Written]]


def _stage1_jobs(work: Work, made: _Made, steps: list[StepRecord],
                 place: Placement, streamed: bool) -> list[_Job]:
    """The writes of ``_rate`` and (unless streamed already) ``_rateints``."""
    assert work.fit is not None and work.pixeldq is not None
    m, fit = work.meta, work.fit
    stage1 = _stage1_header(work)
    prov1 = _provenance_for(made, steps, 1)
    ref = made.ref("rate", m)
    rate = RateImage(fit.slope, fit.err, fit.dq | work.pixeldq, fit.var_poisson, fit.var_rnoise,
                     m, ref, prov1, stage1)
    jobs: list[_Job] = [(ref, prov1, partial(write_rate, place(ref), rate))]
    if not streamed:
        ref = made.ref("rateints", m)
        ints = RateInts(fit.slope_ints, fit.err_ints, fit.dq_ints | work.pixeldq[None],
                        fit.var_poisson_ints, fit.var_rnoise_ints, m, ref, prov1, stage1)
        jobs.append((ref, prov1, partial(write_rateints, place(ref), ints)))
    return jobs


def _cal_job(work: Work, made: _Made, steps: list[StepRecord], place: Placement) -> _Job:
    """The write of ``_cal`` (stage 2 has run)."""
    assert work.image is not None
    img, prov2 = work.image, _provenance_for(made, steps, 2)
    ref = made.ref("cal", work.meta)
    cal = CalImage(img.sci, img.err, img.dq, img.var_poisson, img.var_rnoise, work.meta, ref,
                   prov2, work.header, wcs=work.wcs)
    return ref, prov2, partial(write_cal, place(ref), cal)


def _stage2_while_writing(work: Work, made: _Made, steps: list[StepRecord], image: tuple[str, ...],
                          params: dict[str, dict[str, Any]], skipping: set[str], stage2: bool,
                          place: Placement, rateints: CalibratedProduct | None
                          ) -> list[CalibratedProduct]:
    """Write ``_rate`` and ``_rateints`` from threads while stage 2 runs, then ``_cal``.

    The stage-1 products are final once the ramps are fitted, and stage 2
    makes new arrays (it never changes the fit's), so their writes (most of
    it the kernel's: copying into the page cache and waiting for ``fsync``;
    hashlib's sha256 and numpy's byte swap, which release the GIL) overlap
    the stage-2 steps and each other.  If stage 2 fails, the stage-1 files
    just written are removed again: a failed call leaves no product behind,
    as before.
    """
    jobs = _stage1_jobs(work, made, steps, place, rateints is not None)
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="write") as pool:
        futures = [pool.submit(write) for _, _, write in jobs]
        try:
            steps += _run(work, image, params, skipping)
            if stage2 and work.image is not None:
                job = _cal_job(work, made, steps, place)
                jobs.append(job)
                futures.append(pool.submit(job[2]))
            written = [future.result() for future in futures]
        except BaseException:
            for future in futures:
                with contextlib.suppress(BaseException):
                    future.result().path.unlink(missing_ok=True)
            if rateints is not None:
                rateints.path.unlink(missing_ok=True)
            raise
    out = [_output(ref, w, prov) for (ref, prov, _), w in zip(jobs, written, strict=True)]
    if rateints is not None:
        out.insert(1, rateints)
    return out


def output_ref(kind: str, source: ProductRef, run: str) -> ProductRef:
    """The reference of the ``kind`` product :func:`calibrate_product` makes from the
    catalogued Level-1 product ``source`` in ``run`` (known before calibrating)."""
    return ProductRef.derived(kind, source.data_id, run, source.uuid)


def beside(folder: Path) -> Placement:
    """A placement writing ``<folder>/<basename>_<kind>.fits`` (the CLI's flat layout)."""
    return lambda ref: Path(folder) / ref.filename


def in_runs(products_dir: Path) -> Placement:
    """A placement writing each product at its run's place, ``<products_dir>/<ref.relpath()>``."""
    return lambda ref: Path(products_dir) / ref.relpath()


@dataclass(frozen=True)
class CalibrationOptions:
    """How :func:`calibrate_product` runs and where its products go.

    Attributes
    ----------
    overrides : mapping
        ``{"step.param": value}`` parameter overrides.
    skip : tuple of str
        Steps to skip (recorded as SKIPPED in the provenance).
    run : str
        The run the products belong to (their permanent home in a site).
    place : Placement or None
        Where each product's file goes; default beside the input
        (``<folder>/<basename>_<kind>.fits``).
    block_mb : float
        Memory for the stage-1 arrays of one block of integrations, MB
        (:func:`block_size`): an exposure needing more is calibrated a block
        of integrations at a time and its ``_rateints`` streamed to its file.
    """

    overrides: Mapping[str, Any] = field(default_factory=dict)
    skip: tuple[str, ...] = ()
    run: str = "manual"
    place: Placement | None = None
    block_mb: float = 64.0


def _check_skip(recipe: Recipe, skipping: set[str]) -> None:
    for name in skipping:
        if name not in recipe.steps or name == "ramp_fit":
            raise UnknownOptionError("step to skip", name,
                                     [s for s in recipe.steps if s != "ramp_fit"])


def _check_profile(meta: ExposureMeta, profile: Profile, path: Path) -> None:
    """Refuse a Level-1 product whose telescope, instrument, detector or filter the profile lacks."""
    where = f"{path}: PRIMARY header: keyword"
    if meta.telescope != profile.mission.telescope:
        raise ProductFileError(f"{where} TELESCOP = {meta.telescope!r}: expected "
                               f"{profile.mission.telescope!r} (profile {profile.mission.name})")
    names = {i.name: i for i in profile.instruments}
    if meta.instrument not in names:
        raise ProductFileError(f"{where} INSTRUME = {meta.instrument!r}: expected one of "
                               f"{', '.join(sorted(names))} (profile {profile.mission.name})")
    inst = names[meta.instrument]
    detectors = {d.name: d for d in inst.detectors}
    if meta.detector not in detectors:
        raise ProductFileError(f"{where} DETECTOR = {meta.detector!r}: expected one of "
                               f"{', '.join(sorted(detectors))} ({inst.name})")
    filters = sorted(f.name for f in inst.filters)
    if meta.filter not in filters:
        raise ProductFileError(f"{where} FILTER = {meta.filter!r}: expected one of "
                               f"{', '.join(filters)} ({inst.name})")
    det = detectors[meta.detector]
    for axis, start, size, full in ((1, meta.substrt1, meta.subsize1, det.nx),
                                    (2, meta.substrt2, meta.subsize2, det.ny)):
        if start < 1 or start + size - 1 > full:
            raise ProductFileError(f"{where} SUBSTRT{axis} = {start}, SUBSIZE{axis} = {size}: "
                                   f"expected a subarray inside the {full}-pixel {det.name}")


def check_input(path: Path, profile: Profile) -> ExposureMeta:
    """Check ``path`` is a Level-1 product of ``profile`` that calibration can read.

    Reads the headers only (no data): a whole FITS file, a Level-1 product
    (:func:`~obsflow.models.level1.check_uncal`: keywords, SCI uint16 of the
    right shape), of the profile's telescope, an instrument, detector and
    filter it defines, a subarray on the detector.

    Raises
    ------
    ProductFileError
        One line naming the file, the HDU or keyword and what was expected.
    """
    path = Path(path)
    with open_fits(path, EXPECTED) as hdul:
        check_uncal(hdul, path)
        meta = ExposureMeta.from_header(hdul[0].header)
    _check_profile(meta, profile, path)
    return meta


def integration_bytes(meta: ExposureMeta) -> int:
    """Memory stage 1 needs per integration of ``meta``'s exposure, bytes.

    The float32 working cube, its uint8 group DQ (and a copy of it while
    saturation flags it) and the raw uint16 samples while they are converted
    (8 bytes per sample), and the integration's fitted arrays (SCI,
    variances, DQ, ERR and their big-endian copies on the way to the file:
    36 bytes per pixel).  Measured: a process's peak grows by 1.0 to 1.1
    times the block memory this gives.
    """
    pixels = meta.subsize1 * meta.subsize2
    return pixels * (8 * meta.ngroups + 36)


def block_size(meta: ExposureMeta, recipe: Recipe, params: Mapping[str, Mapping[str, Any]],
               skipping: set[str], block_mb: float) -> int:
    """How many integrations stage 1 calibrates at once: as many as ``block_mb`` holds
    (:func:`integration_bytes`), at least one; all of them when the recipe's jump search
    pools the integrations' differences (``jump.per_integration = false``: it needs them
    all at once; such recipes are for exposures of a few integrations)."""
    if "jump" in recipe.steps and "jump" not in skipping and \
            not params["jump"]["per_integration"]:
        return meta.nints
    fits_in = int(block_mb * 2**20) // integration_bytes(meta)
    return max(1, min(meta.nints, fits_in))


def _stages(recipe: Recipe) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The recipe's steps on the ramps (up to ``ramp_fit``) and on the image (after it)."""
    if "ramp_fit" not in recipe.steps:
        raise ConfigError(f"recipe {recipe.name}: no ramp_fit step")
    cut = recipe.steps.index("ramp_fit") + 1
    ramps, image = recipe.steps[:cut], recipe.steps[cut:]
    wrong = [s for s in ramps if STEPS[s].stage != 1] + [s for s in image if STEPS[s].stage != 2]
    if wrong:
        raise ConfigError(f"recipe {recipe.name}: steps {', '.join(wrong)} on the wrong side of "
                          "ramp_fit (stage-1 steps before it, stage-2 steps after it)")
    return ramps, image


def _load(work: Work, cube: UncalBlocks, start: int, stop: int, skipping: set[str]) -> None:
    """Put integrations ``start:stop`` of the cube into ``work`` (float32 DN and group DQ)."""
    work.data, work.groupdq = cube.read(start, stop)
    if "dq_init" in skipping:
        work.pixeldq = np.zeros(work.data.shape[2:], np.uint32)
        if work.groupdq is None:
            work.groupdq = np.zeros(work.data.shape, np.uint8)


def _run(work: Work, names: tuple[str, ...], params: dict[str, dict[str, Any]],
         skipping: set[str], log: bool = True) -> list[StepRecord]:
    """Run ``names`` on ``work``; the cube is dropped after ``ramp_fit``."""
    records = []
    for name in names:
        status = "SKIPPED: by request" if name in skipping else STEPS[name].run(work, params[name])
        records.append(StepRecord(name, status, dict(params[name])))
        logger.log(logging.INFO if log else logging.DEBUG, "%s: %s %s", work.meta.basename,
                   name, status)
        if name == "ramp_fit":
            work.data = np.empty((0,), np.float32)  # the cube is no longer needed
            work.groupdq = None
    return records


def _stream(cube: UncalBlocks, work: Work, names: tuple[str, ...],
            params: dict[str, dict[str, Any]], skipping: set[str], block: int, made: _Made,
            place: Placement) -> tuple[list[StepRecord], CalibratedProduct]:
    """Stage 1 a block of integrations at a time, ``_rateints`` written block by block.

    Each block's integrations go to the file as they are fitted, their
    Poisson variances per unit photon rate; the exposure is summed
    (:class:`~obsflow.calibrate.ramps.RampSums`).  Then a second pass over
    the file scales every integration's Poisson variance by its pixel's
    exposure photon rate (as :func:`~obsflow.calibrate.ramps.fit_ramps`
    does in memory) and fills ERR.  Memory: one block, whatever the number
    of integrations.
    """
    from obsflow.calibrate.ramps import RampSums, finish_exposure, scale_integrations

    m = work.meta
    work.sums = RampSums.zeros((m.subsize2, m.subsize1))
    ref = made.ref("rateints", m)
    spans = [(i, min(i + block, m.nints)) for i in range(0, m.nints, block)]
    steps: list[StepRecord] = []
    with contextlib.ExitStack() as stack:
        for start, stop in spans:
            _load(work, cube, start, stop, skipping)
            records = _run(work, names, params, skipping, log=not start)
            if not start:
                steps, prov1 = records, _provenance_for(made, records, 1)
                out = stack.enter_context(RateIntsWriter(place(ref), m, ref, prov1,
                                                         _stage1_header(work)))
            elif records != steps:
                raise CalibrationError(f"{m.basename}: integrations {start}:{stop} went through "
                                       f"the steps otherwise than the first block ({records} "
                                       f"against {steps})")
            ints, pixeldq = work.ints, work.pixeldq
            assert ints is not None and pixeldq is not None
            out.write(start, sci=ints.slope, dq=ints.dq | pixeldq[None],
                      var_rnoise=ints.var_rnoise)
            out.write(start, final=False, var_poisson=ints.var_poisson_unit)
            work.ints = None
        fit, lam = finish_exposure(work.sums, work.ref("GAIN"))
        work.set_fit(fit)
        for start, stop in spans:
            var_poisson = out.read("var_poisson", start, stop)
            err = np.empty_like(var_poisson)
            scale_integrations(var_poisson, out.read("var_rnoise", start, stop), lam, err)
            out.write(start, var_poisson=var_poisson, err=err)
    assert out.written is not None
    return steps, _output(ref, out.written, prov1)


def calibrate_product(path: Path, refs: RefSource, profile: Profile,
                      options: CalibrationOptions | None = None) -> list[CalibratedProduct]:
    """Run one Level-1 product through its recipe; return the products written.

    An exposure whose stage-1 arrays exceed ``options.block_mb``
    (:func:`block_size`) is calibrated a block of integrations at a time,
    read from the file block by block, its ``_rateints`` written as it goes
    (:func:`_stream`); the products are the same as in one piece.

    Parameters
    ----------
    path : Path
        ``_uncal.fits`` product.
    refs : RefSource
        :class:`obsflow.refdata.SiteRefs` (a site's registry, one reference
        context) or :class:`obsflow.refdata.FolderRefs` (a folder of files).
    profile : Profile
        The observatory profile (detector geometry, pixel scale).
    options : CalibrationOptions, optional
        Parameter overrides, skipped steps, run, placement, block memory.

    Returns
    -------
    list of CalibratedProduct
        ``rate``, ``rateints`` and, when stage 2 ran, ``cal``: each with its
        reference, file, sha256 (hashed once, while written) and provenance.

    Raises
    ------
    ProductFileError
        ``path`` is not a Level-1 product of ``profile`` (:func:`check_input`);
        nothing is written.
    """
    opts = options or CalibrationOptions()
    path = Path(path)
    place = opts.place or beside(path.parent)
    with UncalBlocks(path) as cube:
        meta = cube.meta
        _check_profile(meta, profile, path)
        recipe = choose_recipe(meta)
        params = resolve_parameters(recipe, opts.overrides)
        skipping = set(opts.skip)
        _check_skip(recipe, skipping)
        ramps, image = _stages(recipe)
        chosen = _select_refs(recipe, meta, refs, skipping)
        made = _made(recipe, cube.ref, path, chosen, opts.run, refs)
        work = Work(meta, profile.instrument(meta.instrument), np.empty((0,), np.float32), None,
                    chosen)
        block = block_size(meta, recipe, params, skipping, opts.block_mb)
        rateints = None
        if block >= meta.nints:
            _load(work, cube, 0, meta.nints, skipping)
            steps = _run(work, ramps, params, skipping)
        else:
            logger.info("%s: %d integrations in blocks of %d (block_mb = %g)", meta.basename,
                        meta.nints, block, opts.block_mb)
            steps, rateints = _stream(cube, work, ramps, params, skipping, block, made, place)
    stage2 = any(STEPS[s].stage == 2 and s not in skipping for s in recipe.steps)
    return _stage2_while_writing(work, made, steps, image, params, skipping, stage2, place,
                                 rateints)


def warm_up() -> None:
    """Load the compiled kernels of jump detection and ramp fitting into this process.

    Numba loads a cached kernel on its first call in a process (~0.3 s for
    all of them); a worker calls this once at start so its first exposure
    does not pay for it.  Runs saturation, dark, reference pixels, linearity, jumps, large-event regions
    and the fit on a tiny synthetic ramp with the array types real data has
    (float32 cube, uint8 DQ, float32 maps), then the stage-2 flat field,
    photometric scaling (with and without a pixel-area map) and background statistics on
    its rates, and the products' compiled byte swap and checksum pass on them.
    """
    from obsflow.calibrate.corrections import (
        correct_linearity_inplace,
        flag_saturation,
        subtract_dark_inplace,
    )
    from obsflow.calibrate.image import ImageArrays, apply_flat, apply_photom, estimate_background
    from obsflow.calibrate.jumps import detect_jumps
    from obsflow.calibrate.ramps import fit_ramps
    from obsflow.calibrate.refpix import correct_reference_pixels_inplace, reference_layout
    from obsflow.calibrate.regions import flag_disks_inplace, large_regions
    from obsflow.fitschecksum import disk_form_and_sum
    from obsflow.models.dq import DQ

    shape = (1, 6, 4, 4)
    data = np.cumsum(np.full(shape, 10.0, dtype=np.float32), axis=1)
    plane = np.zeros(shape[2:], np.float32)
    flag_saturation(data, np.zeros(shape, np.uint8), plane + 6e4, np.zeros(shape[2:], np.uint32))
    subtract_dark_inplace(data, plane, np.zeros(shape[1]))
    pixeldq = np.zeros(shape[2:], np.uint32)
    pixeldq[0] = pixeldq[:, 0] = DQ.REFERENCE_PIXEL
    correct_reference_pixels_inplace(data, reference_layout(pixeldq, 0, 2), side_smoothing=3)
    correct_linearity_inplace(data, np.array([0.0, 1.0, 0.0]))
    dq = np.zeros(shape[2:], np.uint8)
    large_regions(dq, 4, 1)
    flag_disks_inplace(dq, np.zeros(1), np.zeros(1), np.ones(1), np.uint8(4), np.uint8(3))
    groupdq = np.zeros(shape, dtype=np.uint8)
    noise, gain = np.full(shape[2:], 5.0, np.float32), np.full(shape[2:], 2.0, np.float32)
    detect_jumps(data, groupdq, read_noise=noise, gain=gain, nframes=1)
    fit = fit_ramps(data, groupdq, read_noise=noise, gain=gain, frame_time=10.0,
                    group_time=10.0, nframes=1, groupgap=0)
    image = ImageArrays(fit.slope, fit.err, fit.var_poisson, fit.var_rnoise, pixeldq)
    image = apply_photom(apply_flat(image, plane + np.float32(1.0)), 1.0)
    area = plane + np.float32(1.0)
    area.flags.writeable = False  # as relative_pixel_area keeps its maps
    image = apply_photom(image, 1.0, area)  # the kernel of distorted detectors
    estimate_background(image.sci, image.dq)
    for array in (image.sci, image.dq):  # the products' writers: float32 and uint32 arrays
        disk_form_and_sum(array)
