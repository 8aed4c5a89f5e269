"""Provenance: how a product was made, one type from the pipeline to the catalog.

A :class:`Provenance` holds the run, the software version, the recipe and
every step's status and parameters, the input products (as
:class:`~obsflow.models.identity.ProductRef`), input files that are not
products (the level-0 files of a Level-1 product), and the reference files (type, name, sha256) with the
reference context they were selected from.  It is written whole into the
product (the ``PROVENANCE`` table: one JSON document split over rows, never
truncated) and stored whole in the catalog (:meth:`Provenance.to_json`);
the catalog also links each product to its inputs (``product_inputs``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy.io import fits

from obsflow.exceptions import ProductFileError
from obsflow.models.identity import ProductRef

__all__ = ["PROVENANCE_EXTNAME", "Provenance", "FileUse", "RefFileUse", "StepRecord"]

PROVENANCE_EXTNAME = "PROVENANCE"
"""Name of the FITS table extension holding a product's provenance."""

_CHUNK = 1024
"""Characters of the JSON document per row of the ``PROVENANCE`` table."""


@dataclass(frozen=True)
class RefFileUse:
    """A reference file a product was made with: type, file name, sha256 (hex)."""

    reftype: str
    name: str
    sha256: str


@dataclass(frozen=True)
class FileUse:
    """A file (not a catalogued product) a product was made from: name and sha256 (hex).

    The level-0 files of a Level-1 product, or a Level-1 file from outside
    the site calibrated by hand."""

    name: str
    sha256: str


@dataclass(frozen=True)
class StepRecord:
    """One pipeline step: name, ``COMPLETE`` or ``SKIPPED: <reason>``, its parameters."""

    name: str
    status: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Provenance:
    """How one product was made (see the module docstring).

    Attributes
    ----------
    run : str
        The run that made the product.
    software : str
        obsflow version.
    recipe : str
        Calibration recipe name ("" for Level 1).
    context : int or None
        Number of the reference context the references were selected from.
    inputs : tuple of ProductRef
        Products it was made from.
    references : tuple of RefFileUse
        Reference files used, sorted by type.
    steps : tuple of StepRecord
        Steps in the order they ran.
    input_files : tuple of FileUse
        Files that are not catalogued products (level-0 files of a Level-1
        product, a foreign input).
    """

    run: str
    software: str
    recipe: str = ""
    context: int | None = None
    inputs: tuple[ProductRef, ...] = ()
    references: tuple[RefFileUse, ...] = ()
    steps: tuple[StepRecord, ...] = ()
    input_files: tuple[FileUse, ...] = ()

    def reference_names(self) -> dict[str, str]:
        """Reference type -> file name."""
        return {r.reftype: r.name for r in self.references}

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (the catalog's ``provenance`` column, the file's table)."""
        return {
            "run": self.run, "software": self.software, "recipe": self.recipe,
            "context": self.context, "inputs": [r.as_dict() for r in self.inputs],
            "references": [[r.reftype, r.name, r.sha256] for r in self.references],
            "steps": [[s.name, s.status, dict(s.params)] for s in self.steps],
            "input_files": [[r.name, r.sha256] for r in self.input_files],
        }

    def to_json(self) -> str:
        """Canonical JSON text (sorted keys, so equal provenance gives equal text)."""
        return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Provenance:
        """Inverse of :meth:`as_dict`."""
        context = data.get("context")
        return cls(
            run=str(data["run"]), software=str(data["software"]),
            recipe=str(data.get("recipe", "")),
            context=None if context is None else int(context),
            inputs=tuple(ProductRef.from_dict(r) for r in data.get("inputs", ())),
            references=tuple(RefFileUse(*map(str, r)) for r in data.get("references", ())),
            steps=tuple(StepRecord(str(n), str(s), dict(p)) for n, s, p in data.get("steps", ())),
            input_files=tuple(FileUse(*map(str, r)) for r in data.get("input_files", ())),
        )

    @classmethod
    def from_json(cls, text: str) -> Provenance:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))

    def to_hdu(self) -> fits.BinTableHDU:
        """The ``PROVENANCE`` table: column ``JSON``, the document in rows of 1024 characters."""
        text = self.to_json()
        chunks = [text[i:i + _CHUNK] for i in range(0, len(text), _CHUNK)] or [""]
        column = fits.Column(name="JSON", format=f"{_CHUNK}A",
                             array=np.array(chunks, dtype=f"U{_CHUNK}"))
        hdu = fits.BinTableHDU.from_columns([column], name=PROVENANCE_EXTNAME)
        hdu.header["PROVLEN"] = (len(text), "characters of the provenance JSON document")
        return hdu

    @classmethod
    def from_hdu(cls, hdu: fits.BinTableHDU, name: str = "") -> Provenance:
        """Read the table written by :meth:`to_hdu`.

        Raises
        ------
        ProductFileError
            The table is not of that form, or its length does not match
            ``PROVLEN`` (a truncated document); the message names ``name``.
        """
        if "JSON" not in (hdu.columns.names or []):
            raise ProductFileError(f"{name or 'product'}: PROVENANCE table has no JSON column "
                                   "(written by an obsflow before 0.2?)")
        # astropy strips trailing blanks of character fields: a chunk's own trailing
        # spaces would be lost, but JSON made by to_json has none outside strings and
        # every chunk but the last is full length, so padding restores them
        rows = [str(v) for v in hdu.data["JSON"]]
        text = "".join(r.ljust(_CHUNK) for r in rows[:-1]) + (rows[-1] if rows else "")
        expected = int(hdu.header.get("PROVLEN", len(text)))
        if len(text) != expected:
            raise ProductFileError(f"{name or 'product'}: PROVENANCE holds {len(text)} "
                                   f"characters, PROVLEN says {expected}")
        try:
            return cls.from_json(text)
        except (ValueError, KeyError, TypeError) as exc:
            raise ProductFileError(f"{name or 'product'}: PROVENANCE is not valid: {exc}") from exc

    def write_keywords(self, header: fits.Header) -> None:
        """Short summary keywords for ds9 users: RECIPE, CRDS-like R_<TYPE>, S_<STEP>, REFCTX.

        A comment that would not fit on the card beside its value is left out
        (the value, e.g. a long reference file name, is never cut).
        """
        if self.recipe:
            _card(header, "RECIPE", self.recipe, "calibration recipe")
        if self.context is not None:
            _card(header, "REFCTX", self.context, "reference context number")
        for step in self.steps:
            _card(header, f"S_{step.name[:6].upper()}", step.status.split(":")[0],
                  f"step {step.name}")
        for ref in self.references:
            _card(header, f"R_{ref.reftype[:6].upper()}", ref.name, f"{ref.reftype} reference file")


def _card(header: fits.Header, key: str, value: Any, comment: str) -> None:
    """Set ``key`` with ``comment`` when the card has room for it, else without."""
    field = (f"'{value.replace(chr(39), chr(39) * 2):<8}'" if isinstance(value, str)
             else str(value))
    fits_on_card = 10 + max(20, len(field)) + 3 + len(comment) <= 80  # "KEY     = " ... " / "
    header[key] = (value, comment) if fits_on_card else value
