"""The observing plan: programs, targets, dithers and the exposure sequence.

A plan is drawn from the profile and a seed: a few programs (one of them
public at once), each with a target, filters, a readout pattern and a
dither pattern, laid out in time with slews and overheads.  Each planned
exposure becomes one :class:`~obsflow.models.ExposureMeta` per detector.

Pointing errors: the ExposureMeta carries the *commanded* pointing (what
the header reports); the telescope really points elsewhere by a random
error per visit (``mission.pointing_error_mas`` per axis and
``roll_error_arcsec`` in roll, one draw per program observation, as a
guide-star acquisition) plus a small one per dither (``dither_error_mas``).
:class:`TruePointing` (``Plan.pointing``, by exposure id; all detectors of
one exposure share it) is what the sky is rendered with.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from astropy import units as u
from astropy.time import Time

from obsflow.exceptions import SimulationError, UnknownOptionError
from obsflow.models.metadata import ExposureMeta
from obsflow.models.pointing import detector_wcs
from obsflow.profiles import Instrument, Profile, Subarray
from obsflow.simulate.sky import SceneOptions

__all__ = ["Plan", "PlanOptions", "Pointed", "Program", "Target", "TruePointing", "make_plan",
           "SCENES", "make_tso_plan", "pointed_exposure", "true_pointing"]


@dataclass(frozen=True)
class Program:
    """A science program. ``exclusive_months`` 0 means public at once."""

    program: str
    pi_name: str
    title: str
    exclusive_months: int
    target: str
    filters_wanted: int
    readpatt: str
    ngroups: int
    nints: int
    dither_points: int


@dataclass(frozen=True)
class Target:
    """A pointing target; ``scene`` is what its field holds (see ``sky.SceneOptions``)."""

    name: str
    ra: float
    dec: float
    scene: SceneOptions = SceneOptions()


@dataclass(frozen=True)
class PlanOptions:
    """What to plan.

    Attributes
    ----------
    seed : int
    exposures : int or None
        Number of pointed exposures to plan (each covers one detector on a
        subarray, all detectors on FULL); 6 when neither this nor ``hours``.
    hours : float or None
        Alternatively, plan exposures until this much time is filled.
    subarray : str
        Subarray name from the profile (``FULL`` for full frames).
    instrument : str or None
        Instrument name; the profile's first when None.
    colour_filters : int
        > 0: the first program (the deep field) starts with this many
        observations, one per filter (its whole dither pattern each), before
        the programs take turns: a target with the mosaics of a colour image.
    dither_points : int or None
        At most this many dither positions per observation (None: each
        program's own pattern).
    """

    seed: int = 1
    exposures: int | None = None
    hours: float | None = None
    subarray: str = "FULL"
    instrument: str | None = None
    colour_filters: int = 0
    dither_points: int | None = None


@dataclass(frozen=True)
class TruePointing:
    """Where the telescope really pointed for one exposure (the truth, never in a header).

    Attributes
    ----------
    exposure_id : int
        The product's exposure id (``ExposureMeta.exposure_id``).
    ra_v1, dec_v1, pa_v3 : float
        True boresight and V3 position angle, degrees.
    east_mas, north_mas : float
        True minus commanded boresight, milliarcseconds on the sky.
    roll_arcsec : float
        True minus commanded PA_V3, arcseconds.
    """

    exposure_id: int
    ra_v1: float
    dec_v1: float
    pa_v3: float
    east_mas: float
    north_mas: float
    roll_arcsec: float


@dataclass(frozen=True)
class Plan:
    programs: list[Program]
    targets: list[Target]
    exposures: list[ExposureMeta]
    start_utc: str
    end_utc: str
    pointing: dict[int, TruePointing] = dataclasses.field(default_factory=dict)
    """True pointing by exposure id (empty: the commanded pointing is the truth)."""

    def to_dict(self) -> dict:  # type: ignore[type-arg]
        return {
            "programs": [dataclasses.asdict(p) for p in self.programs],
            "targets": [dataclasses.asdict(t) for t in self.targets],
            "exposures": [e.to_dict() for e in self.exposures],
            "pointing": [dataclasses.asdict(p) for p in self.pointing.values()],
            "start_utc": self.start_utc,
            "end_utc": self.end_utc,
        }

    def true_pointing(self, meta: ExposureMeta) -> tuple[float, float, float]:
        """(ra_v1, dec_v1, pa_v3) degrees the sky of ``meta`` is rendered with."""
        p = self.pointing.get(meta.exposure_id)
        return (meta.ra_v1, meta.dec_v1, meta.pa_v3) if p is None else (p.ra_v1, p.dec_v1, p.pa_v3)


SCENES = {
    "DEEP-FIELD-1": SceneOptions(star_density=10.0, galaxy_density=400.0),
    "CLUSTER-7": SceneOptions(star_density=30.0, galaxy_density=20.0, cluster_stars=20000,
                              cluster_core_arcsec=25.0, star_mag=(17.0, 27.0)),
    "CAL-FIELD": SceneOptions(star_density=2000.0, galaxy_density=60.0, star_mag=(15.0, 23.0)),
}
"""The scenes of the simulator's named fields (every other target: the default scene)."""
_PROGRAM_TEMPLATES = [
    ("01234", "A. Rivera", "A deep field in every filter", 12, "DEEP-FIELD-1", (53.16, -27.78),
     99, ("MEDIUM8", "SHALLOW4", "RAPID"), 8, 1, 4),
    ("02345", "K. Osei", "Resolved stars of a globular cluster", 12, "CLUSTER-7", (201.70, -47.48),
     2, ("BRIGHT2", "RAPID"), 6, 1, 3),
    ("03456", "M. Chen", "Public calibration field", 0, "CAL-FIELD", (80.49, -69.50),
     1, ("RAPID",), 10, 2, 2),
]
_OVERHEAD_S = 45.0
_SLEW_S = 900.0
_DITHER_ARCSEC = 1.7


def _programs(instrument: Instrument, rng: np.random.Generator, dither_points: int | None = None
              ) -> tuple[list[Program], list[Target]]:
    programs, targets = [], []
    known = {r.name for r in instrument.readout_patterns}
    for (pid, pi, title, months, tname, (ra, dec), nfilt, readouts, ngroups, nints,
         ndither) in _PROGRAM_TEMPLATES:
        readpatt = next((r for r in readouts if r in known), instrument.readout_patterns[0].name)
        maxg = instrument.readout(readpatt).max_ngroups
        programs.append(Program(pid, pi, title, months, tname, min(nfilt, len(instrument.filters)),
                                readpatt, min(ngroups, maxg), nints,
                                min(ndither, dither_points or ndither)))
        jitter = rng.normal(0.0, 0.01, 2)
        targets.append(Target(tname, float(ra + jitter[0]), float(dec + jitter[1]),
                              SCENES.get(tname, SceneOptions())))
    return programs, targets


def _exposure_sequence(programs: list[Program], total: int | None, colour_filters: int = 0
                       ) -> list[tuple[int, int, str, int]]:
    """(program index, observation, filter index, dither position) in execution order.

    Programs take turns: each round gives every program one observation (one
    filter, its whole dither pattern), cycling through the program's filters.
    ``colour_filters`` > 0: the first program's first that many filters come
    first (observations 1, 2, ...), then the turns, the first program's from
    its next filter.
    """
    seq: list[tuple[int, int, str, int]] = []
    limit = total if total is not None else 10_000
    first = min(colour_filters, programs[0].filters_wanted) if colour_filters > 0 else 0
    for f in range(first):
        seq += [(0, f + 1, str(f), d) for d in range(1, programs[0].dither_points + 1)]
    rnd = 0
    while len(seq) < limit:
        for ip, prog in enumerate(programs):
            if ip == 0 and rnd < first:
                continue  # observed first
            for d in range(1, prog.dither_points + 1):
                seq.append((ip, rnd + 1, str(rnd % prog.filters_wanted), d))
        rnd += 1
    return seq[:limit]


def make_plan(profile: Profile, options: PlanOptions) -> Plan:
    """Draw a plan from the profile and ``options`` (deterministic in the seed)."""
    if options.exposures is not None and options.hours is not None:
        raise SimulationError("give exposures or hours, not both")
    n_exposures = options.exposures if options.hours is None else None
    if n_exposures is None and options.hours is None:
        n_exposures = 6
    rng = np.random.default_rng([options.seed, 101])
    inst = profile.instrument(options.instrument) if options.instrument else profile.instruments[0]
    sub = inst.subarray(options.subarray)
    programs, targets = _programs(inst, rng, options.dither_points)
    epoch = Time(profile.mission.time_epoch_tai, scale="tai")
    start = (epoch + (300 + options.seed % 30) * u.day).utc
    t = start
    budget_s = options.hours * 3600.0 if options.hours is not None else None
    exposures: list[ExposureMeta] = []
    next_id, last_prog = 1, -1
    exp_counter: dict[tuple[str, int], int] = {}
    for ip, obs, ifilt, dpos in _exposure_sequence(programs, n_exposures,
                                                    options.colour_filters):
        prog, target = programs[ip], targets[ip]
        readout = inst.readout(prog.readpatt)
        ramp_frames = prog.ngroups * (readout.nframes + readout.groupgap) - readout.groupgap
        duration = prog.nints * (ramp_frames + 1) * sub.frame_time_s
        if ip != last_prog:
            t = t + _SLEW_S * u.s
        if budget_s is not None and (t + duration * u.s - start).to_value(u.s) > budget_s:
            break
        last_prog = ip
        key = (prog.program, obs)
        exp_counter[key] = exp_counter.get(key, 0) + 1
        metas = pointed_exposure(
            profile, inst, sub, Pointed(prog.program, prog.pi_name, prog.title, target, obs,
                                        exp_counter[key], inst.filters[int(ifilt)].name,
                                        readout.name, prog.ngroups, prog.nints, dpos,
                                        prog.dither_points, float(ip * 37.0 + 12.0)),
            t, next_id)
        exposures += metas
        next_id += len(metas)
        t = t + duration * u.s + _OVERHEAD_S * u.s
    exposures = _mark_status(exposures, rng)
    pointing = true_pointing(exposures, profile, np.random.default_rng([options.seed, 102]))
    return Plan(programs, targets, exposures, start.isot, t.isot, pointing)


@dataclass(frozen=True)
class Pointed:
    """One pointed exposure to lay out: who, what, where (one dither position) and how."""

    program: str
    pi_name: str
    title: str
    target: Target
    observation: int
    exposure: int
    filter: str
    readpatt: str
    ngroups: int
    nints: int
    dither_position: int
    dither_npoints: int
    pa_v3: float


def pointed_exposure(profile: Profile, inst: Instrument, sub: Subarray, p: Pointed,
                     start: Time, first_id: int) -> list[ExposureMeta]:
    """The ExposureMeta of ``p`` starting at ``start``: one per detector on FULL frames, the
    first detector alone (the target at the subarray's centre) on a subarray; exposure ids
    from ``first_id`` on.  Its length is ``nints * (frames + 1)`` frame times (resets)."""
    full = sub.nx == inst.detectors[0].nx and sub.ny == inst.detectors[0].ny
    detectors = inst.detectors if full else inst.detectors[:1]
    readout = inst.readout(p.readpatt)
    tgroup = (readout.nframes + readout.groupgap) * sub.frame_time_s
    ramp_frames = p.ngroups * (readout.nframes + readout.groupgap) - readout.groupgap
    duration = p.nints * (ramp_frames + 1) * sub.frame_time_s
    target = p.target
    radius = min(_DITHER_ARCSEC, 0.08 * min(sub.nx, sub.ny) * inst.pixel_scale_arcsec)
    dx, dy = _dither_offset(p.dither_position, p.dither_npoints, radius)
    aim_ra, aim_dec = (target.ra, target.dec) if full else _aim(target, p.pa_v3, inst, sub)
    ra_v1 = aim_ra + dx / 3600.0 / np.cos(np.deg2rad(target.dec))
    dec_v1 = aim_dec + dy / 3600.0
    tend = start + duration * u.s
    return [ExposureMeta(
        telescope=profile.mission.telescope, instrument=inst.name, detector=det.name,
        filter=p.filter, program=p.program, observation=p.observation,
        visit=1, exposure=p.exposure, exposure_id=first_id + k, pi_name=p.pi_name,
        title=p.title, target=target.name, target_ra=target.ra, target_dec=target.dec,
        ra_v1=float(ra_v1), dec_v1=float(dec_v1), pa_v3=p.pa_v3,
        dither_pattern=f"{p.dither_npoints}-POINT", dither_position=p.dither_position,
        dither_npoints=p.dither_npoints, readpatt=readout.name, nints=p.nints,
        ngroups=p.ngroups, nframes=readout.nframes, groupgap=readout.groupgap,
        frame_time=sub.frame_time_s, group_time=tgroup, subarray=sub.name,
        substrt1=sub.xstart, substrt2=sub.ystart, subsize1=sub.nx, subsize2=sub.ny,
        expstart=float(start.mjd), expmid=float((start + duration / 2 * u.s).mjd),
        expend=float(tend.mjd), exposure_duration=float(duration),
    ) for k, det in enumerate(detectors)]


def true_pointing(exposures: list[ExposureMeta], profile: Profile,
                  rng: np.random.Generator) -> dict[int, TruePointing]:
    """Draw the true pointing of every exposure (see the module docstring), by exposure id.

    One visit error (east, north, roll) per (program, observation), one dither
    error per exposure; detectors of one exposure share both.
    """
    m = profile.mission
    visit: dict[tuple[str, int], np.ndarray] = {}
    dither: dict[tuple[str, int, int], np.ndarray] = {}
    out = {}
    for e in exposures:
        vkey, dkey = (e.program, e.observation), (e.program, e.observation, e.exposure)
        if vkey not in visit:
            visit[vkey] = rng.normal(0.0, 1.0, 3) * [m.pointing_error_mas, m.pointing_error_mas,
                                                    m.roll_error_arcsec]
        if dkey not in dither:
            dither[dkey] = rng.normal(0.0, m.dither_error_mas, 2)
        east, north = visit[vkey][:2] + dither[dkey]
        roll = float(visit[vkey][2])
        ra = e.ra_v1 + east / 3.6e6 / np.cos(np.deg2rad(e.dec_v1))
        out[e.exposure_id] = TruePointing(e.exposure_id, float(ra % 360.0),
                                          float(e.dec_v1 + north / 3.6e6),
                                          float(e.pa_v3 + roll / 3600.0), float(east),
                                          float(north), roll)
    return out


TSO_PROGRAM = ("04567", "S. Okafor", "Transit of a hot Jupiter", 0, "TRANSIT-HOST-1",
               (289.25, 41.63))
"""(program, PI, title, exclusive months, target, (ra, dec) deg) of the time-series program."""


def make_tso_plan(profile: Profile, seed: int, subarray: str, nints: int, ngroups: int,
                  readpatt: str) -> Plan:
    """A plan of one time-series exposure: the star centred on ``subarray`` of the first detector.

    No dither, the instrument's reddest filter (widest PSF, least saturation),
    ``nints`` integrations of ``ngroups`` groups of ``readpatt``.  The star is
    the target; its field is empty apart from the background.
    """
    inst = profile.instruments[0]
    sub = inst.subarray(subarray)
    readout = inst.readout(readpatt)
    if ngroups > readout.max_ngroups:
        raise SimulationError(f"tso: {readpatt} allows at most {readout.max_ngroups} groups, "
                              f"got {ngroups}")
    pid, pi, title, months, tname, (ra, dec) = TSO_PROGRAM
    program = Program(pid, pi, title, months, tname, 1, readpatt, ngroups, nints, 1)
    target = Target(tname, ra, dec, SceneOptions(star_density=0.0, galaxy_density=0.0))
    epoch = Time(profile.mission.time_epoch_tai, scale="tai")
    start = (epoch + (300 + seed % 30) * u.day).utc + _SLEW_S * u.s
    tgroup = (readout.nframes + readout.groupgap) * sub.frame_time_s
    ramp_frames = ngroups * (readout.nframes + readout.groupgap) - readout.groupgap
    duration = nints * (ramp_frames + 1) * sub.frame_time_s
    pa_v3 = 12.0
    aim_ra, aim_dec = _aim(target, pa_v3, inst, sub)
    det = inst.detectors[0]
    end = start + duration * u.s
    meta = ExposureMeta(
        telescope=profile.mission.telescope, instrument=inst.name, detector=det.name,
        filter=inst.filters[-1].name, program=pid, observation=1, visit=1, exposure=1,
        exposure_id=1, pi_name=pi, title=title, target=tname, target_ra=ra, target_dec=dec,
        ra_v1=float(aim_ra), dec_v1=float(aim_dec), pa_v3=pa_v3, dither_pattern="NONE",
        dither_position=1, dither_npoints=1, readpatt=readout.name, nints=nints,
        ngroups=ngroups, nframes=readout.nframes, groupgap=readout.groupgap,
        frame_time=sub.frame_time_s, group_time=tgroup, subarray=sub.name,
        substrt1=sub.xstart, substrt2=sub.ystart, subsize1=sub.nx, subsize2=sub.ny,
        expstart=float(start.mjd), expmid=float((start + duration / 2 * u.s).mjd),
        expend=float(end.mjd), exposure_duration=float(duration))
    return Plan([program], [target], [meta], (start - _SLEW_S * u.s).isot,
                (end + _OVERHEAD_S * u.s).isot)


def _aim(target: Target, pa_v3: float, inst: Instrument, sub: Subarray) -> tuple[float, float]:
    """Boresight putting the target at the centre of ``sub`` on the first detector."""
    det = inst.detectors[0]
    wcs = detector_wcs(target.ra, target.dec, pa_v3, (det.v2_arcsec, det.v3_arcsec, det.rotation_deg),
                       inst.pixel_scale_arcsec, (det.nx, det.ny, sub.xstart, sub.ystart, sub.nx, sub.ny),
                       det.distortion)
    ra_c, dec_c = wcs.pixel_to_world_values((sub.nx - 1) / 2, (sub.ny - 1) / 2)
    d_ra = (float(ra_c) - target.ra + 180.0) % 360.0 - 180.0
    return (target.ra - d_ra) % 360.0, target.dec - (float(dec_c) - target.dec)


def _dither_offset(position: int, npoints: int, radius: float) -> tuple[float, float]:
    """Dither offset in arcsec for a 1-based position on an n-point circle of ``radius`` arcsec."""
    angle = 2 * np.pi * (position - 1) / max(npoints, 1)
    r = 0.0 if npoints == 1 else radius
    return float(r * np.cos(angle) + 0.07 * radius * position), float(r * np.sin(angle))


def _mark_status(exposures: list[ExposureMeta], rng: np.random.Generator) -> list[ExposureMeta]:
    """Mark a few pointings skipped or failed (as a real observation log would)."""
    ids = sorted({(e.program, e.observation, e.exposure) for e in exposures})
    if len(ids) < 6:
        return exposures
    status: dict[tuple[str, int, int], str] = {}
    picks = rng.choice(np.arange(1, len(ids)), size=max(1, len(ids) // 12), replace=False)
    for n, i in enumerate(sorted(picks)):
        status[ids[int(i)]] = "skipped" if n % 2 == 0 else "failed"
    return [
        dataclasses.replace(e, status=status.get((e.program, e.observation, e.exposure), "executed"))
        for e in exposures
    ]


def resolve_subarray(instrument: Instrument, name_or_size: str) -> str:
    """The subarray named ``name_or_size``, or the square one of that size in pixels.

    Raises UnknownOptionError listing the names and sizes allowed.
    """
    for sub in instrument.subarrays:
        if name_or_size.upper() == sub.name or (
                name_or_size.isdigit() and sub.nx == sub.ny == int(name_or_size)):
            return sub.name
    allowed = [s.name for s in instrument.subarrays] + [
        str(s.nx) for s in instrument.subarrays if s.nx == s.ny]
    raise UnknownOptionError("subarray", name_or_size, allowed)
