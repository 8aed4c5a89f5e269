"""What the catalog database can hold, and the checks that keep requests inside it.

SQLite and PostgreSQL store integers in at most 64 bits (signed), floats as
IEEE doubles, and PostgreSQL refuses text containing NUL.  A value from a
request that the database cannot hold must be refused before it reaches a
query (the HTTP layer answers 400/422 naming the parameter), never passed
on to fail inside the driver.
"""

from __future__ import annotations

import math

from obsflow.exceptions import QueryValueError

__all__ = ["INT64_MAX", "INT64_MIN", "check_float", "check_int", "check_text"]

INT64_MAX = 2**63 - 1
"""Largest integer a column (or a bound parameter) holds."""

INT64_MIN = -(2**63)
"""Smallest integer a column (or a bound parameter) holds."""


def check_int(name: str, value: int, low: int = INT64_MIN, high: int = INT64_MAX) -> int:
    """``value`` if ``low <= value <= high`` (default: the 64-bit range); else QueryValueError."""
    if not low <= value <= high:
        raise QueryValueError(f"{name}: {_short(value)} is outside {low}..{high}")
    return value


def check_float(name: str, value: float) -> float:
    """``value`` if finite; else QueryValueError (the database holds no NaN/infinity here)."""
    if not math.isfinite(value):
        raise QueryValueError(f"{name}: {value!r} is not a finite number")
    return value


def check_text(name: str, value: str) -> str:
    """``value`` if it holds no NUL character (PostgreSQL text cannot); else QueryValueError."""
    if "\x00" in value:
        raise QueryValueError(f"{name}: text must not contain NUL (0x00) characters")
    return value


def _short(value: int) -> str:
    text = str(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} digits)"
