"""Open obsflow products with the JWST data models (stdatamodels, a test-only dependency).

The JWST tools open a product through ``stdatamodels.jwst.datamodels.open``,
which picks the model from ``DATAMODL`` and checks every keyword against the
JWST schemas.  obsflow's profiles name their own instruments, detectors,
filters, dither patterns and subarrays (a mosaic's is ``MOSAIC``), which the
JWST schemas list exhaustively: those warnings (and only those) are expected.
"""

from __future__ import annotations

import warnings
from pathlib import Path

MODELS = {"uncal": "RampModel", "rate": "ImageModel", "rateints": "CubeModel", "cal": "ImageModel",
          "crf": "ImageModel", "i2d": "ImageModel", "segm": "SegmentationMapModel"}
"""The stdatamodels model each product kind opens as (JWST's own choice for its suffixes)."""

MISSION_NAMES = ("meta.instrument.name", "meta.instrument.detector", "meta.instrument.filter",
                 "meta.telescope", "meta.dither.primary_type", "meta.subarray.name")
"""Schema paths whose values are JWST's own names (an enum of its instruments, detectors,
filters, dither patterns and subarrays): another mission's names fail there."""


def _names(field: str, message: str) -> bool:
    """True if ``message`` is the schema's refusal of a mission name at ``field``: from the
    FITS keywords (``validating meta.x.y ...``) or from the ASDF tree (``On instance['meta']
    ['x']['y']``, the form the embedded ASDF extension's validation takes)."""
    instance = "On instance" + "".join(f"['{part}']" for part in field.split("."))
    return f"validating {field} " in message or f"{instance}:" in message


def open_as_jwst(path: Path) -> tuple[str, list[str]]:
    """The model class ``path`` opens as and the warnings beyond mission names; validates it."""
    from stdatamodels.jwst import datamodels

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with datamodels.open(path) as model:
            model.validate()
            name = type(model).__name__
            assert model.data.shape, path
    other = [str(w.message).splitlines()[0] for w in caught
             if not any(_names(field, str(w.message)) for field in MISSION_NAMES)]
    return name, other


def embedded_model_type(path: Path) -> str:
    """``meta.model_type`` in the product's ``ASDF`` extension, read as the JWST tools read it
    (``KeyError: Extension 'ASDF' not found`` when it has none)."""
    from astropy.io import fits
    from stdatamodels.fits_support import from_fits_asdf

    with fits.open(path) as hdul:
        hdul.index_of("ASDF")
        return str(from_fits_asdf(hdul).tree["meta"]["model_type"])


def check_products(paths: list[Path]) -> dict[str, int]:
    """Open every product of ``paths`` as its JWST model; count them by kind.

    Raises AssertionError naming the file when the model is not the expected
    one or a warning other than a mission name is raised.
    """
    seen: dict[str, int] = {}
    for path in paths:
        kind = path.stem.rsplit("_", 1)[1]
        if kind not in MODELS:
            continue
        name, other = open_as_jwst(path)
        assert name == MODELS[kind], f"{path.name}: opened as {name}, expected {MODELS[kind]}"
        assert embedded_model_type(path) == name, f"{path.name}: ASDF extension"
        assert other == [], f"{path.name}: {other}"
        seen[kind] = seen.get(kind, 0) + 1
    return seen
