"""`obsflow simulate`: a virtual observatory from plan to downlink files.

Writes ``OUT/downlink/`` (what a ground station drops in the incoming
folder), ``OUT/truth/`` (see :mod:`obsflow.simulate.truth`), ``OUT/refs/``
(reference files, with the absolute astrometric catalog of
:mod:`obsflow.simulate.astrocat`) and, on request, ``OUT/level1/`` (the Level-1 products
ingest should rebuild, for developing calibration without ingest).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table
from astropy.time import Time

from obsflow.fileio import atomic_path, sha256_file
from obsflow.models.level1 import Level1, write_uncal
from obsflow.models.metadata import ExposureMeta
from obsflow.models.missiontime import mission_seconds, mjd_utc
from obsflow.models.pointing import detector_wcs
from obsflow.profiles import Instrument, Profile, load_profile
from obsflow.simulate.astrocat import astrometric_catalog, write_astrocat
from obsflow.simulate.cosmic_rays import ReadoutTiming, sample_deposits
from obsflow.simulate.detector import DetectorModel, realize_detector
from obsflow.simulate.downlink import make_dumps
from obsflow.simulate.environment import engineering_samples, ephemeris_table
from obsflow.simulate.packetize import (
    Batch,
    PacketStream,
    assemble,
    obslog_record,
    science_batch,
)
from obsflow.simulate.plan import Plan, PlanOptions, make_plan, make_tso_plan, resolve_subarray
from obsflow.simulate.planned import observe_plan
from obsflow.simulate.ramps import PixelInputs, simulate_ramps
from obsflow.simulate.refs import write_dark_update, write_reference_files
from obsflow.simulate.sky import SceneOptions, make_catalog, render_scene
from obsflow.simulate.truth import write_truth
from obsflow.simulate.tso import TsoOptions, TsoScene, tso_truth_path
from obsflow.telemetry import apid_kinds, encode_engineering

__all__ = ["SimOptions", "SimResult", "simulate"]

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class SimOptions:
    """Options of one simulation run (see ``obsflow simulate --help``)."""

    seed: int = 1
    profile: str = "webb_like"
    exposures: int | None = None
    hours: float | None = None
    subarray: str = "FULL"
    faults: frozenset[str] = frozenset()
    dumps: int = 3
    level1: bool = False
    dark_error: float = 0.0
    """> 0: ``refs/`` holds an early dark measured with this error (DN/s, mean) and
    ``refs_update/`` the better dark delivered later (see :mod:`obsflow.simulate.refs`)."""
    tso: TsoOptions | None = None
    """When given, the plan is one time-series exposure of a transiting planet's star on
    ``subarray`` instead of the programs' pointings (see :mod:`obsflow.simulate.tso`)."""
    scene: SceneOptions | None = None
    """When given, every target's field holds this scene instead of its own (e.g. a
    sparse field of bright stars for alignment tests)."""
    plan: Path | None = None
    """When given, observe this plan file (``obsflow plan make``) instead of the built-in
    plan (see :mod:`obsflow.simulate.planned`); ``truth/status.json`` gets each
    observation's status (the truth :mod:`obsflow.planning.status` is tested against)."""
    plan_failures: int | None = None
    """With ``plan``: how many observations to skip or fail (default one in eight)."""
    colour_filters: int = 0
    """> 0: the built-in plan starts with the deep field in this many filters (see
    :class:`obsflow.simulate.plan.PlanOptions`)."""
    dither_points: int | None = None
    """At most this many dither positions per observation of the built-in plan."""


@dataclass
class SimResult:
    """What was written: folders, files and counts."""

    out: Path
    plan: Plan
    downlink_files: list[str] = field(default_factory=list)
    products: list[str] = field(default_factory=list)
    packets: int = 0
    bytes: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    pixel_frames: int = 0


class _Context:
    """Shared, read-only inputs of one run, with the detector realisations cached."""

    def __init__(self, profile: Profile, inst: Instrument, options: SimOptions, out: Path) -> None:
        self.profile, self.inst, self.options, self.out = profile, inst, options, out
        self.epoch = profile.mission.time_epoch_tai
        self._detectors: dict[str, DetectorModel] = {}

    def detector(self, name: str) -> DetectorModel:
        if name not in self._detectors:
            self._detectors[name] = realize_detector(self.inst.detector(name), self.options.seed)
        return self._detectors[name]

    def rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.options.seed, *key])


