"""Dataset identity: the one immutable reference a product carries from birth to the archive.

A :class:`ProductRef` (after lsst daf_butler's ``DatasetRef``) names one
product version: its kind (file suffix, ``uncal``, ``rate``, ``cal``, ...),
its :class:`DataId` (program, observation, visit, exposure, detector), the
*run* that made it (its permanent home, ``products/<run>/...``) and a UUID.
Events, job inputs and outputs, FITS headers (``PRODKIND``, ``RUNNAME``,
``PRODUUID``) and the catalog carry it; nothing downstream re-derives
identity from a file name.

A run holds any number of products; a product's file lives at
:meth:`ProductRef.relpath` under the products folder, a path that contains
its UUID, so no product ever overwrites another.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from obsflow.exceptions import DataModelError, ProductFileError
from obsflow.models.metadata import product_basename

__all__ = ["PRODUCT_EXTENSIONS", "PRODUCT_KINDS", "RUN_NAME", "DataId", "ProductRef", "check_run_name"]

PRODUCT_KINDS: dict[str, tuple[str, int]] = {
    "uncal": ("1", 1), "rate": ("2a", 2), "rateints": ("2a", 2), "cal": ("2b", 2),
    "i2d": ("3", 3), "crf": ("3", 3), "phot": ("3", 3), "clr": ("3", 3),
    "cat": ("3", 3), "segm": ("3", 3),
}
"""Product kind (file-name suffix) -> (data level, ObsCore calib_level)."""

PRODUCT_EXTENSIONS: dict[str, str] = {"phot": ".ecsv", "clr": ".png", "cat": ".ecsv"}
"""File extension of the kinds that are not FITS (every other kind: ``.fits``).
A ``phot`` product is a time series's light curve, an ECSV table (:mod:`obsflow.tso`);
a ``clr`` product a target's colour image from three mosaics, a PNG
(:mod:`obsflow.stage3.colour_job`); a ``cat`` product a mosaic's source catalog, an
ECSV table (its segmentation map, ``segm``, is FITS: :mod:`obsflow.stage3.catalog`)."""

_NAMESPACE = uuid.UUID("5b0c6f2e-8d2e-4e59-9a51-0b5f1c7e9d10")
"""Namespace of obsflow's name-based product UUIDs (fixed forever)."""

RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,47}$")
"""What a run name may be: a folder name of 1-48 letters, digits, ``.``, ``_``, ``-``."""


def check_run_name(name: str) -> str:
    """Return ``name`` if it is a valid run name, else raise ``ValueError`` saying why."""
    if not RUN_NAME.match(name):
        raise DataModelError(f"run name {name!r}: expected 1-48 letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit")
    return name


@dataclass(frozen=True, order=True)
class DataId:
    """What an exposure product is of: one exposure of one detector.

    ``program`` is the program id (e.g. ``"01234"``), ``observation``,
    ``visit`` and ``exposure`` are numbers, ``detector`` the detector name.
    """

    program: str
    observation: int
    visit: int
    exposure: int
    detector: str

    @property
    def basename(self) -> str:
        """The JWST-style file stem ``<program><obs><visit>_<exposure>_<detector>``."""
        return product_basename(self.program, self.observation, self.visit, self.exposure,
                                self.detector)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"program": self.program, "observation": self.observation, "visit": self.visit,
                "exposure": self.exposure, "detector": self.detector}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataId:
        """Inverse of :meth:`as_dict`."""
        return cls(str(data["program"]), int(data["observation"]), int(data["visit"]),
                   int(data["exposure"]), str(data["detector"]))


@dataclass(frozen=True)
class ProductRef:
    """One product version: kind + data id + run + UUID (immutable).

    Attributes
    ----------
    kind : str
        Product kind, a key of :data:`PRODUCT_KINDS`.
    data_id : DataId
        The exposure and detector it is of.
    run : str
        The run that made it: its permanent home.
    uuid : str
        Hex UUID (32 characters), unique across every site.
    """

    kind: str
    data_id: DataId
    run: str
    uuid: str = field(default_factory=lambda: uuid.uuid4().hex)

    @classmethod
    def derived(cls, kind: str, data_id: DataId, run: str, origin: str) -> ProductRef:
        """The reference of the product of ``kind`` a run makes from ``origin``.

        The UUID is a name-based UUID (RFC 4122 version 5, as daf_butler's
        "data id + run" ids) of kind, data id, run and ``origin`` (the input
        product's UUID, or a Level-1 product's version): a crashed job that
        runs again writes the same files under the same names instead of
        leaving orphans, and a product is never made twice in one run.
        """
        name = f"{run}/{kind}/{data_id.basename}/{origin}"
        return cls(kind, data_id, run, uuid.uuid5(_NAMESPACE, name).hex)

    def __post_init__(self) -> None:
        if self.kind not in PRODUCT_KINDS:
            raise DataModelError(f"product kind {self.kind!r}; allowed: "
                             f"{', '.join(sorted(PRODUCT_KINDS))}")
        check_run_name(self.run)
        if not re.fullmatch(r"[0-9a-f]{32}", self.uuid):
            raise DataModelError(f"product UUID {self.uuid!r}: expected 32 lowercase hex digits")

    @property
    def filename(self) -> str:
        """The product's file name, ``<basename>_<kind>.fits`` (``.ecsv`` for a ``phot`` table)."""
        return f"{self.data_id.basename}_{self.kind}{PRODUCT_EXTENSIONS.get(self.kind, '.fits')}"

    def relpath(self) -> str:
        """Where the file lives under the products folder (``/``-separated).

        ``<run>/<program>/<basename>/<uuid[:12]>/<basename>_<kind>.fits``: the
        file keeps its conventional name, its folder makes it unique.
        """
        d = self.data_id
        return f"{self.run}/{d.program}/{d.basename}/{self.uuid[:12]}/{self.filename}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (for job inputs, events and provenance)."""
        return {"kind": self.kind, "data_id": self.data_id.as_dict(), "run": self.run,
                "uuid": self.uuid}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProductRef:
        """Inverse of :meth:`as_dict`."""
        return cls(str(data["kind"]), DataId.from_dict(data["data_id"]), str(data["run"]),
                   str(data["uuid"]))

    def to_header(self, header: Any) -> None:
        """Write ``PRODKIND``, ``RUNNAME`` and ``PRODUUID`` into a FITS header."""
        header["PRODKIND"] = (self.kind, "product kind")
        header["RUNNAME"] = (self.run, "run")
        header["PRODUUID"] = (self.uuid, "product UUID")

    @classmethod
    def from_header(cls, header: Any, data_id: DataId, name: str = "") -> ProductRef:
        """The reference written by :meth:`to_header` (``data_id`` from the exposure keywords).

        Raises
        ------
        ProductFileError
            A keyword is missing or malformed; the message names ``name`` and the keyword.
        """
        missing = [k for k in ("PRODKIND", "RUNNAME", "PRODUUID") if k not in header]
        if missing:
            raise ProductFileError(f"{name or 'header'}: no product reference (keyword "
                                   f"{', '.join(missing)} missing)")
        try:
            return cls(str(header["PRODKIND"]), data_id, str(header["RUNNAME"]),
                       str(header["PRODUUID"]))
        except ValueError as exc:
            raise ProductFileError(f"{name or 'header'}: {exc}") from exc
