"""Atomic file writing: a product is either whole under its final name or absent.

Every writer in obsflow writes to a temporary name in the destination folder
and renames it into place (``os.replace`` is atomic on POSIX), so a crash
never leaves half a file that looks whole, and re-running a job is safe.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from astropy.io import fits

__all__ = ["Written", "atomic_path", "remove_stale_parts", "sha256_file", "write_fits",
           "write_fits_hashed"]


@dataclass(frozen=True)
class Written:
    """A file just written: where it is, its sha256 (hex) and size (bytes)."""

    path: Path
    sha256: str
    size: int


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it to ``final`` on success.

    The temporary name (``.<name>.<pid>-<thread id>.part``) starts with ``.`` and
    ends with ``.part`` so pollers and globbing for products never pick it up;
    two threads or processes writing the same file never share it.  On an exception the temporary file
    is removed and ``final`` is left untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}-{threading.get_native_id()}.part")
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_parts(folder: Path) -> list[Path]:
    """Delete temporary files left in ``folder`` by writers that were killed.

    Only names made by :func:`atomic_path` (``.<name>.<pid>-<thread id>.part``)
    whose process no longer runs are removed; returns what was removed.
    """
    removed = []
    for path in Path(folder).glob(".*.part"):
        pid = path.name.rsplit(".", 2)[-2].partition("-")[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def write_fits(hdul: fits.HDUList, path: Path, stamp: str = "obsflow") -> Path:
    """Write ``hdul`` atomically with FITS CHECKSUM/DATASUM cards on every HDU.

    The checksum cards' comments carry ``stamp`` instead of the current time
    (astropy's default), so the same content always gives the same bytes.
    """
    return write_fits_hashed(hdul, path, stamp).path


def write_fits_hashed(hdul: fits.HDUList, path: Path, stamp: str = "obsflow") -> Written:
    """:func:`write_fits`, also hashing the file once, before it is renamed into place.

    The sha256 is computed from the temporary file just written (still in the
    page cache), so a product is hashed once in its life: by its writer.
    """
    for hdu in hdul:
        hdu.add_checksum(when=stamp)  # sets DATASUM too, computing it once
    with atomic_path(Path(path)) as tmp:
        hdul.writeto(tmp, checksum=False)
        digest, size = sha256_file(tmp), tmp.stat().st_size
    return Written(Path(path), digest, size)


def sha256_file(path: Path, chunk_bytes: int = 8 << 20) -> str:
    """Hex sha256 of a file, read in chunks of ``chunk_bytes``."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()
