"""Reference selection for many products at once: :func:`bulk_select`.

The rules themselves, and :func:`best_reference` that applies them to one
exposure with a verdict for every file, are in :mod:`obsflow.refdata.rules`
(the one place that decides which reference file applies; re-exported here).
:func:`bulk_select` applies the same rules to many products at once (arrays
of selectors, no Python loop per product); it gives the same answer as
:func:`best_reference` product by product (a test checks it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import erfa
import numpy as np
from astropy.time import Time

from obsflow.exceptions import DataModelError, ReferenceFileError
from obsflow.models.metadata import ExposureMeta
from obsflow.refdata.records import ANY, RefRecord
from obsflow.refdata.rules import (
    RULES,
    RULES_VERSION,
    Selection,
    best_reference,
    exposure_start_iso,
)

__all__ = ["RULES", "RULES_VERSION", "ProductSelectors", "Selection", "best_reference",
           "bulk_select", "exposure_start_iso"]


_SELECTOR_FIELDS = ("telescope", "instrument", "detector", "filter", "readpatt", "subarray")
_ISO_SECONDS = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)")


@dataclass(frozen=True)
class ProductSelectors:
    """The selector columns of N products, as arrays (one entry per product).

    Each string column is an array of shape (N,) or one string (the same for
    every product); ``expstart`` is EXPSTART, MJD UTC, shape (N,).  The
    columns are stored as numpy arrays of shape (N,).  The start keys and the
    grouping by selector tuple are computed once and reused by every
    :func:`bulk_select` call on the same products.
    """

    telescope: np.ndarray | str
    instrument: np.ndarray | str
    detector: np.ndarray | str
    filter: np.ndarray | str
    readpatt: np.ndarray | str
    subarray: np.ndarray | str
    expstart: np.ndarray

    def __post_init__(self) -> None:
        start = np.asarray(self.expstart, dtype=np.float64).reshape(-1)
        object.__setattr__(self, "expstart", start)
        for name in _SELECTOR_FIELDS:
            column = np.asarray(getattr(self, name), dtype=str)
            if column.ndim == 0:
                column = np.full(start.shape, column.item(), dtype=column.dtype)
            if column.shape != start.shape:
                raise DataModelError(f"ProductSelectors.{name} has shape {column.shape}; expstart "
                                 f"has {start.shape}")
            object.__setattr__(self, name, column)

    def __len__(self) -> int:
        return int(self.expstart.shape[0])

    @cached_property
    def start_keys(self) -> np.ndarray:
        """EXPSTART as int64 ``YYYYMMDDhhmmss`` (UTC, as :func:`exposure_start_iso`), shape (N,)."""
        return _start_keys(self.expstart)

    @cached_property
    def groups(self) -> list[tuple[tuple[str, ...], np.ndarray]]:
        """Each distinct selector tuple with the indices of its products (computed once)."""
        columns = [getattr(self, name) for name in _SELECTOR_FIELDS]
        if len(self) == 0:
            return []
        group_of, first = _group_rows(columns)
        order = np.argsort(group_of, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(group_of, minlength=len(first)))])
        return [(tuple(str(column[row]) for column in columns), order[bounds[g]:bounds[g + 1]])
                for g, row in enumerate(first)]

    @classmethod
    def from_metas(cls, metas: Sequence[ExposureMeta]) -> ProductSelectors:
        """The selectors of ``metas`` (one product each)."""
        columns = {name: np.array([getattr(m, name) for m in metas], dtype=str)
                   for name in _SELECTOR_FIELDS}
        start = np.array([m.expstart for m in metas], dtype=np.float64)
        return cls(expstart=start, **columns)


def _start_keys(expstart: np.ndarray) -> np.ndarray:
    """EXPSTART (MJD UTC) as int64 ``YYYYMMDDhhmmss``: :func:`exposure_start_iso` as a number."""
    t = Time(expstart, format="mjd", scale="utc")
    year, month, day, hmsf = erfa.d2dtf("UTC", 3, t.jd1, t.jd2)  # what Time.isot formats
    date = (year.astype(np.int64) * 100 + month) * 100 + day
    return date * 1_000_000 + hmsf["h"] * 10_000 + hmsf["m"] * 100 + hmsf["s"]


def _useafter_key(useafter: str) -> int:
    """The smallest start key ``k`` with ``useafter <= iso(k)`` (as strings).

    ``iso(k)`` is a 19-character ``YYYY-MM-DDThh:mm:ss``: for a USEAFTER of
    that form the key is its digits; a longer one (``...+00:00``) sorts after
    the 19-character string with the same digits, so its key is one more.
    """
    match = _ISO_SECONDS.match(useafter)
    if match is None:
        raise ReferenceFileError(f"USEAFTER {useafter!r} is not an ISO UTC date/time "
                                 "YYYY-MM-DDThh:mm:ss")
    key = int("".join(match.groups()))
    return key if len(useafter) == 19 else key + 1


def _pick(tier: list[tuple[int, RefRecord]], starts: np.ndarray) -> np.ndarray:
    """Index (into the records) of the best file of ``tier`` for each start key, or -1."""
    if not tier:
        return np.full(starts.shape, -1, dtype=np.int64)
    ranked = sorted(tier, key=lambda ir: (ir[1].useafter, ir[1].delivered, ir[1].name, -ir[0]))
    keys = np.array([_useafter_key(r.useafter) for _, r in ranked], dtype=np.int64)
    index = np.array([i for i, _ in ranked], dtype=np.int64)
    # keys is non-decreasing (ISO strings sort like their keys): the files with
    # USEAFTER <= start are a prefix of ``ranked`` and the best is its last.
    pos = np.searchsorted(keys, starts, side="right") - 1
    return np.where(pos >= 0, index[np.maximum(pos, 0)], -1)


def _group_choice(candidates: list[tuple[int, RefRecord]], selector: tuple[str, ...],
                  starts: np.ndarray) -> np.ndarray:
    """Best file index for products that share ``selector`` (one per start key)."""
    telescope, instrument, detector, filt, readpatt, subarray = selector
    matching = [(i, r) for i, r in candidates
                if (r.telescope, r.instrument) == (telescope, instrument)
                and r.detector in (ANY, detector) and r.filter in (ANY, filt) and r.readpatt in (ANY, readpatt)]
    exact = _pick([(i, r) for i, r in matching if r.subarray == subarray], starts)
    if subarray == "FULL":
        return exact
    full = _pick([(i, r) for i, r in matching if r.subarray == "FULL"], starts)
    return np.where(exact >= 0, exact, full)


def _hash_rows(columns: Sequence[np.ndarray]) -> np.ndarray:
    """A uint64 hash of each row of the string ``columns`` (vectorised, wrapping arithmetic)."""
    n = columns[0].shape[0]
    hashed = np.full(n, 1469598103934665603, dtype=np.uint64)
    prime = np.uint64(1099511628211)
    for column in columns:
        width = column.dtype.itemsize // 4
        chars = np.ascontiguousarray(column).view(np.uint32).reshape(n, width)
        for k in range(width):
            hashed = (hashed ^ chars[:, k]) * prime
        hashed = (hashed ^ np.uint64(0xFF)) * prime  # column separator
    return hashed


def _group_rows(columns: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Group the rows of the string ``columns`` by equal values.

    Returns the group of each row (int64, shape (N,)) and, per group, the
    index of its first row.  Rows are grouped by a hash and the grouping is
    then checked exactly; on a (most unlikely) collision the strings
    themselves are sorted instead.
    """
    _, first, group_of = np.unique(_hash_rows(columns), return_index=True, return_inverse=True)
    group_of = group_of.reshape(-1)
    if all(np.array_equal(c, c[first][group_of]) for c in columns):
        return group_of, first
    codes = np.stack([np.unique(c, return_inverse=True)[1].reshape(-1) for c in columns], axis=1)
    _, first, group_of = np.unique(codes, axis=0, return_index=True, return_inverse=True)
    return group_of.reshape(-1), first


