"""Every ``obsflow`` command, given malformed input, says so in one line and changes nothing.

The command tree is enumerated from the click group, so a command added
later without cases here fails :func:`test_every_command_has_bad_input_cases`.
Each case checks: the exit status (2 for an error, 3 for ``ingest``/``run``
that set data aside), stderr is ONE line ``error: ...`` naming the file and
the field and what was expected (one line per item set aside for exit 3),
no traceback, every input file kept byte for byte with its mtime, and
nothing half-written (no file appears or changes in the site or the output
folder; no ``.part`` file anywhere).

Most cases run in-process through click's runner; a representative set runs
as real ``python -m obsflow`` subprocesses.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner
from tests.archive.factories import BASE, write_light_curve

from obsflow.cli import main
from obsflow.ingest.cli import SET_ASIDE_EXIT_CODE
from obsflow.models.identity import ProductRef
from obsflow.models.level1 import Level1, write_uncal
from obsflow.models.metadata import ExposureMeta
from obsflow.models.provenance import Provenance
from obsflow.site import init_site
from obsflow.telemetry.packets import encode_packets, secondary_headers

ERROR = 2

# -- the command tree --------------------------------------------------------------------------


def _walk(command: click.Command, path: tuple[str, ...]) -> Iterator[tuple[str, click.Command]]:
    if isinstance(command, click.Group):
        if command.invoke_without_command and path:
            yield " ".join(path), command
        ctx = click.Context(command)
        for name in command.list_commands(ctx):  # the lazily imported subcommands too
            sub = command.get_command(ctx, name)
            assert sub is not None, name
            yield from _walk(sub, (*path, name))
    else:
        yield " ".join(path), command


COMMANDS = dict(_walk(main, ()))
"""Every runnable command ("archive add", "jobs", ...) of the obsflow CLI."""

# -- inputs ------------------------------------------------------------------------------------


def _meta() -> ExposureMeta:
    return ExposureMeta(
        telescope="OBSFLOW-S", instrument="SSCAM", detector="SSD1", filter="J", program="01234",
        observation=1, visit=1, exposure=1, exposure_id=1, pi_name="A. Rivera", title="t",
        target="T", target_ra=53.0, target_dec=-27.0, ra_v1=53.0, dec_v1=-27.0, pa_v3=0.0,
        dither_pattern="NONE", dither_position=1, dither_npoints=1, readpatt="SHALLOW4", nints=1,
        ngroups=3, nframes=4, groupgap=1, frame_time=0.045, group_time=0.225, subarray="SUB8",
        substrt1=1, substrt2=1, subsize1=8, subsize2=8, expstart=61342.0, expmid=61342.00001,
        expend=61342.00002, exposure_duration=0.7)


def _variant(good: Path, out: Path, change: Callable[[fits.HDUList], None]) -> Path:
    with fits.open(good) as hdul:
        copy = fits.HDUList([hdu.copy() for hdu in hdul])
        change(copy)
        copy.writeto(out, checksum=True)  # consistent checksums: the content is what is wrong
    return out


def _sci_as(dtype: str, nan: bool = False) -> Callable[[fits.HDUList], None]:
    def change(hdul: fits.HDUList) -> None:
        data = hdul["SCI"].data.astype(dtype)
        if nan:
            data[0, 0, 0, 0] = np.nan
        header = hdul["SCI"].header.copy()
        for key in ("BZERO", "BSCALE"):
            header.remove(key, ignore_missing=True)
        hdul["SCI"] = fits.ImageHDU(data, header, name="SCI")
    return change


@dataclass(frozen=True)
class BadFile:
    """A malformed Level-1 file and words its error line must hold (file name added)."""

    path: Path
    words: tuple[str, ...]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BadFile]:
    """A good Level-1 file and every malformed variant, in an inputs/ folder."""
    folder = tmp_path_factory.mktemp("inputs")
    good = folder / "01234001001_00001_ssd1_uncal.fits"
    data = np.arange(3 * 64, dtype=np.uint16).reshape(1, 3, 8, 8)
    write_uncal(good, Level1(data=data, meta=_meta()))
    raw = good.read_bytes()
    (folder / "empty_uncal.fits").write_bytes(b"")
    (folder / "text_uncal.fits").write_bytes(b"this is not FITS\n" * 40)
    (folder / "truncated_uncal.fits").write_bytes(raw[: len(raw) - 3000])

    def drop(key: str) -> Callable[[fits.HDUList], None]:
        return lambda hdul: hdul[0].header.remove(key)

    def shape(hdul: fits.HDUList) -> None:
        hdul["SCI"].data = hdul["SCI"].data[:, :, :-1, :]

    def rate(hdul: fits.HDUList) -> None:
        hdul[0].header["DATAMODL"] = "ImageModel"  # what a _rate product holds

    def rate_kind(hdul: fits.HDUList) -> None:
        hdul[0].header["PRODKIND"] = "rate"
        hdul[0].header.remove("DATAMODL", ignore_missing=True)

    made = {
        "good": BadFile(good, ()),
        "empty": BadFile(folder / "empty_uncal.fits", ("empty", "0 bytes", "expected")),
        "not FITS": BadFile(folder / "text_uncal.fits", ("not a FITS file", "expected")),
        "truncated": BadFile(folder / "truncated_uncal.fits", ("truncated", "2880-byte")),
        "no DETECTOR": BadFile(_variant(good, folder / "nodet_uncal.fits", drop("DETECTOR")),
                               ("DETECTOR", "missing", "a string")),
        "no FILTER": BadFile(_variant(good, folder / "nofilt_uncal.fits", drop("FILTER")),
                             ("FILTER", "missing", "a string")),
        "no NINTS": BadFile(_variant(good, folder / "nonints_uncal.fits", drop("NINTS")),
                            ("NINTS", "missing", "an integer")),
        "no SCI": BadFile(_variant(good, folder / "nosci_uncal.fits", lambda h: h.pop(1)),
                          ("no SCI extension", "uint16")),
        "wrong shape": BadFile(_variant(good, folder / "shape_uncal.fits", shape),
                               ("SCI", "shape (1, 3, 7, 8)", "(1, 3, 8, 8)")),
        "float64": BadFile(_variant(good, folder / "f64_uncal.fits", _sci_as("float64")),
                           ("SCI", "float64", "expected uint16")),
        "int64": BadFile(_variant(good, folder / "i64_uncal.fits", _sci_as("int64")),
                         ("SCI", "int64", "expected uint16")),
        "NaN": BadFile(_variant(good, folder / "nan_uncal.fits", _sci_as("float32", nan=True)),
                       ("SCI", "float32", "expected uint16")),
        "a _rate file": BadFile(_variant(good, folder / "x_rate.fits", rate),
                                ("DATAMODL", "'ImageModel'", "expected 'RampModel'")),
        "a _rate by kind": BadFile(_variant(good, folder / "k_rate.fits", rate_kind),
                                   ("PRODKIND = 'rate'", "a _rate product", "expected a Level-1 _uncal")),
    }
    return made


LEVEL1_VARIANTS = ["empty", "not FITS", "truncated", "no DETECTOR", "no FILTER", "no NINTS",
                   "no SCI", "wrong shape", "float64", "int64", "NaN", "a _rate file", "a _rate by kind"]


def _site(root: Path, **ingest: float) -> Path:
    init_site(root, profile="smallsat", env={})
    path = root / "obsflow.toml"
    text = path.read_text()
    for key, value in {"settle_seconds": 0.0, **ingest}.items():
        text = text.replace(f"{key} = ", f"{key} = {value!r}\n# was: ", 1)
    path.write_text(text)
    return root


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A good smallsat site on SQLite (settle 0)."""
    return _site(tmp_path_factory.mktemp("good") / "site")


