"""The ``colour`` job: a target's colour image from the current ``_i2d`` mosaics of three filters.

Enqueued (:func:`colour_specs`) by the ``image3`` job that registered a
mosaic — a new one or a new version of one (reprocessing) — when the
mosaic's program and target then have current mosaics in three or more
filters.  Of each filter the newest current mosaic counts; red is the
longest wavelength (pivot of the filter), blue the shortest, green the
middle one (of more than three filters: the reddest, the median, the
bluest).  The job key is ``colour:<digest of the three mosaics' UUIDs>``:
one job per choice of mosaics, so a new version of any of them makes a new
job and a new version of the colour image.

The job (:func:`make_colour`):

1. returns at once if the colour image of those three mosaics is registered
   already (a re-run after a crash never rewrites a catalogued file), or
   they are no longer the target's choice (a newer mosaic came: that one's
   job makes the colour image).  A campaign remaking the three mosaics one
   after the other can still make an intermediate version (a new mosaic
   with two old ones) when its job runs before the next mosaic is
   registered; the last mosaic's job makes the final one;
2. resamples each mosaic's SCI (weights: its WHT) onto one common grid with
   the stage-3 :class:`~obsflow.stage3.resample.Resampler` (square kernel,
   pixfrac 1): :func:`obsflow.stage3.grid.output_grid` over the three, at
   the red mosaic's pixel scale, north up; then registers the green and
   blue mosaics on the red one's stars
   (:func:`obsflow.stage3.colour.channel_shift`: each mosaic was aligned
   alone, and on a field with too few stars for the absolute alignment
   keeps its visit's pointing error) and resamples them again with that
   shift — so a star is on the same pixel in every channel (the shifts
   are in the provenance's ``resample`` step);
3. combines them with :func:`obsflow.stage3.colour.colour_image` (asinh
   stretch on each channel's background and noise) into
   ``<basename>_clr.png`` (its product reference and provenance in PNG text
   chunks ``obsflow-product`` and ``obsflow-provenance``) and the deep-zoom
   pyramid beside it (``<basename>_clr.dzi``, ``<basename>_clr_files/``),
   the pyramid first (a registered PNG always has its tiles);
4. registers the PNG (kind ``clr``, level 3) linked to its three mosaics:
   its archive row (``obs_id`` its basename, the filters red/green/blue) has
   the latest release date of the three, so it is hidden exactly as long as
   any of its mosaics is.

Identity: the data id is (program, the lowest observation of the three,
visit 0, exposure 0, detector ``RGB``) — a new choice of mosaics of a target
is a new version of the same colour image — and the UUID is
``ProductRef.derived("clr", data_id, run, <digest>)``.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from obsflow.models.identity import DataId, ProductRef

if TYPE_CHECKING:
    from obsflow.orchestrate.handlers import JobContext, Result
    from obsflow.orchestrate.jobs import JobSpec

__all__ = ["COLOUR_DETECTOR", "COLOUR_RECIPE", "PNG_PRODUCT_KEY", "PNG_PROVENANCE_KEY",
           "ColourInput", "colour_picks", "colour_ref", "colour_specs", "common_channels",
           "common_grid", "dzi_path", "make_colour", "registered_channels"]

COLOUR_DETECTOR = "RGB"
"""The 'detector' of a colour image's data id."""

COLOUR_RECIPE = "colour"
"""The recipe recorded in a colour image's provenance."""

PNG_PRODUCT_KEY = "obsflow-product"
"""PNG text chunk holding the product reference (JSON)."""

PNG_PROVENANCE_KEY = "obsflow-provenance"
"""PNG text chunk holding the provenance (JSON)."""


@dataclass(frozen=True)
class ColourInput:
    """One channel's mosaic: its reference, product id, file (under the products folder),
    filter and pivot wavelength (micron)."""

    ref: ProductRef
    product_id: str
    path: str
    filter: str
    pivot_um: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (job inputs)."""
        return {"ref": self.ref.as_dict(), "product_id": self.product_id, "path": self.path,
                "filter": self.filter, "pivot_um": self.pivot_um}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColourInput:
        """Inverse of :meth:`as_dict`."""
        return cls(ProductRef.from_dict(data["ref"]), str(data["product_id"]), str(data["path"]),
                   str(data["filter"]), float(data["pivot_um"]))


def colour_picks(session: Session, program: str, target: str) -> list[ColourInput]:
    """[red, green, blue] current mosaics of ``target`` in ``program``, or [] with fewer
    than three filters (module docstring)."""
    from obsflow.archive.schema import Exposure, Product

    rows = session.execute(
        select(Product, Exposure).join(Exposure, Product.exposure_id == Exposure.id)
        .where(Exposure.program == program, Exposure.target_name == target,
               Product.kind == "i2d", Product.is_latest)
        .order_by(Product.created.desc(), Product.id.desc())).all()
    best: dict[str, ColourInput] = {}
    for product, exposure in rows:
        if exposure.filter in best or exposure.em_min is None or exposure.em_max is None:
            continue
        data_id = DataId(exposure.program, exposure.observation, exposure.visit,
                         exposure.exposure, exposure.detector)
        best[exposure.filter] = ColourInput(
            ProductRef("i2d", data_id, product.run, product.uuid), product.product_id,
            product.path, exposure.filter, (exposure.em_min + exposure.em_max) / 2e-6)
    chosen = sorted(best.values(), key=lambda c: (-c.pivot_um, c.filter))
    if len(chosen) < 3:
        return []
    return [chosen[0], chosen[len(chosen) // 2], chosen[-1]]


def _digest(inputs: list[ColourInput]) -> str:
    return hashlib.sha256(",".join(c.ref.uuid for c in inputs).encode()).hexdigest()


def colour_ref(inputs: list[ColourInput], run: str) -> ProductRef:
    """The colour image's reference (module docstring, Identity)."""
    first = inputs[0].ref.data_id
    data_id = DataId(first.program, min(c.ref.data_id.observation for c in inputs), 0, 0,
                     COLOUR_DETECTOR)
    return ProductRef.derived("clr", data_id, run, _digest(inputs))