def bulk_select(records: Sequence[RefRecord], products: ProductSelectors,
                reftype: str) -> np.ndarray:
    """The file of ``reftype`` that :func:`best_reference` chooses, for many products at once.

    Products are grouped by their selector tuple; within a group the
    candidate files are ranked once and each product's choice is found with
    ``np.searchsorted`` on the USEAFTER keys, so the cost is a sort of the
    products plus a loop over the distinct selector tuples (not products).

    Parameters
    ----------
    records : sequence of RefRecord
        The reference files to choose from (e.g. a context's records).
    products : ProductSelectors
        Selectors of N products.
    reftype : str
        Reference type to choose.

    Returns
    -------
    numpy.ndarray
        int64, shape (N,): index into ``records`` of the chosen file, -1
        where no file matches (the same answer as :func:`best_reference`,
        ties included).

    Raises
    ------
    ReferenceFileError
        A candidate's USEAFTER is not an ISO date/time (``read_record``
        never produces one).
    """
    out = np.full(len(products), -1, dtype=np.int64)
    candidates = [(i, r) for i, r in enumerate(records) if r.reftype == reftype]
    if not candidates or len(products) == 0:
        return out
    starts = products.start_keys
    for selector, members in products.groups:
        out[members] = _group_choice(candidates, selector, starts[members])
    return out
