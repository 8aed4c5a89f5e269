"""Image3 associations: which ``_cal`` products make one mosaic, as a small JSON file.

An association (the JWST ``asn`` idea, rule ``image3``) groups the current
``_cal`` products of one program, observation, target and filter: every
visit, dither and detector of that observation taken in that filter.  It
makes one product, the mosaic, whose :class:`~obsflow.models.DataId` is
``(program, observation, visit 0, exposure 0, detector <FILTER>)``:
visit and exposure 0 mean "all of them", and the filter stands where a
detector name would, so the mosaics of one observation's filters get their
own names (``01234001000_00000_f200w_i2d.fits``) and their own archive rows.

Membership is decided from the observation log ingest keeps
(:class:`obsflow.ingest.tables.ObservationLog`): the planned products of the
observation in that filter whose status is ``executed`` (a skipped or failed
exposure never sends science data).  The association is *complete* when
every one of them has a current ``_cal`` in the archive
(:func:`complete_association`); only then does the stage-3 job fire.  A
member's new version (a reprocessing campaign) makes a new member set, a new
:func:`Association.digest` and so a new job and a new mosaic version.

The file (``<basename>_asn.json`` beside the mosaic) holds ``asn_id``,
``asn_type`` ``image3``, ``asn_rule``, ``asn_pool`` (the site), ``program``,
``observation``, ``target``, ``filter``, ``instrument``, ``digest`` and the
``products`` list (JWST's layout: one product, ``name`` and ``members``,
each member with ``expname``, ``exptype`` ``science``, ``product_id``,
``version``, ``uuid``, ``path`` (under the products folder) and ``sha256``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from obsflow.exceptions import AssociationError
from obsflow.fileio import atomic_path
from obsflow.models.identity import DataId, ProductRef

__all__ = ["ASN_RULE", "ASN_TYPE", "Association", "Member", "association_from_rows",
           "complete_association", "planned_members", "read_association", "write_association"]

ASN_TYPE = "image3"
"""The association type (JWST's name for a stage-3 imaging association)."""

ASN_RULE = "obsflow_image3_program_observation_target_filter"
"""The rule that made the association: every executed product of one observation in one filter."""


@dataclass(frozen=True)
class Member:
    """One ``_cal`` product of an association.

    ``path`` is relative to the products folder; ``product_id`` and
    ``version`` are the archive's; ``sha256`` is the file's.
    """

    ref: ProductRef
    product_id: str
    version: int
    path: str
    sha256: str

    @property
    def expname(self) -> str:
        """The exposure's product name (``<basename>_cal.fits``)."""
        return self.ref.filename

    def as_dict(self) -> dict[str, Any]:
        """The member's entry in the association file."""
        return {"expname": self.expname, "exptype": "science", "product_id": self.product_id,
                "version": self.version, "uuid": self.ref.uuid, "ref": self.ref.as_dict(),
                "path": self.path, "sha256": self.sha256}


@dataclass(frozen=True)
class Association:
    """An image3 association: what one mosaic is made of (module docstring).

    ``members`` are sorted by exposure name, so equal member sets give equal
    associations.
    """

    program: str
    observation: int
    target: str
    filter: str
    instrument: str
    members: tuple[Member, ...]
    pool: str = "obsflow"

    def __post_init__(self) -> None:
        if not self.members:
            raise AssociationError(f"association {self.asn_id}: no member")
        object.__setattr__(self, "members", tuple(sorted(self.members, key=lambda m: m.expname)))

    @property
    def asn_id(self) -> str:
        """JWST-like id: ``o<program>-o<obs>_image3_<filter>`` (lower case)."""
        return f"o{self.program}-o{self.observation:03d}_{ASN_TYPE}_{self.filter}".lower()

    @property
    def data_id(self) -> DataId:
        """The mosaic's data id: visit and exposure 0 (all), the filter as its 'detector'."""
        return DataId(self.program, self.observation, 0, 0, self.filter.upper())

    @property
    def digest(self) -> str:
        """sha256 (hex) of the members' UUIDs: identifies the member set (and so the mosaic)."""
        return hashlib.sha256(",".join(m.ref.uuid for m in self.members).encode()).hexdigest()

    def as_dict(self) -> dict[str, Any]:
        """The association file's content (module docstring)."""
        return {"asn_id": self.asn_id, "asn_type": ASN_TYPE, "asn_rule": ASN_RULE,
                "asn_pool": self.pool, "program": self.program, "observation": self.observation,
                "target": self.target, "filter": self.filter, "instrument": self.instrument,
                "digest": self.digest,
                "products": [{"name": self.data_id.basename,
                              "members": [m.as_dict() for m in self.members]}]}

    @classmethod
    def from_dict(cls, data: dict[str, Any], name: str = "association") -> Association:
        """Inverse of :meth:`as_dict`; ``AssociationError`` naming ``name`` and the field."""
        try:
            if data["asn_type"] != ASN_TYPE:
                raise AssociationError(f"{name}: asn_type {data['asn_type']!r}, expected "
                                       f"{ASN_TYPE!r}")
            members = tuple(Member(ProductRef.from_dict(m["ref"]), str(m["product_id"]),
                                   int(m["version"]), str(m["path"]), str(m["sha256"]))
                            for m in data["products"][0]["members"])
            asn = cls(str(data["program"]), int(data["observation"]), str(data["target"]),
                      str(data["filter"]), str(data["instrument"]), members,
                      str(data.get("asn_pool", "obsflow")))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise AssociationError(f"{name}: not an image3 association: field {exc} missing "
                                   "or malformed") from exc
        if "digest" in data and data["digest"] != asn.digest:
            raise AssociationError(f"{name}: digest {data['digest']} does not match its "
                                   f"members ({asn.digest})")
        return asn

    def to_json(self) -> str:
        """The association file's text."""
        return json.dumps(self.as_dict(), indent=2) + "\n"


def write_association(path: Path, asn: Association) -> Path:
    """Write ``asn`` as JSON at ``path`` atomically; return ``path``."""
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(asn.to_json(), encoding="utf-8")
    return Path(path)


def read_association(path: Path) -> Association:
    """Read an association file; ``AssociationError`` naming the file if it is not one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AssociationError(f"{path}: not a readable JSON association file ({exc})") from exc
    if not isinstance(data, dict):
        raise AssociationError(f"{path}: expected a JSON object (an association)")
    return Association.from_dict(data, str(path))


# -- from the site database -------------------------------------------------------------------

def planned_members(engine: Engine, program: str, observation: int,
                    filter_name: str) -> list[str]:
    """Basenames of the executed products the observation log plans for one observation and filter.

    Empty when ingest recorded no observation log for it (products registered
    by hand: no association is made automatically).
    """
    from obsflow.ingest.tables import ObservationLog

    with Session(engine) as session:
        rows = session.execute(select(ObservationLog.basename, ObservationLog.meta)
                               .where(ObservationLog.status == "executed")).all()
    return sorted({basename for basename, meta in rows
                   if str(meta.get("program")) == program
                   and int(meta.get("observation", -1)) == observation
                   and str(meta.get("filter")) == filter_name})


def association_from_rows(rows: Sequence[tuple[Any, Any]], pool: str = "obsflow") -> Association:
    """An association from archive (Product, Exposure) rows of ``_cal`` products of one group."""
    members = []
    for product, exposure in rows:
        data_id = DataId(exposure.program, exposure.observation, exposure.visit,
                         exposure.exposure, exposure.detector)
        members.append(Member(ProductRef(product.kind, data_id, product.run, product.uuid),
                              product.product_id, int(product.version), product.path,
                              product.sha256))
    first = rows[0][1]
    return Association(first.program, int(first.observation), first.target_name, first.filter,
                       first.instrument_name, tuple(members), pool)


def complete_association(engine: Engine, cal: ProductRef, pool: str = "obsflow"
                         ) -> Association | None:
    """The association ``cal`` belongs to, if every planned member has a current ``_cal``.

    None when a planned member is not calibrated (and registered) yet, when
    ``cal`` is no longer current, when it is a time series (its integrations
    go to a light curve, not a mosaic: the ``timeseries`` recipe), or when the observation log plans nothing
    for it (see :func:`planned_members`).
    """
    from obsflow.archive.schema import Exposure, Product
    from obsflow.orchestrate.handlers import TIME_SERIES_RECIPE

    with Session(engine) as session:
        own = session.execute(select(Product, Exposure).join(
            Exposure, Exposure.id == Product.exposure_id).where(Product.uuid == cal.uuid)).first()
        if (own is None or not own[0].is_latest or own[0].kind != "cal"
                or own[0].recipe == TIME_SERIES_RECIPE):
            return None
        exposure = own[1]
        planned = planned_members(engine, exposure.program, exposure.observation,
                                  exposure.filter)
        if not planned or exposure.obs_id not in planned:
            return None
        rows = session.execute(select(Product, Exposure).join(
            Exposure, Exposure.id == Product.exposure_id).where(
            Exposure.obs_id.in_(planned), Product.kind == "cal",
            Product.is_latest.is_(True))).all()
        if len(rows) != len(planned):
            return None
        return association_from_rows([(p, e) for p, e in rows], pool)