def colour_specs(engine: Engine, mosaic: ProductRef, priority: int = 0) -> list[JobSpec]:
    """The ``colour`` job the registration of ``mosaic`` (an ``_i2d``) completes, if any."""
    from obsflow.archive.schema import Exposure, Product
    from obsflow.orchestrate.jobs import JobSpec

    with Session(engine) as session:
        target = session.scalar(select(Exposure.target_name).join(
            Product, Product.exposure_id == Exposure.id).where(Product.uuid == mosaic.uuid))
        picks = [] if target is None else colour_picks(session, mosaic.data_id.program, target)
    if not picks:
        return []
    return [JobSpec("colour", f"colour:{_digest(picks)}",
                    {"mosaics": [c.as_dict() for c in picks], "run": mosaic.run}, priority)]


def common_grid(mosaics: list[Any]) -> Any:
    """The common north-up TAN grid of mosaics (objects with ``sci`` and ``wcs``): covering
    them all, at the first one's pixel scale."""
    from obsflow.stage3.grid import output_grid, pixel_scale_arcsec

    return output_grid([m.wcs.celestial for m in mosaics], [m.sci.shape for m in mosaics],
                       pixel_scale=pixel_scale_arcsec(mosaics[0].wcs.celestial))


def common_channels(mosaics: list[Any], grid: Any = None,
                    shifts: list[tuple[float, float]] | None = None
                    ) -> tuple[list[np.ndarray], list[np.ndarray], Any]:
    """The SCI and weight of each mosaic (objects with ``sci``, ``wht``, ``wcs``) resampled
    onto ``grid`` (default :func:`common_grid`); and that grid.

    Pure arrays in, arrays out: square kernel, pixfrac 1, the mosaic's WHT as
    weights (surface brightness: no scaling).  ``shifts`` (dx, dy) grid pixels
    per mosaic move it by that much on the grid (its WCS's CRPIX less the
    shift: the cross-filter registration of :func:`make_colour`).
    """
    from obsflow.stage3.pixmap import pixel_map
    from obsflow.stage3.resample import Resampler

    grid = common_grid(mosaics) if grid is None else grid
    scis, whts = [], []
    for k, m in enumerate(mosaics):
        wcs = m.wcs.celestial.deepcopy()
        if shifts is not None:
            wcs.wcs.crpix = wcs.wcs.crpix - np.asarray(shifts[k], np.float64)
            wcs.wcs.set()
        weight = np.where(np.isfinite(m.sci), np.asarray(m.wht, np.float32), 0.0)
        resampler = Resampler(grid, "square", 1.0)
        resampler.add(np.nan_to_num(np.asarray(m.sci, np.float32)), weight.astype(np.float32),
                      pixel_map(wcs, m.sci.shape, grid))
        out = resampler.finish()
        scis.append(np.array(out.sci, np.float32))
        whts.append(np.array(out.wht, np.float32))
    return scis, whts, grid


def registered_channels(mosaics: list[Any], fwhm_pix: list[float]
                        ) -> tuple[list[np.ndarray], list[np.ndarray], Any, list[Any]]:
    """:func:`common_channels` with the second and third mosaics registered on the first's
    stars (:func:`obsflow.stage3.colour.channel_shift`; no shift with fewer than two
    matched stars); also the shifts measured."""
    from obsflow.stage3.colour import ChannelShift, channel_shift

    scis, whts, grid = common_channels(mosaics)
    found = [ChannelShift(0.0, 0.0, 0)] + [
        channel_shift(scis[0], whts[0], scis[k], whts[k], (fwhm_pix[0], fwhm_pix[k]))
        for k in (1, 2)]
    if any(s.dx or s.dy for s in found):
        scis, whts, grid = common_channels(mosaics, grid, [(s.dx, s.dy) for s in found])
    return scis, whts, grid, found


