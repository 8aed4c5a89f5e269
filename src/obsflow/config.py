"""Site configuration: one typed, frozen object read from ``obsflow.toml``.

A *site* is a folder holding ``obsflow.toml``, the data folders and (by
default) the SQLite database.  :func:`load_config` reads the file, applies
``OBSFLOW_<SECTION>__<KEY>`` environment overrides and returns a
:class:`SiteConfig`, which is then passed down to everything that needs a
setting; nothing in obsflow reads configuration from anywhere else.

Example ``obsflow.toml``::

    [site]
    name = "lab"

    [profile]
    name = "smallsat"

    [server]
    port = 9000

Relative folder paths (and a relative profile path) are relative to the
site root, the folder holding ``obsflow.toml``, so a site can be moved or
copied as a whole.  Every key, its default and its environment variable are
listed in ``docs/operations.md``.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from obsflow.dburl import backend_name, sqlite_path
from obsflow.exceptions import ConfigError
from obsflow.fileio import atomic_path
from obsflow.tomlfile import parse_toml

if TYPE_CHECKING:
    # the profile (pydantic models of every instrument) is read by the commands that need
    # it: `obsflow jobs` and `refs contexts` open a site without it
    from obsflow.profiles import Profile

__all__ = [
    "CONFIG_FILENAME",
    "ArchiveSection",
    "DEFAULT_PROFILE",
    "ENV_PREFIX",
    "DatabaseSection",
    "ExecutorSection",
    "IngestSection",
    "PathsSection",
    "ProfileSection",
    "ServerSection",
    "SiteConfig",
    "SiteSection",
    "default_site_root",
    "env_variable",
    "load_config",
    "write_config",
]

CONFIG_FILENAME = "obsflow.toml"
"""Name of the configuration file at the root of every site."""

DEFAULT_PROFILE = "webb_like"
"""Observatory profile of a new site when none is named."""

ENV_PREFIX = "OBSFLOW_"
"""Prefix of environment overrides: ``OBSFLOW_<SECTION>__<KEY>``."""

HOME_VARIABLE = "OBSFLOW_HOME"
"""Environment variable naming the default site root."""


class _Section(BaseModel):
    # allow_inf_nan=False: every number of a site is finite (``inf`` or ``nan`` as a
    # duration, a count or a port is refused with the file and key named)
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class SiteSection(_Section):
    """``[site]``: where the site is and what it is called."""

    root: Path = Field(
        description="site folder; default: the folder holding obsflow.toml (relative: to it)"
    )
    name: str = Field(default="", description="label of the site; default: the root folder's name")

    @field_validator("root")
    @classmethod
    def _absolute_root(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: Any) -> Any:
        if (
            isinstance(data, dict)
            and not data.get("name")
            and isinstance(data.get("root"), str | Path)
        ):
            return {**data, "name": Path(data["root"]).expanduser().resolve().name}
        return data


class ProfileSection(_Section):
    """``[profile]``: the observatory profile of the site."""

    name: str = Field(
        default=DEFAULT_PROFILE,
        min_length=1,
        description="built-in profile name, or path to a profile .toml (relative: to the root)",
    )


class DatabaseSection(_Section):
    """``[database]``: the catalog database."""

    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL (sqlite or postgresql); default sqlite:///<root>/obsflow.db",
    )

    @field_validator("url")
    @classmethod
    def _known_backend(cls, value: str | None) -> str | None:
        if value is not None:
            backend_name(value)  # raises (a ValueError) naming the allowed backends
        return value


class PathsSection(_Section):
    """``[paths]``: the data folders (relative paths are relative to the root)."""

    incoming: Path = Field(default=Path("incoming"), description="downlink drop folder (polled)")
    raw: Path = Field(default=Path("raw"), description="Level-0 raw archive, never modified")
    products: Path = Field(default=Path("products"), description="product store (Level 1-3)")
    refs: Path = Field(default=Path("refs"), description="calibration reference files")
    quarantine: Path = Field(default=Path("quarantine"), description="files that failed checks")
    logs: Path = Field(default=Path("logs"), description="job and service logs")


class IngestSection(_Section):
    """``[ingest]``: how the incoming folder is polled."""

    settle_seconds: float = Field(
        default=2.0, ge=0, description="a file must be unchanged this long before ingest, s"
    )
    poll_seconds: float = Field(default=5.0, gt=0, description="interval between polls, s")
    partial_deadline_hours: float = Field(
        default=48.0,
        gt=0,
        description="assemble an incomplete exposure after waiting this long for re-sends, h",
    )


class ExecutorSection(_Section):
    """``[executor]``: where jobs run."""

    kind: Literal["local", "dask", "htcondor"] = Field(
        default="local", description="local process pool, Dask distributed or HTCondor DAGMan"
    )
    workers: int = Field(default=0, ge=0, description="parallel workers; 0 means the CPU count")
    dask_scheduler: str | None = Field(
        default=None, description="Dask scheduler address (kind = dask), e.g. tcp://host:8786"
    )
    max_attempts: int = Field(
        default=3, ge=1, description="tries of a job before it is marked failed"
    )
    retry_backoff_seconds: float = Field(
        default=2.0, ge=0, description="wait after a job's first failed try, doubled after each, s"
    )
    lease_seconds: float = Field(
        default=60.0, ge=1, allow_inf_nan=False,
        description="a running job whose orchestrator stopped renewing its lease is re-queued by "
        "any live orchestrator within this time, s",
    )
    stale_temp_seconds: float = Field(
        default=600.0, ge=0, allow_inf_nan=False,
        description="`obsflow run` removes temporary files of killed writers older than this, s",
    )

    @property
    def worker_count(self) -> int:
        """Number of workers to start: ``workers``, or the CPU count when it is 0."""
        return self.workers or os.cpu_count() or 1


def _comma_list(value: Any) -> Any:
    """A list setting from an environment override: one string, items separated by commas."""
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


class ServerSection(_Section):
    """``[server]``: the HTTP API and web interface."""

    host: str = Field(default="127.0.0.1", min_length=1, description="interface to listen on")
    port: int = Field(default=8000, ge=1, le=65535, description="TCP port to listen on")
    trusted_proxies: tuple[str, ...] = Field(
        default=(),
        description="IP addresses or CIDR networks of reverse proxies whose X-Forwarded-For "
        "is believed; empty: forwarded headers are ignored",
    )

    _split_proxies = field_validator("trusted_proxies", mode="before")(_comma_list)

    @field_validator("trusted_proxies")
    @classmethod
    def _ip_networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            try:
                ipaddress.ip_network(item)
            except ValueError:
                raise ConfigError(f"{item!r} is not an IP address or CIDR network without host "
                                  "bits (e.g. 127.0.0.1, 10.0.0.0/8, ::1)") from None
        return value


class ArchiveSection(_Section):
    """``[archive]``: the product store and the access policy of the archive."""

    store_url: str | None = Field(
        default=None,
        description="fsspec URL of the product store (e.g. s3://bucket/obsflow); "
        "default: the local [paths] products folder",
    )
    access_policy: Literal["metadata", "hidden"] = Field(
        default="metadata",
        description="what anyone may see of proprietary observations before their release: "
        "'metadata' lists their program, target, instrument, filter, times and release date "
        "in the web search (data, previews and headers stay private); 'hidden' tells nothing",
    )


class ProductsSection(_Section):
    """``[products]``: the file formats a site writes its products in."""

    formats: tuple[Literal["fits", "asdf"], ...] = Field(
        default=("fits",),
        description="file formats of the site's image products (the kinds of asdf_kinds): "
        "'fits' always; with 'asdf' the job that writes (or registers) the FITS also writes "
        "its pure ASDF form, registered as a second file of the same product",
    )

    asdf_kinds: tuple[Literal["uncal", "rate", "rateints", "cal", "crf", "i2d", "segm"], ...] = (
        Field(default=("cal", "i2d"),
              description="product kinds written in pure ASDF too when formats has 'asdf' "
              "(any of uncal, rate, rateints, cal, crf, i2d, segm)"))

    _split_formats = field_validator("formats", "asdf_kinds", mode="before")(_comma_list)

    @field_validator("formats")
    @classmethod
    def _fits_first(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if "fits" not in value:
            raise ConfigError(f"{list(value)!r}: 'fits' must be one of the formats (the "
                              "ASDF form is written from the FITS product), e.g. "
                              "[\"fits\", \"asdf\"]")
        return tuple(dict.fromkeys(value))


_FOLDERS = ("incoming", "raw", "products", "refs", "quarantine", "logs")


class SiteConfig(_Section):
    """The whole configuration of one site (see module docstring).

    Section values are stored as written (relative paths stay relative); the
    properties give the absolute paths and the effective database URL.
    """

    site: SiteSection
    profile: ProfileSection = ProfileSection()
    database: DatabaseSection = DatabaseSection()
    paths: PathsSection = PathsSection()
    ingest: IngestSection = IngestSection()
    executor: ExecutorSection = ExecutorSection()
    server: ServerSection = ServerSection()
    archive: ArchiveSection = ArchiveSection()
    products: ProductsSection = ProductsSection()

    @classmethod
    def for_root(cls, root: Path, *, profile: str = DEFAULT_PROFILE) -> SiteConfig:
        """Return the default configuration of a site at ``root``."""
        return cls(site=SiteSection(root=root), profile=ProfileSection(name=profile))

    @property
    def root(self) -> Path:
        """Absolute site root."""
        return self.site.root

    @property
    def config_path(self) -> Path:
        """Absolute path of the site's ``obsflow.toml``."""
        return self.root / CONFIG_FILENAME

    def _folder(self, name: str) -> Path:
        return self.root / getattr(self.paths, name)

    @property
    def incoming_dir(self) -> Path:
        """Absolute incoming (downlink drop) folder."""
        return self._folder("incoming")

    @property
    def raw_dir(self) -> Path:
        """Absolute raw (Level-0) archive folder."""
        return self._folder("raw")

    @property
    def products_dir(self) -> Path:
        """Absolute product store folder."""
        return self._folder("products")

    @property
    def refs_dir(self) -> Path:
        """Absolute reference-file folder."""
        return self._folder("refs")

    @property
    def quarantine_dir(self) -> Path:
        """Absolute quarantine folder."""
        return self._folder("quarantine")

    @property
    def logs_dir(self) -> Path:
        """Absolute log folder."""
        return self._folder("logs")

    @property
    def folders(self) -> dict[str, Path]:
        """Every data folder by its ``[paths]`` key, absolute, in a fixed order."""
        return {name: self._folder(name) for name in _FOLDERS}

    @property
    def database_url(self) -> str:
        """Effective database URL; a relative SQLite file is relative to the root."""
        url = self.database.url
        if url is None:
            return f"sqlite:///{self.root / 'obsflow.db'}"
        path = sqlite_path(url)
        if path is not None and not path.is_absolute():
            from sqlalchemy.engine import make_url  # a relative SQLite file: rare

            absolute = make_url(url).set(database=str(self.root / path))
            return absolute.render_as_string(hide_password=False)
        return url

    @property
    def profile_source(self) -> str | Path:
        """The profile to load: a built-in name, or an absolute path to a .toml file."""
        name = self.profile.name
        if not name.endswith(".toml"):
            return name
        return self.root / Path(name).expanduser()

    def load_profile(self) -> Profile:
        """Load and validate the site's observatory profile.

        Raises
        ------
        ProfileError, UnknownOptionError
            The profile file is invalid, or the name is not a built-in profile.
        """
        from obsflow.profiles import load_profile

        return load_profile(self.profile_source)


