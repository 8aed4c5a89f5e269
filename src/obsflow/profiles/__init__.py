"""Observatory profiles: everything mission-specific, read from a TOML file.

A profile names the telescope, its instruments, detectors, filters, readout
patterns, subarrays, packet APIDs and the environment (cosmic rays,
engineering channels, ephemeris).  Nothing in obsflow's code is specific to
one telescope: the simulator, ingest and calibration all read this object.

Two profiles ship with the package (see :func:`builtin_profiles`):
``webb_like`` (four 2048x2048 H2RG detectors, NIRCam-like readout patterns)
and ``smallsat`` (one 256x256 detector).  Any other TOML file of the same
shape can be passed by path.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from obsflow.exceptions import ProfileError, UnknownOptionError
from obsflow.tomlfile import parse_toml

__all__ = [
    "Detector",
    "Filter",
    "Instrument",
    "Planning",
    "Profile",
    "ReadoutPattern",
    "Subarray",
    "builtin_profiles",
    "load_profile",
]


class _Frozen(BaseModel):
    # every number of a profile is finite: ``inf`` or ``nan`` is refused naming the key
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Mission(_Frozen):
    name: str
    telescope: str
    description: str = ""
    time_epoch_tai: str = Field(description="ISO time (TAI) of mission time zero")
    default_exclusive_access_months: int = Field(ge=0)
    primary_area_m2: float = Field(gt=0)
    pointing_error_mas: float = Field(
        default=0.0, ge=0, description="1-sigma error per axis of a visit's absolute pointing "
        "(guide-star acquisition), milliarcseconds")
    dither_error_mas: float = Field(
        default=0.0, ge=0, description="1-sigma error per axis of each dither offset within "
        "a visit, milliarcseconds")
    roll_error_arcsec: float = Field(
        default=0.0, ge=0, description="1-sigma error of a visit's roll (PA_V3), arcseconds")


class Apids(_Frozen):
    engineering: int = Field(ge=0, le=2046)
    housekeeping: int = Field(ge=0, le=2046)


class Packets(_Frozen):
    target_payload_bytes: int = Field(gt=0, le=65000, description="science payload per packet, bytes")


class Engineering(_Frozen):
    period_s: float = Field(gt=0)
    channels: list[str]
    nominal: list[float]
    noise: list[float]

    @model_validator(mode="after")
    def _same_length(self) -> Engineering:
        if not (len(self.channels) == len(self.nominal) == len(self.noise)):
            raise ProfileError("engineering channels, nominal and noise must have the same length")
        for name in self.channels:
            if not (1 <= len(name) <= 8 and name.replace("_", "").isalnum() and name.isupper()):
                raise ProfileError(f"engineering channel {name!r} must be an upper-case FITS "
                                 "keyword of at most 8 characters")
        return self


class Ephemeris(_Frozen):
    period_s: float = Field(gt=0)
    orbit: str


class Planning(_Frozen):
    """What the planner needs: pointing constraints and the slew and filter-wheel models.

    Angles in degrees, times in seconds.  ``sun_angle_deg`` is the field of
    regard (the Sun's angle from the boresight must lie inside it); on a low
    Earth orbit the boresight must also stay ``earth_limb_deg`` above the
    Earth's limb (else the target is occulted) and ``moon_angle_deg`` from the
    Moon.  ``roll_tolerance_deg``: the V3 position angle may differ from the
    nominal, Sun-fixed one (the Sun's position angle at the target + 180) by
    at most this.  A slew of ``theta`` degrees takes ``slew_settle_s + theta /
    slew_rate_deg_s``; a filter-wheel move ``filter_step_s`` per position
    stepped (the wheel's order is the profile's filter order, the shorter way
    round); every visit adds ``visit_overhead_s``.
    """

    sun_angle_deg: tuple[float, float]
    earth_limb_deg: float = Field(default=0.0, ge=0)
    moon_angle_deg: float = Field(default=0.0, ge=0)
    roll_tolerance_deg: float = Field(ge=0, le=180)
    slew_rate_deg_s: float = Field(gt=0)
    slew_settle_s: float = Field(ge=0)
    filter_step_s: float = Field(ge=0)
    visit_overhead_s: float = Field(ge=0)

    @model_validator(mode="after")
    def _sun_range(self) -> Planning:
        lo, hi = self.sun_angle_deg
        if not 0 <= lo < hi <= 180:
            raise ProfileError(f"planning.sun_angle_deg must be 0 <= min < max <= 180, got {lo}, {hi}")
        return self


class CosmicRays(_Frozen):
    rate_per_cm2_s: float = Field(ge=0, description="primary hits per cm^2 per second")
    pixel_pitch_um: float = Field(gt=0)
    charge_median_e: float = Field(gt=0, description="median deposited charge, electrons")
    charge_sigma_dex: float = Field(ge=0, description="lognormal width, dex")
    snowball_fraction: float = Field(ge=0, le=1)
    snowball_radius_px: tuple[float, float]


class Distortion(_Frozen):
    """Optical distortion of a detector as SIP polynomials, pixels.

    A pixel at (x, y) (0-based, full frame) sits at (u, v) = (x, y) minus the
    full-frame centre ((nx - 1) / 2, (ny - 1) / 2); its undistorted (ideal
    gnomonic) position is (u + A(u, v), v + B(u, v)) with
    A = sum a["p_q"] u^p v^q (B likewise with ``b``), 2 <= p + q <= 5.
    The simulator places sources through it and stage 2 writes it into the
    products' WCS (SIP header cards and the gwcs pipeline).
    """

    a: dict[str, float] = Field(default_factory=dict, description='A_p_q by "p_q"')
    b: dict[str, float] = Field(default_factory=dict, description='B_p_q by "p_q"')

    @model_validator(mode="after")
    def _terms(self) -> Distortion:
        for name, terms in (("a", self.a), ("b", self.b)):
            for key in terms:
                p, _, q = key.partition("_")
                if not (p.isdigit() and q.isdigit() and 2 <= int(p) + int(q) <= 5):
                    raise ProfileError(f"distortion.{name}: term {key!r}: expected 'p_q' with "
                                       "2 <= p + q <= 5")
        return self

    def sip(self) -> tuple[Any, Any]:
        """The SIP coefficient matrices (A, B), shape (order + 1, order + 1)."""
        import numpy as np

        keys = [tuple(int(n) for n in k.split("_")) for k in (*self.a, *self.b)]
        order = max((p + q for p, q in keys), default=2)
        mats = []
        for terms in (self.a, self.b):
            m = np.zeros((order + 1, order + 1))
            for key, value in terms.items():
                p, q = (int(n) for n in key.split("_"))
                m[p, q] = value
            mats.append(m)
        return mats[0], mats[1]


class Detector(_Frozen):
    """One detector: geometry, electronics and defects.

    Charges are in electrons (e-), signals in data numbers (DN).
    """

    name: str
    apid: int = Field(ge=0, le=2046, description="science APID")
    nx: int = Field(gt=8)
    ny: int = Field(gt=8)
    ref_border: int = Field(ge=0, description="reference-pixel border width on each side, px")
    gain_e_per_dn: float = Field(gt=0)
    read_noise_cds_e: float = Field(gt=0, description="correlated double sample read noise, e-")
    dark_current_e_s: float = Field(ge=0)
    full_well_e: float = Field(gt=0)
    adc_max_dn: int = Field(gt=0, le=65535)
    bias_dn: float
    bias_rms_dn: float = Field(ge=0)
    nonlinearity: list[float] = Field(
        min_length=2, description="measured DN = sum_k c_k * linear_DN**k (c_1 = 1)"
    )
    amplifiers: int = Field(ge=1)
    hot_pixel_fraction: float = Field(ge=0, le=1)
    dead_pixel_fraction: float = Field(ge=0, le=1)
    flat_rms: float = Field(ge=0)
    refpix_drift_dn: float = Field(ge=0, description="per-group amplifier bias drift rms, DN")
    row_noise_dn: float = Field(default=0.0, ge=0, description="1/f-like per-row offset rms, DN")
    v2_arcsec: float
    v3_arcsec: float
    rotation_deg: float
    distortion: Distortion | None = None

    @property
    def read_noise_single_e(self) -> float:
        """Single-read noise in electrons (CDS noise / sqrt 2)."""
        return self.read_noise_cds_e / 2**0.5

    @model_validator(mode="after")
    def _amps_divide(self) -> Detector:
        if self.nx % self.amplifiers:
            raise ProfileError(f"nx={self.nx} is not divisible by amplifiers={self.amplifiers}")
        return self


class Filter(_Frozen):
    name: str
    pivot_um: float = Field(gt=0)
    width_um: float = Field(gt=0)
    zeropoint_ab: float = Field(description="AB magnitude giving 1 e-/s in total")
    background_mjy_sr: float = Field(ge=0)


class ReadoutPattern(_Frozen):
    name: str
    nframes: int = Field(ge=1)
    groupgap: int = Field(ge=0)
    max_ngroups: int = Field(ge=1)


class Subarray(_Frozen):
    name: str
    nx: int = Field(gt=0)
    ny: int = Field(gt=0)
    xstart: int = Field(ge=1, description="1-based first column in full-frame pixels")
    ystart: int = Field(ge=1)
    frame_time_s: float = Field(gt=0)


def _by_name(items: list, what: str, name: str):  # type: ignore[no-untyped-def]
    for item in items:
        if item.name == name:
            return item
    raise UnknownOptionError(what, name, [i.name for i in items])


class Instrument(_Frozen):
    name: str
    pixel_scale_arcsec: float = Field(gt=0)
    psf_fwhm_pix_per_um: float = Field(gt=0)
    detectors: list[Detector] = Field(min_length=1)
    filters: list[Filter] = Field(min_length=1)
    readout_patterns: list[ReadoutPattern] = Field(min_length=1)
    subarrays: list[Subarray] = Field(min_length=1)

    def detector(self, name: str) -> Detector:
        return _by_name(self.detectors, "detector", name)  # type: ignore[no-any-return]

    def filter(self, name: str) -> Filter:
        return _by_name(self.filters, "filter", name)  # type: ignore[no-any-return]

    def readout(self, name: str) -> ReadoutPattern:
        return _by_name(self.readout_patterns, "readout pattern", name)  # type: ignore[no-any-return]

    def subarray(self, name: str) -> Subarray:
        return _by_name(self.subarrays, "subarray", name)  # type: ignore[no-any-return]

    @model_validator(mode="after")
    def _subarrays_fit(self) -> Instrument:
        for sub in self.subarrays:
            for det in self.detectors:
                if sub.xstart - 1 + sub.nx > det.nx or sub.ystart - 1 + sub.ny > det.ny:
                    raise ProfileError(f"subarray {sub.name} does not fit detector {det.name}")
        return self


class Profile(_Frozen):
    """A whole observatory profile (see module docstring)."""

    mission: Mission
    apids: Apids
    packets: Packets
    engineering: Engineering
    ephemeris: Ephemeris
    cosmic_rays: CosmicRays
    instruments: list[Instrument] = Field(min_length=1)
    planning: Planning | None = None

    def instrument(self, name: str) -> Instrument:
        return _by_name(self.instruments, "instrument", name)  # type: ignore[no-any-return]

    def science_apids(self) -> dict[int, tuple[str, str]]:
        """Map each science APID to its (instrument, detector) names."""
        return {d.apid: (i.name, d.name) for i in self.instruments for d in i.detectors}

    @model_validator(mode="after")
    def _apids_unique(self) -> Profile:
        apids = [self.apids.engineering, self.apids.housekeeping]
        apids += [d.apid for i in self.instruments for d in i.detectors]
        if len(set(apids)) != len(apids):
            raise ProfileError(f"APIDs must be unique, got {apids}")
        return self


def builtin_profiles() -> list[str]:
    """Names of the profiles shipped with obsflow."""
    files = resources.files("obsflow.profiles").iterdir()
    return sorted(f.name[:-5] for f in files if f.name.endswith(".toml"))


def load_profile(name_or_path: str | Path) -> Profile:
    """Load a built-in profile by name or any profile TOML file by path.

    Raises
    ------
    ProfileError
        The file is not valid TOML or does not match the profile schema; the
        message names the file and every bad key with what was expected.
    UnknownOptionError
        ``name_or_path`` is neither a file nor a built-in profile name.
    """
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.is_file():
        try:
            raw, label = path.read_bytes(), str(path)
        except OSError as exc:
            raise ProfileError(f"{path}: cannot read the profile: {exc.strerror}") from exc
    elif str(name_or_path) in builtin_profiles():
        res = resources.files("obsflow.profiles") / f"{name_or_path}.toml"
        raw, label = res.read_bytes(), f"builtin profile {name_or_path}"
    else:
        raise UnknownOptionError("profile", str(name_or_path), builtin_profiles() + ["<path>.toml"])
    data = parse_toml(raw, label, ProfileError)
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ProfileError(f"{label}: {problems}") from exc