BAD_CONFIGS: dict[str, tuple[Callable[[str], bytes], tuple[str, ...]]] = {
    "non-UTF-8 byte": (lambda text: text.encode() + b"# caf\xe9\n",
                       ("obsflow.toml", "byte offset", "0xe9", "not UTF-8")),
    "settle_seconds = inf": (
        lambda text: text.replace("settle_seconds = 0.0", "settle_seconds = inf").encode(),
        ("obsflow.toml", "ingest.settle_seconds", "finite")),
    "poll_seconds negative": (
        lambda text: text.replace("poll_seconds = 5.0", "poll_seconds = -5.0").encode(),
        ("obsflow.toml", "ingest.poll_seconds", "greater than 0")),
    "partial_deadline_hours = nan": (
        lambda text: text.replace("partial_deadline_hours = 48.0",
                                  "partial_deadline_hours = nan").encode(),
        ("obsflow.toml", "ingest.partial_deadline_hours", "finite")),
    "retry_backoff_seconds = -inf": (
        lambda text: text.replace("retry_backoff_seconds = 2.0",
                                  "retry_backoff_seconds = -inf").encode(),
        ("obsflow.toml", "executor.retry_backoff_seconds", "finite")),
}


@pytest.fixture(scope="module")
def bad_sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One otherwise complete site per malformed obsflow.toml of BAD_CONFIGS."""
    out = {}
    for k, (name, (change, _)) in enumerate(BAD_CONFIGS.items()):
        root = _site(tmp_path_factory.mktemp("bad") / f"site{k}")
        path = root / "obsflow.toml"
        changed = change(path.read_text())
        assert changed != path.read_bytes(), name
        path.write_bytes(changed)
        out[name] = root
    return out


# -- the cases ---------------------------------------------------------------------------------


@dataclass
class Case:
    """One run of one command on malformed input."""

    args: list[str]
    words: tuple[str, ...]
    """What the (each) error line must contain: the file, the field, what was expected."""
    inputs: list[Path] = field(default_factory=list)
    """Files that must stay byte for byte as they were, mtime included."""
    watched: list[Path] = field(default_factory=list)
    """Folders in which nothing may appear or change."""
    status: int = ERROR
    stdin: str | None = None


@dataclass(frozen=True)
class Ctx:
    site: Path
    bad_sites: dict[str, Path]
    files: dict[str, BadFile]
    tmp: Path


def _config_cases(command: str, extra: Callable[[Ctx], list[str]], *, positional: bool = False,
                  stdin: str | None = None) -> Callable[[Ctx], list[Case]]:
    """Every BAD_CONFIGS site given to ``command`` (``--site`` or the DIRECTORY argument)."""

    def cases(ctx: Ctx) -> list[Case]:
        out = []
        for name, root in ctx.bad_sites.items():
            where = [str(root)] if positional else ["--site", str(root)]
            out.append(Case([*command.split(), *where, *extra(ctx)], BAD_CONFIGS[name][1],
                            inputs=[root / "obsflow.toml"], watched=[root], stdin=stdin))
        return out

    return cases


def _level1_cases(command: str, variants: list[str]) -> Callable[[Ctx], list[Case]]:
    """``command --site SITE FILE`` for every malformed Level-1 variant."""

    def cases(ctx: Ctx) -> list[Case]:
        out = []
        for name in variants:
            bad = ctx.files[name]
            out.append(Case([*command.split(), "--site", str(ctx.site), str(bad.path)],
                            (bad.path.name, *bad.words), inputs=[bad.path],
                            watched=[ctx.site, bad.path.parent]))
        return out

    return cases


def _both(*makers: Callable[[Ctx], list[Case]]) -> Callable[[Ctx], list[Case]]:
    return lambda ctx: [case for make in makers for case in make(ctx)]


def _none(ctx: Ctx) -> list[Case]:
    return []


def _good(ctx: Ctx) -> list[str]:
    return [str(ctx.files["good"].path)]


def _bad_profile(ctx: Ctx, name: str, text: bytes) -> Path:
    path = ctx.tmp / name
    if not path.exists():
        base = (Path(__file__).parents[1] / "src/obsflow/profiles/smallsat.toml").read_bytes()
        path.write_bytes(base.replace(b"period_s = 60.0", text, 1)
                         if text.startswith(b"period_s") else base + text)
    return path


def _simulate_cases(ctx: Ctx) -> list[Case]:
    out_dir = ctx.tmp / "never-written"
    inf_profile = _bad_profile(ctx, "inf.toml", b"period_s = inf")
    latin1 = _bad_profile(ctx, "latin1.toml", b"# r\xe9sum\xe9\n")
    base = ["simulate", "--out", str(out_dir), "--exposures", "1"]
    return [
        Case([*base, "--profile", str(inf_profile)], ("inf.toml", "period_s", "finite"),
             inputs=[inf_profile], watched=[ctx.tmp]),
        Case([*base, "--profile", str(latin1)], ("latin1.toml", "byte offset", "not UTF-8"),
             inputs=[latin1], watched=[ctx.tmp]),
        *(Case(["simulate", "--out", str(out_dir), "--profile", "smallsat", option, value],
               (option, repr(value) if value != "-1" else "-1", "finite" if value != "-1"
                else "range"), watched=[ctx.tmp])
          for option, value in (("--hours", "inf"), ("--hours", "nan"), ("--hours", "-1"),
                                ("--dark-error", "nan"), ("--dark-error", "inf"))),
    ]


def _lightcurve_cases(ctx: Ctx) -> list[Case]:
    """``lightcurve``: a Level-1 file, a non-FITS _rateints, a bad ephemeris, bad apertures."""
    ephemeris = ctx.tmp / "good_ephem.ecsv"
    if not ephemeris.exists():
        ephemeris.write_text("# %ECSV 1.0\n# ---\n# datatype:\n# - {name: mjd_utc, datatype: float64}\n"
                             "mjd_utc\n60000.0\n")
    garbage = ctx.tmp / "garbage_ephem.ecsv"
    garbage.write_bytes(b"not an ECSV table\n")
    text = ctx.tmp / "text_rateints.fits"
    text.write_bytes(b"this is not FITS\n" * 40)
    level1 = ctx.files["good"].path
    eph = ["lightcurve", "--ephemeris", str(ephemeris)]
    return [
        Case([*eph, str(level1)], (level1.name, "expected a _rateints.fits product"),
             inputs=[level1], watched=[level1.parent]),
        Case([*eph, str(text)], (text.name, "not a FITS file", "expected a _rateints.fits"),
             inputs=[text], watched=[ctx.tmp]),
        Case(["lightcurve", "--ephemeris", str(garbage), str(text)],
             (garbage.name, "not a readable ECSV ephemeris"), inputs=[garbage, text],
             watched=[ctx.tmp]),
        *(Case([*eph, *option, str(text)], ("--radius/--annulus", "radius < annulus inner"),
               inputs=[text], watched=[ctx.tmp])
          for option in (["--radius", "20"], ["--radius", "nan"], ["--annulus", "30", "20"])),
    ]


def _light_curve_cases(ctx: Ctx) -> list[Case]:
    """``archive add`` of a light curve (``_phot.ecsv``): its exposure not in the archive, not
    ECSV, a light-curve column missing, no product reference in its metadata."""
    garbage = ctx.tmp / "garbage_phot.ecsv"
    garbage.write_bytes(b"not an ECSV table\n")
    header = ("# %ECSV 1.0\n# ---\n# datatype:\n" + "".join(
        f"# - {{name: {c}, datatype: float64}}\n" for c in ("mjd_utc", "bjd_tdb", "flux",
                                                            "flux_err")))
    columns = ctx.tmp / "columns_phot.ecsv"
    columns.write_text(header + "mjd_utc bjd_tdb flux flux_err\n61000.0 61000.1 1.0 0.1\n")
    unnamed = ctx.tmp / "unnamed_phot.ecsv"
    unnamed.write_text(header.replace("# datatype:\n", "# datatype:\n# - {name: integration, "
                                      "datatype: int64}\n")
                       + "integration mjd_utc bjd_tdb flux flux_err\n0 61000.0 61000.1 1.0 0.1\n")
    orphan = write_light_curve(ctx.tmp / "orphan", ProductRef("phot", BASE.data_id, "prompt"),
                               Provenance("prompt", "0.3.0"))
    add = ["archive", "add", "--site", str(ctx.site)]
    return [Case([*add, str(orphan)], (orphan.name, "is not in the archive", "register the"),
                 inputs=[orphan], watched=[ctx.site, orphan.parent]),
            Case([*add, str(garbage)], (garbage.name, "not a readable _phot.ecsv light curve"),
                 inputs=[garbage], watched=[ctx.site, ctx.tmp]),
            Case([*add, str(columns)], (columns.name, "lacks columns ['integration']"),
                 inputs=[columns], watched=[ctx.site, ctx.tmp]),
            Case([*add, str(unnamed)], (unnamed.name, "no product reference"),
                 inputs=[unnamed], watched=[ctx.site, ctx.tmp])]


def _init_cases(ctx: Ctx) -> list[Case]:
    latin1 = _bad_profile(ctx, "latin1.toml", b"# r\xe9sum\xe9\n")
    fresh = ctx.tmp / "fresh-site"
    return [Case(["init", str(fresh), "--profile", str(latin1)],
                 ("latin1.toml", "byte offset", "not UTF-8"), inputs=[latin1],
                 watched=[ctx.tmp])]


def _deliver_cases(ctx: Ctx) -> list[Case]:
    out = []
    for name, words in (("empty", ("empty", "reference file")),
                        ("not FITS", ("not a FITS file", "reference file")),
                        ("truncated", ("truncated", "2880-byte")),
                        ("good", ("missing required keyword", "REFTYPE"))):
        bad = ctx.files[name]
        out.append(Case(["refs", "deliver", "--site", str(ctx.site), str(bad.path)],
                        (bad.path.name, *words), inputs=[bad.path],
                        watched=[ctx.site, bad.path.parent]))
    return out


def _gaps_cases(ctx: Ctx) -> list[Case]:
    folder = ctx.tmp / "a-folder"
    folder.mkdir(exist_ok=True)
    return [Case(["accounting", "gaps", "--site", str(ctx.site), "--request", str(folder)],
                 ("a-folder",), watched=[ctx.site, folder])]


def _truth_cases(ctx: Ctx) -> list[Case]:
    truth = ctx.tmp / "truth"
    truth.mkdir(exist_ok=True)
    (truth / "garbage_truth.fits").write_bytes(b"\xff" * 100)
    return [Case(["truth-residuals", "--site", str(ctx.site), "--truth", str(truth)],
                 ("truth",), inputs=[truth / "garbage_truth.fits"], watched=[ctx.site, truth])]


def _float_option_cases(command: str, option: str, extra: list[str]) -> Callable[[Ctx],
                                                                               list[Case]]:
    def cases(ctx: Ctx) -> list[Case]:
        return [Case([*command.split(), "--site", str(ctx.site), *extra, option, value],
                     (option, "finite"), watched=[ctx.site]) for value in ("inf", "nan")]
    return cases


def _incoming_cases(command: str) -> Callable[[Ctx], list[Case]]:
    """A FIFO, a folder, a symlink and a foreign-telescope file in incoming/: exit 3."""

    def cases(ctx: Ctx) -> list[Case]:
        root = _site(ctx.tmp / f"incoming-{command}")
        incoming = root / "incoming"
        target = ctx.tmp / "outside-secret.ccsds"
        target.write_bytes(b"secret bytes outside the site")
        os.symlink(target, incoming / "link.ccsds")
        os.mkfifo(incoming / "pipe.ccsds")
        (incoming / "folder").mkdir()
        _foreign_file(incoming / "other-telescope.ccsds")
        return [Case([command, "--site", str(root), *(["--workers", "1"] if command == "run"
                                                       else [])],
                     ("link.ccsds", "pipe.ccsds", "folder", "other-telescope.ccsds"),
                     inputs=[target], status=SET_ASIDE_EXIT_CODE)]

    return cases


def _asdf_cases(ctx: Ctx) -> list[Case]:
    """``archive add`` of an ``.asdf`` file: an ASDF file obsflow did not write (no
    ``obsflow`` mark), and a file that is not ASDF at all."""
    import asdf

    foreign = ctx.tmp / "foreign_cal.asdf"
    asdf.AsdfFile({"data": np.zeros((4, 4), np.float32), "meta": {"telescope": "JWST"}}
                  ).write_to(foreign)
    garbage = ctx.tmp / "garbage_cal.asdf"
    garbage.write_bytes(b"SIMPLE  =                    T\n")
    add = ["archive", "add", "--site", str(ctx.site)]
    return [Case([*add, str(foreign)], (foreign.name, "not an obsflow product"),
                 inputs=[foreign], watched=[ctx.site, ctx.tmp]),
            Case([*add, str(garbage)], (garbage.name, "not an ASDF file"),
                 inputs=[garbage], watched=[ctx.site, ctx.tmp])]


def _foreign_file(path: Path) -> None:
    """Eight packets of APID 1025 (webb_like science), which smallsat does not define."""
    n = 8
    sec = secondary_headers(np.arange(n, dtype=float), 7, 0, np.arange(n), np.arange(n))
    packets = encode_packets(1025, np.arange(n), sec, np.zeros((n, 64), np.uint8))
    path.write_bytes(packets.tobytes())
    past = time.time() - 100
    os.utime(path, (past, past))


def _site_cmd(command: str, *extra: str, stdin: str | None = None) -> Callable[[Ctx],
                                                                             list[Case]]:
    return _config_cases(command, lambda ctx: list(extra), stdin=stdin)


def _planning_file(ctx: Ctx, name: str, text: str) -> Path:
    folder = ctx.tmp / "planning"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def _etc_cases(ctx: Ctx) -> list[Case]:
    return [Case(["etc", "--filter", "NOFILTER", "--readpatt", "RAPID", "--mag", "22", "--ngroups", "5"],
                 ("NOFILTER",)),
            Case(["etc", "--filter", "F150W", "--readpatt", "RAPID", "--mag", "nan", "--ngroups", "5"],
                 ("--mag",))]


def _propose_cases(ctx: Ctx) -> list[Case]:
    bad = _planning_file(ctx, "bad_program.toml", "this is = = not toml [\n")
    return [Case(["propose", "check", str(bad)], ("bad_program.toml",), inputs=[bad])]


def _plan_make_cases(ctx: Ctx) -> list[Case]:
    bad = _planning_file(ctx, "bad_program2.toml", "[program\n")
    out = ctx.tmp / "planning" / "plan.json"
    return [Case(["plan", "make", "--out", str(out), str(bad)], ("bad_program2.toml",), inputs=[bad])]


def _plan_status_cases(ctx: Ctx) -> list[Case]:
    bad = _planning_file(ctx, "bad_plan.json", "{not json")
    return [Case(["plan", "status", str(bad)], ("bad_plan.json",), inputs=[bad])]


def _plan_visibility_cases(ctx: Ctx) -> list[Case]:
    return [Case(["plan", "visibility", "--ra", "400", "--dec", "0"], ("400",))]


CASES: dict[str, Callable[[Ctx], list[Case]]] = {
    "accounting gaps": _both(_site_cmd("accounting gaps"), _gaps_cases),
    "etc": _etc_cases,
    "plan make": _plan_make_cases,
    "plan status": _plan_status_cases,
    "plan visibility": _plan_visibility_cases,
    "propose check": _propose_cases,
    "archive add": _both(_config_cases("archive add", _good),  # a _rate's layout is not Level 1's
                         _level1_cases("archive add", [v for v in LEVEL1_VARIANTS if "_rate" not in v]), _light_curve_cases,
                         _asdf_cases),
    "archive hips": _site_cmd("archive hips"),
    "archive program add": _site_cmd("archive program add", "01234", "--exclusive-months", "12"),
    "calibrate": _both(_config_cases("calibrate", _good),
                       _level1_cases("calibrate", LEVEL1_VARIANTS)),
    "demo": _site_cmd("demo", "--no-serve"),
    "ingest": _both(_site_cmd("ingest"), _incoming_cases("ingest")),
    "init": _both(_config_cases("init", lambda ctx: [], positional=True), _init_cases),
    "jobs": _site_cmd("jobs"),
    "jobs retry": _site_cmd("jobs retry", "1"),
    "jobs show": _site_cmd("jobs show", "1"),
    "lightcurve": _both(_config_cases("lightcurve", lambda ctx: [str(ctx.tmp / "text_rateints.fits")]),
                        _lightcurve_cases),
    "profiles": _none,  # reads only the built-in profiles (test_profiles_takes_no_input)
    "refs best": _both(_config_cases("refs best", _good),
                       _level1_cases("refs best", LEVEL1_VARIANTS)),
    "refs contexts": _site_cmd("refs contexts"),
    "refs deliver": _both(_config_cases("refs deliver", _good), _deliver_cases),
    "refs diff": _site_cmd("refs diff", "1", "2"),
    "refs pin": _site_cmd("refs pin", "1"),
    "reprocess cancel": _site_cmd("reprocess cancel", "x"),
    "reprocess plan": _site_cmd("reprocess plan"),
    "reprocess retry": _site_cmd("reprocess retry", "x"),
    "reprocess run": _site_cmd("reprocess run"),
    "reprocess status": _site_cmd("reprocess status", "x"),
    "run": _site_cmd("run"),  # incoming/ cases run as a subprocess below
    "serve": _site_cmd("serve"),
    "simulate": _simulate_cases,
    "status": _site_cmd("status"),
    "tokens create": _both(_site_cmd("tokens create", "alice"),
                           _float_option_cases("tokens create", "--days", ["alice"])),
    "truth-residuals": _both(_config_cases("truth-residuals",
                                           lambda ctx: ["--truth", str(ctx.tmp)]), _truth_cases),
    "upgrade": _config_cases("upgrade", lambda ctx: [], positional=True),
    "users add": _site_cmd("users add", "alice", "--password-stdin", stdin="pw\n"),
}


def test_every_command_has_bad_input_cases() -> None:
    assert sorted(CASES) == sorted(COMMANDS), (
        "a command without malformed-input cases (or a case for a command that is gone)")


def test_profiles_takes_no_input() -> None:
    assert [p.name for p in COMMANDS["profiles"].params] == []


# -- checking one case ---------------------------------------------------------------------------


def _digest(path: Path) -> tuple[str, int]:
    st = path.lstat()
    if path.is_symlink() or not path.is_file():
        return (f"<{oct(st.st_mode)}>", st.st_mtime_ns)
    return (hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mtime_ns)


_DATABASE = (".db", ".db-wal", ".db-shm", ".db-journal")


def _tree(folders: list[Path]) -> dict[str, str]:
    """Every entry under ``folders``: its content hash (the SQLite files: present only)."""
    out = {}
    for folder in folders:
        if not folder.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(folder):
            for name in dirnames + filenames:
                path = Path(dirpath) / name
                out[str(path)] = ("" if name.endswith(_DATABASE) or path.is_dir()
                                  else _digest(path)[0])
    return out


def _check(case: Case, code: int, stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert code == case.status, (case.args, code, stderr)
    lines = stderr.strip().splitlines()
    if case.status == ERROR:
        assert len(lines) == 1, (case.args, stderr)
        assert lines[0].startswith("error: "), stderr
        for word in case.words:
            assert word in lines[0], (word, case.args, lines[0])
    else:
        for word in case.words:
            assert [line for line in lines if word in line], (word, stderr)


def _run_in_process(case: Case) -> None:
    inputs = {p: _digest(p) for p in case.inputs}
    before = _tree(case.watched)
    env = {name: "" for name in os.environ if name.startswith("OBSFLOW_")}
    result = CliRunner().invoke(main, case.args, input=case.stdin, env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{case.args}: uncaught {result.exception!r}") from result.exception
    _check(case, result.exit_code, result.stderr)
    assert {p: _digest(p) for p in case.inputs} == inputs, "an input file was changed"
    assert _tree(case.watched) == before, "something was written"


@pytest.fixture(scope="module")
def ctx(site: Path, bad_sites: dict[str, Path], files: dict[str, BadFile],
        tmp_path_factory: pytest.TempPathFactory) -> Ctx:
    return Ctx(site, bad_sites, files, tmp_path_factory.mktemp("work"))


@pytest.mark.parametrize("command", sorted(CASES))
def test_command_refuses_malformed_input(command: str, ctx: Ctx) -> None:
    cases = CASES[command](ctx)
    assert cases or command == "profiles"
    for case in cases:
        _run_in_process(case)


def test_ingest_leaves_refused_entries_and_archives_no_link(ctx: Ctx) -> None:
    work = ctx.tmp / "ingest-again"
    work.mkdir()
    (case,) = _incoming_cases("ingest")(Ctx(ctx.site, {}, ctx.files, work))
    _run_in_process(case)
    root = Path(case.args[case.args.index("--site") + 1])
    incoming = root / "incoming"
    assert (incoming / "link.ccsds").is_symlink()
    assert (incoming / "folder").is_dir() and (incoming / "pipe.ccsds").is_fifo()
    assert not (incoming / "other-telescope.ccsds").exists()  # taken, then quarantined
    raw = list((root / "raw").rglob("*"))
    assert not [p for p in raw if p.is_symlink()]
    assert [p.name for p in raw if p.is_file()] == [
        p.name for p in (root / "quarantine").iterdir() if p.name.endswith(".ccsds")]
    status = CliRunner().invoke(main, ["status", "--json", "--site", str(root)])
    assert status.exit_code == 0, status.output
    body = json.loads(status.stdout)
    assert [q["name"] for q in body["quarantined"]] == ["other-telescope.ccsds"]
    assert "APID 1025" in body["quarantined"][0]["reason"]
    assert sorted(Path(r["path"]).name for r in body["refused"]) == [
        "folder", "link.ccsds", "pipe.ccsds"]
    table = CliRunner().invoke(main, ["status", "--site", str(root)])
    assert "refused in incoming" in table.stdout and "quarantined files" in table.stdout


# -- a representative set as real subprocesses ---------------------------------------------------


def _subprocess(case: Case) -> None:
    inputs = {p: _digest(p) for p in case.inputs}
    before = _tree(case.watched)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBSFLOW_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parents[1] / "src"),
                                                      env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-m", "obsflow", *case.args], input=case.stdin,
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    _check(case, done.returncode, done.stderr)
    assert {p: _digest(p) for p in case.inputs} == inputs
    assert _tree(case.watched) == before


def test_representative_cases_as_subprocesses(ctx: Ctx) -> None:
    sub = Ctx(ctx.site, ctx.bad_sites, ctx.files, ctx.tmp)
    chosen = [
        _level1_cases("calibrate", ["not FITS"])(sub)[0],
        _level1_cases("calibrate", ["float64"])(sub)[0],
        _site_cmd("status")(sub)[0],  # non-UTF-8 obsflow.toml
        _site_cmd("ingest")(sub)[1],  # settle_seconds = inf
        _simulate_cases(sub)[2],  # --hours inf
    ]
    for case in chosen:
        _subprocess(case)


def test_run_sets_incoming_entries_aside_as_a_subprocess(ctx: Ctx) -> None:
    work = ctx.tmp / "run-sub"
    work.mkdir()
    (case,) = _incoming_cases("run")(Ctx(ctx.site, {}, ctx.files, work))
    _subprocess(case)


def test_exit_statuses_are_in_the_help() -> None:
    top = CliRunner().invoke(main, ["--help"]).stdout
    assert "2  an error: bad input, configuration or usage" in top
    assert "3  (ingest, run) done, but data was set aside" in top
    for command in ("ingest", "run"):
        text = " ".join(CliRunner().invoke(main, [command, "--help"]).stdout.split())
        assert "3 done, but data was set aside" in text, command
