"""Data products: identity, provenance, metadata, DQ flags, the FITS writers/readers and the
reference-file layout (:mod:`obsflow.models.reffiles`)."""

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
