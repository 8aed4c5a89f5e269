"""Program (proposal) files: one TOML file per program, checked against the profile.

The shape (see docs/planning.md for a full example)::

    [program]
    id = "01234"                 # five digits, the PROGRAM keyword of its products
    pi = "A. Rivera"
    title = "A deep field in every filter"
    exclusive_months = 12        # exclusive-access period; default the profile's
    priority = 1                 # 1 (highest) to 3; a target may override it

    [[targets]]
    name = "DEEP-FIELD-1"
    ra = 53.16                   # degrees ICRS; or field = "<simulated field>" alone
    dec = -27.78
    filters = ["F150W", "F200W"]
    readpatt = "MEDIUM8"
    ngroups = 8
    nints = 1
    dither = 4                   # dither points per filter
    subarray = "FULL"
    windows = [["2026-11-01", "2027-01-31"]]   # optional: UTC date/time ranges
    pa_range = [20.0, 80.0]      # optional: allowed V3 position angles, degrees

:func:`load_program` reads and validates the shape (a :class:`ProposalError`
naming the file and field, and what was expected); :func:`check_program`
checks it against a profile and a cycle: filters, readout patterns and
subarrays the instrument has, groups the pattern allows, and every target
visible (in its windows, at an allowed position angle) at least once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.time import Time
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from obsflow.exceptions import ProposalError, UnknownOptionError
from obsflow.profiles import Profile
from obsflow.tomlfile import parse_toml

__all__ = ["FIELDS", "Program", "ProgramInfo", "TargetRequest", "check_program", "load_program"]

FIELDS: dict[str, tuple[float, float]] = {
    "DEEP-FIELD-1": (53.16, -27.78),
    "CLUSTER-7": (201.70, -47.48),
    "CAL-FIELD": (80.49, -69.50),
}
"""The simulator's named fields (``field = NAME`` in a target): their centres, degrees."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class ProgramInfo(_Strict):
    id: str = Field(pattern=r"^\d{5}$", description="five digits")
    pi: str = Field(min_length=1)
    title: str = Field(min_length=1)
    exclusive_months: int | None = Field(default=None, ge=0, le=120)
    priority: int = Field(default=2, ge=1, le=3)


class TargetRequest(_Strict):
    name: str = Field(min_length=1, max_length=40)
    ra: float | None = Field(default=None, ge=0, lt=360)
    dec: float | None = Field(default=None, ge=-90, le=90)
    field: str | None = None
    filters: list[str] = Field(min_length=1)
    readpatt: str
    ngroups: int = Field(ge=1)
    nints: int = Field(default=1, ge=1)
    dither: int = Field(default=1, ge=1, le=64)
    subarray: str = "FULL"
    windows: list[tuple[str, str]] = Field(default_factory=list)
    pa_range: tuple[float, float] | None = None
    priority: int | None = Field(default=None, ge=1, le=3)

    @model_validator(mode="after")
    def _position(self) -> TargetRequest:
        if self.field is not None:
            if self.ra is not None or self.dec is not None:
                raise ProposalError("give ra and dec, or field, not both")
            if self.field not in FIELDS:
                raise ProposalError(f"field {self.field!r} is not a simulated field; expected one "
                                 f"of {', '.join(sorted(FIELDS))}")
        elif self.ra is None or self.dec is None:
            raise ProposalError("give ra and dec (degrees) or field (a simulated field's name)")
        for k, (a, b) in enumerate(self.windows):
            try:
                ta, tb = Time(a, scale="utc"), Time(b, scale="utc")
            except ValueError as exc:
                raise ProposalError(f"windows[{k}]: not an ISO date/time: {exc}") from exc
            if not tb > ta:
                raise ProposalError(f"windows[{k}]: end {b} must be after start {a}")
        if self.pa_range is not None and not (0 <= self.pa_range[0] < 360
                                              and 0 <= self.pa_range[1] < 360):
            raise ProposalError(f"pa_range must be two angles in [0, 360) degrees, got "
                             f"{list(self.pa_range)}")
        return self

    @property
    def position(self) -> tuple[float, float]:
        """(ra, dec) degrees."""
        if self.field is not None:
            return FIELDS[self.field]
        assert self.ra is not None and self.dec is not None
        return self.ra, self.dec

    def window_mjd(self) -> list[tuple[float, float]]:
        """The time windows as MJD UTC (start, end) pairs (empty: any time)."""
        return [(float(Time(a, scale="utc").mjd), float(Time(b, scale="utc").mjd))
                for a, b in self.windows]


