"""Data products: metadata, DQ flags and the FITS writers/readers of each level."""

from obsflow.models.dq import DQ
from obsflow.models.level1 import Level1, read_uncal, write_uncal
from obsflow.models.metadata import ExposureMeta, product_basename

__all__ = ["DQ", "ExposureMeta", "Level1", "product_basename", "read_uncal", "write_uncal"]
from obsflow.models.level2 import (  # noqa: E402
    CalImage,
    Provenance,
    RateImage,
    RateInts,
    read_cal,
    read_rate,
    read_rateints,
    write_cal,
    write_rate,
    write_rateints,
)

__all__ += ["CalImage", "Provenance", "RateImage", "RateInts", "read_cal", "read_rate",
            "read_rateints", "write_cal", "write_rate", "write_rateints"]
