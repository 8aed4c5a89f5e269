"""Reading TOML files (site configuration, observatory profiles) with one-line errors.

A TOML file is UTF-8 text: a byte that is not UTF-8 is reported with its
byte offset, line and column, a syntax error with tomllib's line and
column, in both cases naming the file, as the error class the caller
chooses (:class:`~obsflow.exceptions.ConfigError`,
:class:`~obsflow.exceptions.ProfileError`).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from obsflow.exceptions import ObsflowError

__all__ = ["parse_toml"]


def parse_toml(data: bytes, label: Path | str, error: type[ObsflowError]) -> dict[str, Any]:
    """Parse TOML ``data`` read from ``label`` (a path or a description of the source).

    Raises
    ------
    error
        ``data`` is not UTF-8 (the message gives the byte offset, line and
        column of the first bad byte) or not valid TOML.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise error(f"{label}: byte offset {exc.start} (line {line}, column {column}): byte "
                    f"0x{data[exc.start]:02x} is not UTF-8; expected a UTF-8 text file") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{label}: not valid TOML: {exc}") from exc
