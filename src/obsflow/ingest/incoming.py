"""A look at the incoming folder: which entries are ready, still settling, or refused.

Apart from :mod:`obsflow.ingest.rawstore` (which archives files and writes the
ledger) so that ``obsflow status`` lists refused entries without importing
SQLAlchemy; :mod:`obsflow.ingest.rawstore` re-exports these names.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PART_SUFFIX", "IncomingScan", "scan_incoming"]

PART_SUFFIX = ".part"


def _refusal(entry: os.DirEntry[str]) -> str | None:
    """Why an incoming entry is not a regular file ingest may take (None: it is one).

    Decided from ``lstat`` alone: nothing is opened, so a FIFO never blocks,
    and a symbolic link is never followed (ingest takes bytes, not links).
    """
    mode = entry.stat(follow_symlinks=False).st_mode
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return (f"a symbolic link (to {os.readlink(entry.path)}); expected a regular file: "
                "ingest never follows links, copy the file itself into incoming/")
    if stat.S_ISDIR(mode):
        return "a directory; expected a regular file (ingest does not look into folders)"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO); expected a regular file (ingest never opens it)"
    if stat.S_ISSOCK(mode):
        return "a socket; expected a regular file"
    return "a device file; expected a regular file"


@dataclass(frozen=True)
class IncomingScan:
    """One look at the incoming folder.

    Attributes
    ----------
    ready : list of Path
        Regular files unchanged for ``settle_seconds``, oldest first.
    settling : list of Path
        Regular files modified less than ``settle_seconds`` ago.
    refused : list of (Path, str)
        Entries ingest will not take, with why: symbolic links, folders,
        FIFOs, sockets, devices.  They stay where they are.
    """

    ready: list[Path]
    settling: list[Path]
    refused: list[tuple[Path, str]]


def scan_incoming(incoming: Path, settle_seconds: float, now: float) -> IncomingScan:
    """Sort the entries of ``incoming`` into ready, settling and refused (see IncomingScan).

    Hidden names and names ending ``.part`` (still being written, by
    convention) are left alone without a word.
    """
    found, settling, refused = [], [], []
    for entry in os.scandir(incoming):
        if entry.name.startswith(".") or entry.name.endswith(PART_SUFFIX):
            continue
        try:
            reason = _refusal(entry)
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # taken by another process meanwhile
        if reason is not None:
            refused.append((incoming / entry.name, reason))
        elif now - st.st_mtime >= settle_seconds:
            found.append((st.st_mtime, entry.name))
        else:
            settling.append(incoming / entry.name)
    return IncomingScan([incoming / name for _, name in sorted(found)], sorted(settling),
                        sorted(refused))