def _exposure_inputs(ctx: _Context, meta: ExposureMeta, sky: np.ndarray) -> tuple[PixelInputs, np.ndarray]:
    """Per-pixel inputs for one exposure's window, and the true rate (DN/s)."""
    model = ctx.detector(meta.detector)
    spec = model.spec

    def win(a: np.ndarray) -> np.ndarray:
        return model.window(a, meta.substrt1, meta.substrt2, meta.subsize1, meta.subsize2)

    filt_index = [f.name for f in ctx.inst.filters].index(meta.filter)
    qe = win(model.flat(ctx.inst.filter(meta.filter), filt_index))
    alive = win(model.response) > 0
    illum = np.where(alive, sky * qe, 0.0).astype(np.float32)
    columns = np.arange(meta.substrt1 - 1, meta.substrt1 - 1 + meta.subsize1)
    inputs = PixelInputs(
        illum_e_s=illum, dark_e_s=win(model.dark_e_s), gain=win(model.gain),
        read_noise_dn=win(model.read_noise_dn), superbias=win(model.superbias),
        full_well_e=spec.full_well_e, nonlinearity=tuple(spec.nonlinearity),
        adc_max=spec.adc_max_dn, amp_of_column=(columns // (spec.nx // spec.amplifiers)).astype(np.intp),
        column_parity=(columns % 2).astype(np.intp), drift_dn=spec.refpix_drift_dn,
        row_noise_dn=spec.row_noise_dn)
    return inputs, illum / win(model.gain)


def _group_times(ctx: _Context, meta: ExposureMeta, timing: ReadoutTiming) -> np.ndarray:
    """Mission seconds of the last read of every group, shape (nints, ngroups)."""
    t0 = float(mission_seconds(meta.expstart, ctx.epoch))
    last = np.array([timing.last_read(g) for g in range(meta.ngroups)], np.float64)
    ints = np.arange(meta.nints)[:, None] * (timing.frames + 1)
    return t0 + (ints + 1 + last[None, :]) * meta.frame_time


def _simulate_exposure(ctx: _Context, meta: ExposureMeta, catalog: Table,
                       result: SimResult) -> Batch:
    model = ctx.detector(meta.detector)
    spec = model.spec
    ra_v1, dec_v1, pa_v3 = result.plan.true_pointing(meta)  # the header says meta's
    wcs = detector_wcs(ra_v1, dec_v1, pa_v3,
                       (spec.v2_arcsec, spec.v3_arcsec, spec.rotation_deg),
                       ctx.inst.pixel_scale_arcsec,
                       (spec.nx, spec.ny, meta.substrt1, meta.substrt2, meta.subsize1, meta.subsize2),
                       spec.distortion)
    sky = render_scene(catalog, wcs, (meta.subsize2, meta.subsize1),
                       ctx.inst.filter(meta.filter), ctx.inst,
                       (ctx.options.scene or SceneOptions()).sky_gradient)
    timing = ReadoutTiming(meta.ngroups, meta.nframes, meta.groupgap, meta.frame_time)
    scene = _tso_scene(ctx, meta, wcs, sky, timing) if ctx.options.tso is not None else None
    inputs, rate = _exposure_inputs(ctx, meta, sky if scene is None else scene.nominal())
    rng = ctx.rng(1, meta.exposure_id)
    sensitive = inputs.illum_e_s > 0
    deposits = sample_deposits(ctx.profile.cosmic_rays, sensitive.shape, meta.nints, timing,
                               sensitive, rng)
    illumination = None
    if scene is not None:
        flat = np.divide(inputs.illum_e_s, scene.nominal(), out=np.zeros_like(inputs.illum_e_s),
                         where=inputs.illum_e_s > 0)

        def illumination(i: int) -> np.ndarray:
            return (scene.illumination(i) * flat).astype(np.float32)

        scene.truth_table().write(tso_truth_path(ctx.out / "truth", meta.basename),
                                  overwrite=True)
    cube = simulate_ramps(inputs, timing, meta.nints, deposits, rng, illumination)
    result.pixel_frames += cube[0, 0].size * meta.nints * meta.ngroups * meta.nframes
    truth_dir = ctx.out / "truth"
    write_truth(truth_dir / f"{meta.basename}_truth.fits", meta, cube, rate, sky, deposits,
                (ra_v1, dec_v1, pa_v3))
    if ctx.options.level1:
        path = ctx.out / "level1" / f"{meta.basename}_uncal.fits"
        write_uncal(path, Level1(cube, meta, wcs=wcs))
        result.products.append(path.name)
    return science_batch(cube, spec.apid, meta.exposure_id, _group_times(ctx, meta, timing),
                         ctx.profile.packets.target_payload_bytes)


def _tso_scene(ctx: _Context, meta: ExposureMeta, wcs: Any, background: np.ndarray,
               timing: ReadoutTiming) -> TsoScene:
    """The time-series scene of ``meta``: its star, transit and pointing (see ``simulate.tso``)."""
    assert ctx.options.tso is not None
    last = _group_times(ctx, meta, timing)
    half_group = (meta.nframes - 1) / 2 * meta.frame_time
    mid = mjd_utc((last[:, 0] + last[:, -1]) / 2 - half_group, ctx.epoch)
    x0, y0 = wcs.world_to_pixel_values(meta.target_ra, meta.target_dec)
    filt = ctx.inst.filter(meta.filter)
    return TsoScene(ctx.options.tso, float(x0), float(y0), mid, (meta.expstart, meta.expend),
                    background, ctx.inst.psf_fwhm_pix_per_um * filt.pivot_um,
                    ctx.inst.pixel_scale_arcsec, ctx.rng(6, meta.exposure_id))


def _field_radius_arcsec(inst: Instrument) -> float:
    """Radius around a target covering every detector at any dither, arcsec."""
    reach = max(np.hypot(d.v2_arcsec, d.v3_arcsec) + np.hypot(d.nx, d.ny) / 2 * inst.pixel_scale_arcsec
                for d in inst.detectors)
    return float(reach + 10.0)


def _catalogs(ctx: _Context, plan: Plan) -> dict[str, Table]:
    catalogs = {}
    for k, target in enumerate(plan.targets):
        table = make_catalog(target.ra, target.dec, _field_radius_arcsec(ctx.inst),
                             list(ctx.inst.filters), ctx.rng(2, k),
                             ctx.options.scene or target.scene)
        table.write(ctx.out / "truth" / f"sources_{target.name}.ecsv", overwrite=True)
        catalogs[target.name] = table
    return catalogs


def _engineering_batch(ctx: _Context, t0: float, t1: float) -> tuple[Batch, Table]:
    times, values = engineering_samples(ctx.profile, t0, t1, ctx.rng(3))
    n = times.size
    payloads = encode_engineering(values, ctx.profile.engineering.channels)
    table = Table({"mjd_utc": mjd_utc(times, ctx.epoch), "mission_s": times})
    for k, name in enumerate(ctx.profile.engineering.channels):
        table[name] = values[:, k]
    zeros = np.zeros(n, np.int64)
    return Batch(ctx.profile.apids.engineering, times, zeros, zeros, zeros, np.arange(n),
                 payloads), table


def _obslog_batch(ctx: _Context, plan: Plan) -> Batch:
    """One variable-length JSON record per planned product, at its start time."""
    records, times = [], []
    for meta in plan.exposures:
        apid = ctx.inst.detector(meta.detector).apid
        records.append(obslog_record(meta, apid, ctx.profile.packets.target_payload_bytes))
        times.append(float(mission_seconds(meta.expstart, ctx.epoch)))
    n = len(records)
    zeros = np.zeros(n, np.int64)
    ids = np.array([m.exposure_id for m in plan.exposures], np.int64)
    return Batch(ctx.profile.apids.housekeeping, np.asarray(times) - 1e-3, ids, zeros, zeros,
                 np.arange(n), records)


def _dump_name(ctx: _Context, index: int, last_time: float, retransmission: bool) -> str:
    contact = Time(float(mjd_utc(last_time + 1800.0, ctx.epoch)), format="mjd", scale="utc")
    stamp = contact.strftime("%Y%m%dT%H%M%S")
    suffix = "_retx" if retransmission else ""
    return f"{ctx.profile.mission.telescope.lower()}_{stamp}_d{index:03d}{suffix}.ccsds"


def _write_bytes(path: Path, data: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        data.tofile(tmp)


def _write_downlink(ctx: _Context, stream: PacketStream, plan: Plan,
                    result: SimResult) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Write dumps and the ephemeris; return (file manifest, packet fault records)."""
    science = set(ctx.profile.science_apids())
    dumps, fates = make_dumps(stream, science, ctx.options.faults, ctx.options.dumps, ctx.rng(4))
    manifest: list[dict[str, Any]] = []
    downlink = ctx.out / "downlink"
    for d in dumps:
        last = float(stream.time.max()) + 12 * 3600.0 if d.retransmission else float(
            stream.time[d.ids].max())
        name = _dump_name(ctx, d.index, last, d.retransmission)
        _write_bytes(downlink / name, d.render(stream))
        manifest.append({"file": name, "dump": d.index, "retransmission": d.retransmission,
                         "packets": int(d.ids.size), "truncated_at": d.truncate_at,
                         "bytes": (downlink / name).stat().st_size,
                         "sha256": sha256_file(downlink / name)})
        result.downlink_files.append(name)
        result.bytes += int(manifest[-1]["bytes"])
    t0 = float(stream.time.min())
    ephem = ephemeris_table(ctx.profile, t0, float(stream.time.max()),
                            lambda s: mjd_utc(s, ctx.epoch))
    name = f"{ctx.profile.mission.telescope.lower()}_{plan.start_utc[:10].replace('-', '')}_ephem.ecsv"
    with atomic_path(downlink / name) as tmp:
        ephem.write(tmp, format="ascii.ecsv", overwrite=True)  # atomic_path made it, empty
    result.downlink_files.append(name)
    names = {d["dump"]: d["file"] for d in manifest}
    for f in fates:
        f["file"] = names.get(f.get("dump", -1), "")
        f.setdefault("dump", 0)
        result.faults[f["fault"]] = result.faults.get(f["fault"], 0) + 1
    return manifest + [{"file": name, "kind": "ephemeris"}], fates


def _write_json(path: Path, data: object) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str))


def simulate(out: Path, options: SimOptions, progress: Progress | None = None) -> SimResult:
    """Run the virtual observatory; see the module docstring for what is written.

    ``progress(stage, done, total)`` is called as work advances.  The same
    ``options`` give byte-identical files.
    """
    profile = load_profile(options.profile)
    inst = profile.instruments[0]
    subarray = resolve_subarray(inst, options.subarray)
    out = Path(out)
    for sub in ("downlink", "truth", "refs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    status = None
    if options.plan is not None:
        plan, status = observe_plan(profile, options.plan, options.seed, options.plan_failures)
    elif options.tso is not None:
        plan = make_tso_plan(profile, options.seed, subarray, options.tso.nints,
                             options.tso.ngroups, options.tso.readpatt)
    else:
        plan = make_plan(profile, PlanOptions(seed=options.seed, exposures=options.exposures,
                                              hours=options.hours, subarray=subarray,
                                              colour_filters=options.colour_filters,
                                              dither_points=options.dither_points))
    ctx = _Context(profile, inst, options, out)
    result = SimResult(out, plan)
    report = progress or (lambda stage, done, total: None)
    used = sorted({m.detector for m in plan.exposures})
    useafter = Time(Time(plan.start_utc).mjd - 30, format="mjd").isot
    for k, det in enumerate(used):
        report("reference files", k, len(used))
        start = f"{useafter[:10]}T00:00:00"
        write_reference_files(out / "refs", profile, inst, ctx.detector(det), useafter=start,
                              dark_error=options.dark_error)
        if options.dark_error > 0:
            write_dark_update(out / "refs_update", profile, inst, ctx.detector(det), start)
    report("reference files", len(used), len(used))
    catalogs = _catalogs(ctx, plan)
    if options.tso is None:
        write_astrocat(out / "refs", profile, inst,
                       astrometric_catalog([catalogs[t.name] for t in plan.targets],
                                           f"mag_{inst.filters[0].name}", ctx.rng(7)),
                       f"{useafter[:10]}T00:00:00")
    executed = [m for m in plan.exposures if m.status == "executed"]
    batches = []
    for k, meta in enumerate(executed):
        report("exposures", k, len(executed))
        batches.append(_simulate_exposure(ctx, meta, catalogs[meta.target], result))
    report("exposures", len(executed), len(executed))
    t_all = np.concatenate([b.time for b in batches]) if batches else np.zeros(1)
    t0 = float(mission_seconds(Time(plan.start_utc).mjd, ctx.epoch))
    eng, eng_table = _engineering_batch(ctx, t0, float(t_all.max()))
    batches += [eng, _obslog_batch(ctx, plan)]
    counts = {a: int(ctx.rng(5, a).integers(0, 16384)) for a in apid_kinds(profile)}
    report("packets", 0, 1)
    stream = assemble(batches, counts)
    result.packets = len(stream)
    manifest, fates = _write_downlink(ctx, stream, plan, result)
    report("packets", 1, 1)
    eng_table.write(out / "truth" / "engineering.ecsv", overwrite=True)
    _fate_table(fates).write(out / "truth" / "packets.ecsv", overwrite=True)
    _write_json(out / "truth" / "plan.json", plan.to_dict())
    if status is not None:
        _write_json(out / "truth" / "status.json", status)
    _write_json(out / "truth" / "downlink.json", {"files": manifest, "seed": options.seed,
                                                  "profile": profile.mission.name,
                                                  "faults": sorted(options.faults)})
    return result


_FATE_COLUMNS = ("fault", "dump", "file", "packet", "apid", "seq_count", "exposure_id",
                 "packet_index")


def _fate_table(fates: list[dict]) -> Table:  # type: ignore[type-arg]
    """Fault records as a table with fixed columns (empty when there were none)."""
    if not fates:
        return Table({"fault": np.zeros(0, "U10"), "dump": np.zeros(0, np.int64),
                      "file": np.zeros(0, "U80"), **{c: np.zeros(0, np.int64)
                                                     for c in _FATE_COLUMNS[3:]}})
    return Table({c: [f[c] for f in fates] for c in _FATE_COLUMNS})
