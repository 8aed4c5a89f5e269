"""Tests of obsflow.config: defaults, TOML round trip, env overrides, errors, docs."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from obsflow.config import (
    CONFIG_FILENAME,
    DatabaseSection,
    ExecutorSection,
    PathsSection,
    ServerSection,
    SiteConfig,
    SiteSection,
    default_site_root,
    env_variable,
    load_config,
    write_config,
)
from obsflow.exceptions import ConfigError

DOCS = Path(__file__).resolve().parents[1] / "docs" / "operations.md"


def _write(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / CONFIG_FILENAME
    path.write_text(text)
    return path


# -- defaults -----------------------------------------------------------------


def test_defaults(tmp_path: Path) -> None:
    cfg = SiteConfig.for_root(tmp_path)
    assert cfg.root == tmp_path.resolve()
    assert cfg.site.name == tmp_path.name
    assert cfg.profile.name == "webb_like"
    assert cfg.database.url is None
    assert cfg.database_url == f"sqlite:///{tmp_path.resolve() / 'obsflow.db'}"
    assert (cfg.ingest.settle_seconds, cfg.ingest.poll_seconds) == (2.0, 5.0)
    assert cfg.ingest.partial_deadline_hours == 48.0
    assert (cfg.executor.kind, cfg.executor.workers, cfg.executor.dask_scheduler) == (
        "local",
        0,
        None,
    )
    assert (cfg.server.host, cfg.server.port) == ("127.0.0.1", 8000)
    assert cfg.config_path == tmp_path.resolve() / CONFIG_FILENAME


def test_folder_properties_are_absolute_under_root(tmp_path: Path) -> None:
    cfg = SiteConfig.for_root(tmp_path)
    expected = ["incoming", "raw", "products", "refs", "quarantine", "logs"]
    assert list(cfg.folders) == expected
    for name, path in cfg.folders.items():
        assert path == tmp_path.resolve() / name
        assert getattr(cfg, f"{name}_dir") == path


def test_worker_count_zero_means_cpu_count() -> None:
    assert ExecutorSection().worker_count >= 1
    assert ExecutorSection(workers=3).worker_count == 3


def test_config_is_frozen(tmp_path: Path) -> None:
    cfg = SiteConfig.for_root(tmp_path)
    with pytest.raises(ValidationError):
        cfg.server = ServerSection(port=1)  # type: ignore[misc]
    with pytest.raises(ValidationError):
        cfg.server.port = 1  # type: ignore[misc]


def test_default_site_root() -> None:
    assert default_site_root({"OBSFLOW_HOME": "/data/site"}) == Path("/data/site")
    assert default_site_root({}) == Path("obsflow-site").absolute()
    assert default_site_root({"OBSFLOW_HOME": ""}) == Path("obsflow-site").absolute()


# -- TOML round trip ------------------------------------------------------------


def test_round_trip_defaults(tmp_path: Path) -> None:
    cfg = SiteConfig.for_root(tmp_path)
    write_config(cfg, cfg.config_path)
    assert load_config(tmp_path, env={}) == cfg
    assert load_config(cfg.config_path, env={}) == cfg
    assert "root" not in cfg.config_path.read_text()  # relocatable
    assert sorted(p.name for p in tmp_path.iterdir()) == [CONFIG_FILENAME]  # no tmp left


def test_round_trip_custom_values(tmp_path: Path) -> None:
    cfg = SiteConfig(
        site=SiteSection(root=tmp_path, name="lab"),
        database=DatabaseSection(url="postgresql://obsflow@db/obsflow"),
        paths=PathsSection(incoming=Path("/mnt/downlink"), logs=Path("var/log")),
        executor=ExecutorSection(kind="dask", workers=8, dask_scheduler="tcp://head:8786"),
        server=ServerSection(host="0.0.0.0", port=9000),
    )
    write_config(cfg, cfg.config_path)
    assert load_config(tmp_path, env={}) == cfg


def test_site_moved_keeps_working(tmp_path: Path) -> None:
    cfg = SiteConfig.for_root(tmp_path / "a")
    (tmp_path / "a").mkdir()
    write_config(cfg, cfg.config_path)
    (tmp_path / "a").rename(tmp_path / "b")
    moved = load_config(tmp_path / "b", env={})
    assert moved.incoming_dir == (tmp_path / "b" / "incoming").resolve()


def test_root_elsewhere_is_written(tmp_path: Path) -> None:
    cfg = SiteConfig.for_root(tmp_path / "data")
    path = tmp_path / "etc" / "site.toml"
    path.parent.mkdir()
    write_config(cfg, path)
    assert load_config(path, env={}).root == (tmp_path / "data").resolve()


def test_write_overwrites_atomically(tmp_path: Path) -> None:
    cfg = SiteConfig.for_root(tmp_path)
    write_config(cfg, cfg.config_path)
    changed = cfg.model_copy(update={"server": ServerSection(port=1234)})
    write_config(changed, cfg.config_path)
    assert load_config(tmp_path, env={}).server.port == 1234
    assert [p.name for p in tmp_path.iterdir()] == [CONFIG_FILENAME]


@settings(max_examples=25, deadline=None)
@given(
    port=st.integers(1, 65535),
    settle=st.floats(0, 1e6, allow_nan=False),
    workers=st.integers(0, 4096),
    name=st.text(min_size=1, max_size=20),
)
def test_round_trip_property(port: int, settle: float, workers: int, name: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        cfg = SiteConfig.for_root(root).model_copy(
            update={
                "site": SiteSection(root=root, name=name),
                "server": ServerSection(port=port),
                "executor": ExecutorSection(workers=workers),
            }
        )
        cfg = cfg.model_copy(
            update={"ingest": cfg.ingest.model_copy(update={"settle_seconds": settle})}
        )
        write_config(cfg, cfg.config_path)
        assert load_config(root, env={}) == cfg


# -- relative paths ---------------------------------------------------------------


def test_relative_paths_resolved_against_root(tmp_path: Path) -> None:
    _write(
        tmp_path,
        '[paths]\nincoming = "drop"\nraw = "/abs/raw"\n'
        '[database]\nurl = "sqlite:///db/cat.db"\n'
        '[profile]\nname = "profiles/mine.toml"\n',
    )
    cfg = load_config(tmp_path, env={})
    root = tmp_path.resolve()
    assert cfg.paths.incoming == Path("drop")  # stored as written
    assert cfg.incoming_dir == root / "drop"
    assert cfg.raw_dir == Path("/abs/raw")
    assert cfg.database_url == f"sqlite:///{root / 'db' / 'cat.db'}"
    assert cfg.profile_source == root / "profiles" / "mine.toml"


def test_relative_site_root_is_relative_to_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "etc", '[site]\nroot = "../data"\n')
    cfg = load_config(path, env={})
    assert cfg.root == (tmp_path / "data").resolve()
    assert cfg.site.name == "data"


def test_builtin_profile_name_is_not_a_path(tmp_path: Path) -> None:
    cfg = SiteConfig.for_root(tmp_path, profile="smallsat")
    assert cfg.profile_source == "smallsat"
    assert cfg.load_profile().mission.name == "smallsat"


# -- environment overrides ----------------------------------------------------------


def test_env_overrides(tmp_path: Path) -> None:
    _write(tmp_path, "[server]\nport = 8100\n")
    env = {
        "OBSFLOW_SERVER__PORT": "9000",
        "OBSFLOW_DATABASE__URL": "postgresql://u@h/obsflow",
        "OBSFLOW_INGEST__POLL_SECONDS": "0.5",
        "OBSFLOW_EXECUTOR__KIND": "dask",
        "OBSFLOW_HOME": "/elsewhere",  # not an override
        "PATH": "/usr/bin",
    }
    cfg = load_config(tmp_path, env=env)
    assert cfg.server.port == 9000
    assert cfg.database_url == "postgresql://u@h/obsflow"
    assert cfg.ingest.poll_seconds == 0.5
    assert cfg.executor.kind == "dask"
    assert cfg.root == tmp_path.resolve()
    assert "8100" in (tmp_path / CONFIG_FILENAME).read_text()  # never written back


def test_env_defaults_to_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, "")
    monkeypatch.setenv("OBSFLOW_SERVER__HOST", "0.0.0.0")
    assert load_config(tmp_path).server.host == "0.0.0.0"


def test_env_unknown_key_lists_allowed_keys(tmp_path: Path) -> None:
    _write(tmp_path, "")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env={"OBSFLOW_SERVER__PROT": "9000"})
    message = str(info.value)
    assert "OBSFLOW_SERVER__PROT" in message
    assert "allowed: host, port" in message


def test_env_unknown_section_lists_sections(tmp_path: Path) -> None:
    _write(tmp_path, "")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env={"OBSFLOW_SERVR__PORT": "9000"})
    message = str(info.value)
    assert "OBSFLOW_SERVR__PORT" in message
    for section in ("database", "executor", "ingest", "paths", "profile", "server", "site"):
        assert section in message


def test_env_too_deep_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, "")
    with pytest.raises(ConfigError, match="OBSFLOW_SERVER__PORT__X"):
        load_config(tmp_path, env={"OBSFLOW_SERVER__PORT__X": "1"})


def test_env_bad_type_names_variable_and_key(tmp_path: Path) -> None:
    _write(tmp_path, "[server]\nport = 8000\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env={"OBSFLOW_SERVER__PORT": "eighty"})
    message = str(info.value)
    assert "environment variable OBSFLOW_SERVER__PORT" in message
    assert "server.port" in message
    assert "integer" in message
    assert str(tmp_path) not in message  # the file is not to blame


def test_env_out_of_range(tmp_path: Path) -> None:
    _write(tmp_path, "")
    with pytest.raises(ConfigError, match=r"OBSFLOW_SERVER__PORT.*server\.port.*65535"):
        load_config(tmp_path, env={"OBSFLOW_SERVER__PORT": "70000"})


def test_trusted_proxies_from_file_and_env(tmp_path: Path) -> None:
    _write(tmp_path, '[server]\ntrusted_proxies = ["127.0.0.1", "10.0.0.0/8"]\n')
    cfg = load_config(tmp_path, env={})
    assert cfg.server.trusted_proxies == ("127.0.0.1", "10.0.0.0/8")
    write_config(cfg, cfg.config_path)
    assert load_config(tmp_path, env={}) == cfg
    env = {"OBSFLOW_SERVER__TRUSTED_PROXIES": " ::1, 192.168.0.0/16 "}
    assert load_config(tmp_path, env=env).server.trusted_proxies == ("::1", "192.168.0.0/16")
    assert load_config(tmp_path, env={"OBSFLOW_SERVER__TRUSTED_PROXIES": ""}
                       ).server.trusted_proxies == ()
    assert SiteConfig.for_root(tmp_path).server.trusted_proxies == ()


@pytest.mark.parametrize("value", ["*", "proxy.example.org", "10.0.0.1/8", "300.1.1.1"])
def test_trusted_proxies_must_be_addresses(tmp_path: Path, value: str) -> None:
    _write(tmp_path, "")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env={"OBSFLOW_SERVER__TRUSTED_PROXIES": f"127.0.0.1,{value}"})
    message = str(info.value)
    assert "OBSFLOW_SERVER__TRUSTED_PROXIES" in message and "server.trusted_proxies" in message
    assert f"{value!r} is not an IP address or CIDR network" in message
    assert "\n" not in message


def test_product_formats_from_file_and_env(tmp_path: Path) -> None:
    _write(tmp_path, '[products]\nformats = ["fits", "asdf"]\n')
    cfg = load_config(tmp_path, env={})
    assert cfg.products.formats == ("fits", "asdf")
    write_config(cfg, cfg.config_path)
    assert load_config(tmp_path, env={}) == cfg
    assert load_config(tmp_path, env={"OBSFLOW_PRODUCTS__FORMATS": "fits"}
                       ).products.formats == ("fits",)
    assert SiteConfig.for_root(tmp_path).products.formats == ("fits",)


def test_asdf_kinds_from_file_and_env(tmp_path: Path) -> None:
    _write(tmp_path, '[products]\nformats = ["fits", "asdf"]\nasdf_kinds = ["uncal", "segm"]\n')
    cfg = load_config(tmp_path, env={})
    assert cfg.products.asdf_kinds == ("uncal", "segm")
    write_config(cfg, cfg.config_path)
    assert load_config(tmp_path, env={}) == cfg
    assert load_config(tmp_path, env={"OBSFLOW_PRODUCTS__ASDF_KINDS": "rate,crf"}
                       ).products.asdf_kinds == ("rate", "crf")
    assert SiteConfig.for_root(tmp_path).products.asdf_kinds == ("cal", "i2d")
    _write(tmp_path, "")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env={"OBSFLOW_PRODUCTS__ASDF_KINDS": "cal,cat"})
    assert "OBSFLOW_PRODUCTS__ASDF_KINDS" in str(info.value)
    assert "products.asdf_kinds" in str(info.value)


@pytest.mark.parametrize(("value", "expected"), [
    ("asdf", "'fits' must be one of the formats"), ("fits,hdf5", "products.formats")])
def test_product_formats_must_be_known_and_keep_fits(tmp_path: Path, value: str,
                                                     expected: str) -> None:
    _write(tmp_path, "")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env={"OBSFLOW_PRODUCTS__FORMATS": value})
    message = str(info.value)
    assert "OBSFLOW_PRODUCTS__FORMATS" in message and expected in message
    assert "\n" not in message


def test_env_variable_names() -> None:
    assert env_variable("server", "port") == "OBSFLOW_SERVER__PORT"
    assert env_variable("ingest", "settle_seconds") == "OBSFLOW_INGEST__SETTLE_SECONDS"


# -- errors in the file ------------------------------------------------------------


def test_bad_value_in_file_names_file_and_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "[ingest]\npoll_seconds = -1\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env={})
    message = str(info.value)
    assert str(path) in message
    assert "ingest.poll_seconds" in message
    assert "greater than 0" in message


def test_unknown_key_in_file_lists_allowed(tmp_path: Path) -> None:
    path = _write(tmp_path, "[server]\nprot = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env={})
    message = str(info.value)
    assert str(path) in message and "server.prot" in message
    assert "host, port" in message


def test_unknown_section_in_file_lists_allowed(tmp_path: Path) -> None:
    _write(tmp_path, "[servr]\nport = 1\n")
    with pytest.raises(ConfigError, match=r"unknown section \[servr\].*server"):
        load_config(tmp_path, env={})


def test_unknown_executor_kind_lists_allowed(tmp_path: Path) -> None:
    _write(tmp_path, '[executor]\nkind = "slurm"\n')
    with pytest.raises(ConfigError, match=r"executor\.kind.*'local', 'dask' or 'htcondor'"):
        load_config(tmp_path, env={})


def test_unknown_database_backend_lists_allowed(tmp_path: Path) -> None:
    _write(tmp_path, '[database]\nurl = "mysql://u@h/db"\n')
    with pytest.raises(ConfigError, match=r"database\.url.*postgresql, sqlite"):
        load_config(tmp_path, env={})


def test_not_toml(tmp_path: Path) -> None:
    path = _write(tmp_path, "[server\nport = \n")
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        load_config(tmp_path, env={})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path, env={})


def test_config_error_is_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        load_config(tmp_path, env={})


# -- every key documented -------------------------------------------------------------


def _documented_keys() -> dict[str, str]:
    """Map ``section.key`` to its env variable from the table in docs/operations.md."""
    text = DOCS.read_text()
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+\.[a-z_]+)` \|.*\| `(OBSFLOW_[A-Z_]+)` \|$", section, re.M)
    return dict(rows)


def _config_keys() -> set[str]:
    keys = set()
    for section, field in SiteConfig.model_fields.items():
        assert isinstance(field.annotation, type)
        keys |= {f"{section}.{key}" for key in field.annotation.model_fields}
    return keys


def test_every_config_key_is_documented() -> None:
    documented = _documented_keys()
    missing = _config_keys() - set(documented)
    assert not missing, f"config keys missing from {DOCS.name} ## Configuration: {missing}"


def test_no_stale_keys_documented() -> None:
    stale = set(_documented_keys()) - _config_keys()
    assert not stale, f"{DOCS.name} documents keys SiteConfig does not have: {stale}"


def test_documented_env_variables_are_right() -> None:
    for key, variable in _documented_keys().items():
        assert env_variable(*key.split(".")) == variable


def test_write_keeps_file_mode(tmp_path: Path) -> None:
    cfg = SiteConfig.for_root(tmp_path)
    write_config(cfg, cfg.config_path)
    assert cfg.config_path.stat().st_mode & 0o777 == 0o644
    cfg.config_path.chmod(0o600)
    write_config(cfg, cfg.config_path)
    assert cfg.config_path.stat().st_mode & 0o777 == 0o600


def test_access_policy_from_file_env_and_refused(tmp_path: Path) -> None:
    _write(tmp_path, "")
    assert load_config(tmp_path, env={}).archive.access_policy == "metadata"
    _write(tmp_path, '[archive]\naccess_policy = "hidden"\n')
    cfg = load_config(tmp_path, env={})
    assert cfg.archive.access_policy == "hidden"
    write_config(cfg, cfg.config_path)
    assert load_config(tmp_path, env={}) == cfg
    env = {"OBSFLOW_ARCHIVE__ACCESS_POLICY": "metadata"}
    assert load_config(tmp_path, env=env).archive.access_policy == "metadata"
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env={"OBSFLOW_ARCHIVE__ACCESS_POLICY": "open"})
    message = str(info.value)
    assert "OBSFLOW_ARCHIVE__ACCESS_POLICY" in message and "'metadata' or 'hidden'" in message
    assert "\n" not in message