def default_site_root(env: Mapping[str, str] | None = None) -> Path:
    """Return ``$OBSFLOW_HOME`` if set and not empty, else ``./obsflow-site`` (absolute)."""
    env = os.environ if env is None else env
    home = env.get(HOME_VARIABLE, "")
    return Path(home or "obsflow-site").expanduser().absolute()


def env_variable(section: str, key: str) -> str:
    """Name of the environment variable overriding ``section.key``."""
    return f"{ENV_PREFIX}{section.upper()}__{key.upper()}"


def _section_models() -> dict[str, type[BaseModel]]:
    sections: dict[str, type[BaseModel]] = {}
    for name, field in SiteConfig.model_fields.items():
        assert isinstance(field.annotation, type)
        sections[name] = field.annotation
    return sections


def _allowed(names: Any) -> str:
    return ", ".join(sorted(names))


def _env_overrides(env: Mapping[str, str]) -> dict[tuple[str, str], tuple[str, str]]:
    """Parse ``OBSFLOW_<SECTION>__<KEY>`` variables into {(section, key): (variable, value)}.

    Variables with the prefix but without ``__`` (such as ``OBSFLOW_HOME``)
    are not overrides and are ignored.
    """
    sections = _section_models()
    overrides: dict[tuple[str, str], tuple[str, str]] = {}
    for variable, value in sorted(env.items()):
        upper = variable.upper()
        if not upper.startswith(ENV_PREFIX) or "__" not in upper:
            continue
        parts = upper[len(ENV_PREFIX) :].lower().split("__")
        if len(parts) != 2:
            raise ConfigError(
                f"environment variable {variable}: expected {ENV_PREFIX}<SECTION>__<KEY> "
                f"(one '__'), e.g. {env_variable('server', 'port')}"
            )
        if parts[0] not in sections:
            raise ConfigError(
                f"environment variable {variable}: unknown section {parts[0]!r}; "
                f"allowed sections: {_allowed(sections)}"
            )
        section, key = parts
        keys = sections[section].model_fields
        if key not in keys:
            raise ConfigError(
                f"environment variable {variable}: unknown key {key!r} in section "
                f"[{section}]; allowed: {_allowed(keys)}"
            )
        overrides[(section, key)] = (variable, value)
    return overrides


