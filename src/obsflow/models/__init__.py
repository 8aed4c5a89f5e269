"""Data products: identity, provenance, metadata, DQ flags, the FITS writers/readers and the
reference-file layout (:mod:`obsflow.models.reffiles`)."""

from typing import TYPE_CHECKING

from obsflow._lazy import lazy_exports

if TYPE_CHECKING:
    from obsflow.models.dq import DQ
    from obsflow.models.identity import PRODUCT_KINDS, DataId, ProductRef
    from obsflow.models.level1 import Level1, read_uncal, write_uncal
    from obsflow.models.level2 import (
        CalImage,
        RateImage,
        RateInts,
        read_cal,
        read_rate,
        read_rateints,
        write_cal,
        write_rate,
        write_rateints,
    )
    from obsflow.models.metadata import ExposureMeta, product_basename
    from obsflow.models.provenance import FileUse, Provenance, RefFileUse, StepRecord
    from obsflow.models.reffiles import (
        PhotomTable,
        RefHeader,
        read_photom,
        read_reference_array,
        write_reference_file,
    )

__all__ = ["DQ", "PRODUCT_KINDS", "CalImage", "DataId", "ExposureMeta", "Level1", "ProductRef",
           "Provenance", "RateImage", "RateInts", "FileUse", "RefFileUse", "StepRecord",
           "product_basename", "read_cal", "read_rate", "read_rateints", "read_uncal",
           "write_cal", "write_rate", "write_rateints", "write_uncal"]
__all__ += ["PhotomTable", "RefHeader", "read_photom", "read_reference_array",
            "write_reference_file"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "DQ": "dq",
    "PRODUCT_KINDS": "identity",
    "DataId": "identity",
    "ProductRef": "identity",
    "Level1": "level1",
    "read_uncal": "level1",
    "write_uncal": "level1",
    "CalImage": "level2",
    "RateImage": "level2",
    "RateInts": "level2",
    "read_cal": "level2",
    "read_rate": "level2",
    "read_rateints": "level2",
    "write_cal": "level2",
    "write_rate": "level2",
    "write_rateints": "level2",
    "ExposureMeta": "metadata",
    "product_basename": "metadata",
    "FileUse": "provenance",
    "Provenance": "provenance",
    "RefFileUse": "provenance",
    "StepRecord": "provenance",
    "PhotomTable": "reffiles",
    "RefHeader": "reffiles",
    "read_photom": "reffiles",
    "read_reference_array": "reffiles",
    "write_reference_file": "reffiles",
})