def _provenance(ref: ProductRef, inputs: list[ColourInput], grid: Any, options: Any,
                shifts: list[Any]) -> Any:
    import dataclasses

    from obsflow import __version__
    from obsflow.models.provenance import Provenance, StepRecord
    from obsflow.stage3.grid import pixel_scale_arcsec

    nx, ny = grid.pixel_shape
    return Provenance(run=ref.run, software=__version__, recipe=COLOUR_RECIPE,
                      inputs=tuple(c.ref for c in inputs), steps=(
        StepRecord("resample", "COMPLETE", {
            "kernel": "square", "pixfrac": 1.0, "weight": "WHT",
            "pixel_scale_arcsec": pixel_scale_arcsec(grid), "shape": [int(ny), int(nx)],
            "crval": [float(v) for v in grid.wcs.crval],
            "registered_on": inputs[0].filter,
            "shifts_pix": {c.filter: [round(s.dx, 3), round(s.dy, 3)]
                           for c, s in zip(inputs, shifts, strict=True)},
            "matched_stars": {c.filter: s.matched for c, s in zip(inputs, shifts, strict=True)}}),
        StepRecord("colour_image", "COMPLETE", {
            "channels": {"red": inputs[0].filter, "green": inputs[1].filter,
                         "blue": inputs[2].filter},
            "stretch": "asinh (Lupton et al. 2004)", **dataclasses.asdict(options)})))


def _fwhm_pix(ctx: JobContext, mosaics: list[Any]) -> list[float]:
    """FWHM of each mosaic's PSF in its own pixels: the optics, the detector pixel, the
    drizzle drop and the output pixel (:class:`obsflow.stage3.psfmodel.MosaicPSF`)."""
    from obsflow.stage3.grid import pixel_scale_arcsec
    from obsflow.stage3.psfmodel import MosaicPSF

    profile = ctx.cfg.load_profile()
    return [MosaicPSF.for_image(profile, m.meta.instrument, m.meta.filter,
                                pixel_scale_arcsec(m.wcs.celestial),
                                float(m.header.get("PIXFRAC", 1.0))).blurred_fwhm_pix
            for m in mosaics]


def dzi_path(png: Path) -> Path:
    """The deep-zoom descriptor beside a colour PNG (``<basename>_clr.dzi``)."""
    return png.with_suffix(".dzi")


def make_colour(ctx: JobContext, inputs: dict[str, Any]) -> Result:
    """The ``colour`` job of the three mosaics ``inputs`` names (module docstring)."""
    from obsflow.archive.register import Registration, register_outputs
    from obsflow.archive.schema import Exposure, Product
    from obsflow.fileio import sha256_file
    from obsflow.orchestrate.handlers import Result, archive_of
    from obsflow.stage3.colour import ColourOptions, colour_image, write_deep_zoom, write_image
    from obsflow.stage3.product import read_i2d

    started = time.perf_counter()
    picks = [ColourInput.from_dict(d) for d in inputs["mosaics"]]
    ref = colour_ref(picks, str(inputs["run"]))
    with Session(ctx.engine) as session:
        done = session.scalar(select(Product.product_id).where(Product.uuid == ref.uuid))
        target = session.scalar(select(Exposure.target_name).join(
            Product, Product.exposure_id == Exposure.id).where(Product.uuid == picks[0].ref.uuid))
        now = [] if target is None else colour_picks(session, ref.data_id.program, target)
    if done is not None:
        return Result({"product_id": done, "created": False})
    if [c.ref.uuid for c in now] != [c.ref.uuid for c in picks]:
        return Result({"superseded": True})
    mosaics = [read_i2d(ctx.cfg.products_dir / c.path) for c in picks]
    scis, whts, grid, shifts = registered_channels(mosaics, _fwhm_pix(ctx, mosaics))
    del mosaics
    options = ColourOptions()
    rgb = colour_image(scis[0], scis[1], scis[2], weights=(whts[0], whts[1], whts[2]),
                       options=options)
    prov = _provenance(ref, picks, grid, options, shifts)
    path = ctx.cfg.products_dir / ref.relpath()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_deep_zoom(path.parent, path.stem, rgb)
    write_image(path, rgb, text={PNG_PRODUCT_KEY: json.dumps(ref.as_dict()),
                                 PNG_PROVENANCE_KEY: prov.to_json()})
    record = register_outputs(archive_of(ctx), [Registration(
        path, ref, prov, sha256_file(path), path.stat().st_size)])[0]
    return Result({"product_id": record.product_id, "product": ref.relpath(),
                   "created": record.created, "filters": [c.filter for c in picks],
                   "mosaics": [c.product_id for c in picks], "shape": list(rgb.shape[:2]),
                   "seconds": round(time.perf_counter() - started, 3)})
