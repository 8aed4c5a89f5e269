"""What the catalog database can hold, and the checks that keep requests inside it.

SQLite and PostgreSQL store integers in at most 64 bits (signed; PostgreSQL's
``integer`` columns, such as row ids, in 32), floats as
IEEE doubles, and PostgreSQL refuses text containing NUL.  A value from a
request that the database cannot hold must be refused before it reaches a
query (the HTTP layer answers 400/422 naming the parameter), never passed
on to fail inside the driver.
"""

from __future__ import annotations

from obsflow.exceptions import QueryValueError

__all__ = ["INT32_MAX", "INT64_MAX", "check_text"]

INT32_MAX = 2**31 - 1
"""Largest value of an ``Integer`` column (row ids): PostgreSQL's ``integer`` is 32-bit."""

INT64_MAX = 2**63 - 1
"""Largest integer a column (or a bound parameter) holds."""


def check_text(name: str, value: str) -> str:
    """``value`` if it holds no NUL character (PostgreSQL text cannot); else QueryValueError."""
    if "\x00" in value:
        raise QueryValueError(f"{name}: text must not contain NUL (0x00) characters")
    return value