class Program(_Strict):
    """A whole program file."""

    program: ProgramInfo
    targets: list[TargetRequest] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> Program:
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise ProposalError(f"target names must be unique, got {names}")
        return self

    def priority(self, target: TargetRequest) -> int:
        return target.priority if target.priority is not None else self.program.priority


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_program(path: Path) -> Program:
    """Read and validate a program file (ProposalError naming file, field and expectation)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ProposalError(f"{path}: cannot read the program file: {exc.strerror}") from exc
    data = parse_toml(raw, path, ProposalError)
    try:
        return Program.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{_location(e['loc']) or 'file'}: {e['msg']}"
                             for e in exc.errors())
        raise ProposalError(f"{path}: {problems}") from exc


def check_program(program: Program, profile: Profile, cycle: tuple[float, float],
                  label: str = "program") -> list[str]:
    """Check ``program`` against ``profile`` over ``cycle`` (MJD UTC start, end).

    Returns notes (one line each) on what holds; raises ProposalError at the
    first problem, naming ``label``, the field and what was expected.
    """
    from obsflow.planning.visibility import allowed_pa, pa_allowed, visible

    inst = profile.instruments[0]
    notes = []
    for k, t in enumerate(program.targets):
        where = f"{label}: targets[{k}] ({t.name})"
        try:
            for f in t.filters:
                inst.filter(f)
            readout = inst.readout(t.readpatt)
            inst.subarray(t.subarray)
        except UnknownOptionError as exc:
            raise ProposalError(f"{where}: {exc}") from exc
        if t.ngroups > readout.max_ngroups:
            raise ProposalError(f"{where}.ngroups: {t.readpatt} allows at most "
                                f"{readout.max_ngroups} groups, got {t.ngroups}")
        ra, dec = t.position
        step = 1.0 / 1440.0 if profile.ephemeris.orbit == "LEO" else 0.25
        mjd = np.arange(cycle[0], cycle[1], step)
        if t.windows:
            inside = np.zeros(mjd.size, bool)
            for a, b in t.window_mjd():
                inside |= (mjd >= a) & (mjd <= b)
            mjd = mjd[inside]
            if not mjd.size:
                raise ProposalError(f"{where}.windows: no window overlaps the cycle "
                                    f"{Time(cycle[0], format='mjd').isot[:10]} to "
                                    f"{Time(cycle[1], format='mjd').isot[:10]}")
        ok = visible(profile, ra, dec, mjd)
        if t.pa_range is not None and ok.any():
            ok[ok] = [_pa_fits(allowed_pa(profile, ra, dec, m), t.pa_range, pa_allowed)
                      for m in mjd[ok]]
        if not ok.any():
            what = " at a V3 position angle in pa_range" if t.pa_range else ""
            raise ProposalError(f"{where}: never visible{what} in the cycle or its windows "
                                f"(field of regard Sun angle {profile.planning.sun_angle_deg} "
                                f"deg)" if profile.planning else f"{where}: never visible")
        notes.append(f"{t.name}: {len(t.filters)} filter(s) x {t.dither} dither(s), "
                     f"{t.readpatt} {t.ngroups} groups x {t.nints} ints; visible "
                     f"{ok.mean():.0%} of the time it may be observed")
    return notes


def _pa_fits(allowed: tuple[float, float], wanted: tuple[float, float], inside) -> bool:  # type: ignore[no-untyped-def]
    """Whether the allowed PA range and the wanted one overlap (both may wrap through 0)."""
    lo, hi = allowed
    a, b = wanted
    width = (b - a) % 360.0
    return bool(inside(lo, hi, a) or inside(a, a + width, lo))