def _describe_error(error: Any, origins: Mapping[tuple[str, ...], str], default: str) -> str:
    """One line for one pydantic error: where it came from, which key, what was expected."""
    loc = tuple(str(part) for part in error["loc"])
    origin = origins.get(loc[:2], default)
    key = ".".join(loc) or "<top level>"
    if error["type"] == "extra_forbidden":
        sections = _section_models()
        if len(loc) == 1:
            return f"{origin}: unknown section [{key}]; allowed: {_allowed(sections)}"
        parent = sections.get(loc[0])
        allowed = _allowed(parent.model_fields) if parent is not None else "?"
        return f"{origin}: unknown key {key}; allowed in [{loc[0]}]: {allowed}"
    got = repr(error.get("input"))
    got = got if len(got) <= 80 else got[:77] + "..."
    return f"{origin}: {key}: {error['msg']} (got {got})"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such configuration file") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file: {exc.strerror}") from exc
    return parse_toml(data, path, ConfigError)


def _config_file(root_or_file: Path) -> Path:
    path = Path(root_or_file).expanduser()
    if path.is_dir() or path.suffix != ".toml":
        path = path / CONFIG_FILENAME
    return path.absolute()


def load_config(root_or_file: Path, env: Mapping[str, str] | None = None) -> SiteConfig:
    """Read a site's ``obsflow.toml`` and apply environment overrides.

    Parameters
    ----------
    root_or_file : pathlib.Path
        The site root (holding ``obsflow.toml``) or the path of a ``.toml`` file.
    env : Mapping[str, str], optional
        Environment to take ``OBSFLOW_<SECTION>__<KEY>`` overrides from
        (default ``os.environ``; pass ``{}`` for none).  Values are strings,
        converted to each key's type, e.g. ``OBSFLOW_SERVER__PORT=9000``.

    Returns
    -------
    SiteConfig
        The validated configuration; ``site.root`` defaults to the folder
        holding the file, and a relative ``site.root`` is relative to it.

    Raises
    ------
    ConfigError
        The file is missing or not TOML; or a key or variable is unknown (the
        message lists the allowed ones) or has a bad value (the message names
        the file or variable, the key and what was expected).
    """
    path = _config_file(root_or_file)
    data = _read_toml(path)
    origins: dict[tuple[str, ...], str] = {}
    for (section, key), (variable, value) in _env_overrides(
        os.environ if env is None else env
    ).items():
        table = data.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{section}] must be a table, got {table!r}")
        table[key] = value
        origins[(section, key)] = f"environment variable {variable}"
    site = data.setdefault("site", {})
    if isinstance(site, dict) and isinstance(site.get("root", ""), str):
        site["root"] = str(path.parent / site.get("root", ""))
    try:
        return SiteConfig.model_validate(data)
    except ValidationError as exc:
        lines = [_describe_error(err, origins, str(path)) for err in exc.errors()]
        raise ConfigError("; ".join(lines)) from exc


def _to_toml(cfg: SiteConfig, path: Path) -> str:
    import tomli_w

    data = cfg.model_dump(mode="json", exclude_none=True)
    if cfg.root == path.parent.resolve():
        del data["site"]["root"]
    data = {section: table for section, table in data.items() if table}
    header = "# obsflow site configuration; every key is described in docs/operations.md\n\n"
    return header + tomli_w.dumps(data)


def write_config(cfg: SiteConfig, path: Path) -> None:
    """Write ``cfg`` as TOML to ``path`` atomically (:func:`obsflow.fileio.atomic_path`).

    ``site.root`` is left out when it is the folder holding ``path``, so the
    site stays relocatable; keys whose value is unset (None) are left out.
    A new file gets mode 0644; an existing file keeps its mode.
    """
    path = Path(path).absolute()
    text = _to_toml(cfg, path)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(mode)
