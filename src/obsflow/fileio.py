"""Atomic file writing: a product is either whole under its final name or absent.

Every writer in obsflow writes to a temporary name in the destination folder
and renames it into place (``os.replace`` is atomic on POSIX), so a crash
never leaves half a file that looks whole, and re-running a job is safe.

A writer killed mid-write (SIGKILL, power loss) leaves its temporary file
behind.  The writer holds an exclusive ``flock`` on it for as long as it
writes, and the kernel drops that lock when the writer dies, so
:func:`sweep_temp_files` can tell a live writer's file (locked: kept) from an
abandoned one (unlocked: removed once older than a safe age).  ``obsflow run``
sweeps every site folder on start (:func:`obsflow.site.sweep_site`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from astropy.io import fits

__all__ = ["TEMP_NAME", "Written", "atomic_path", "sha256_file", "sweep_temp_files",
           "write_fits", "write_fits_hashed"]

TEMP_NAME = re.compile(r"^\.(?P<final>.+)\.(?P<pid>\d+)-(?P<thread>\d+)\.part$")
"""Names of the temporary files :func:`atomic_path` makes: ``.<final name>.<pid>-<thread>.part``."""


@dataclass(frozen=True)
class Written:
    """A file just written: where it is, its sha256 (hex) and size (bytes)."""

    path: Path
    sha256: str
    size: int


def _hold(tmp: Path) -> int:
    """Create ``tmp`` (or take over an abandoned one), locked by this writer; return the fd.

    The lock is taken on the very file at ``tmp``: if a sweeper removed the
    file between our open and our lock, try again with a new one.
    """
    while True:
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits only for a sweeper looking at an abandoned file
        try:
            same = os.stat(tmp).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            return fd
        os.close(fd)


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it to ``final`` on success.

    The temporary name (``.<name>.<pid>-<thread id>.part``, :data:`TEMP_NAME`)
    starts with ``.`` and ends with ``.part`` so pollers and globbing for
    products never pick it up; two threads or processes writing the same file
    never share it.  The file exists (empty) when the block starts and is
    locked (``flock``) until the block ends, so :func:`sweep_temp_files` never
    removes it; the block writes to it by its path (opening it for writing is
    fine: the lock stays on the file).  On an exception the temporary file is
    removed and ``final`` is left untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}-{threading.get_native_id()}.part")
    fd = _hold(tmp)
    try:
        yield tmp
        os.fsync(fd)  # the data of the file, whichever descriptor wrote it
        os.replace(tmp, final)
    finally:
        try:
            tmp.unlink(missing_ok=True)
        finally:
            os.close(fd)


def _temp_files(folder: Path, recursive: bool) -> Iterator[Path]:
    """Paths in ``folder`` (and its subfolders) named like :func:`atomic_path`'s files."""
    stack = [str(folder)]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        with entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    if recursive:
                        stack.append(entry.path)
                elif entry.name.endswith(".part") and TEMP_NAME.match(entry.name):
                    yield Path(entry.path)


def _remove_abandoned(path: Path, written_before: float) -> bool:
    """Remove ``path`` if it was last written before ``written_before`` (epoch seconds)
    and no writer holds its lock; True if removed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, PermissionError):
        return False
    try:
        st = os.fstat(fd)
        if st.st_mtime > written_before:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live writer holds it
        try:
            if os.stat(path).st_ino != st.st_ino:
                return False  # replaced meanwhile: not the file we looked at
        except FileNotFoundError:
            return False
        path.unlink()  # still holding the lock: a writer taking the name over waits, then retries
        return True
    finally:
        os.close(fd)


def sweep_temp_files(folder: Path, min_age_seconds: float, *, recursive: bool = True,
                     now: float | None = None) -> list[Path]:
    """Delete the temporary files of writers that were killed, in ``folder`` and below.

    Only names made by :func:`atomic_path` (:data:`TEMP_NAME`) are looked at;
    one is removed when no live writer holds its lock and it was last
    modified more than ``min_age_seconds`` before ``now`` (default: the
    current time).  Symbolic links to folders are not followed.  Returns the
    paths removed.
    """
    before = (time.time() if now is None else now) - min_age_seconds
    return [path for path in _temp_files(Path(folder), recursive)
            if _remove_abandoned(path, before)]


def write_fits(hdul: fits.HDUList, path: Path, stamp: str = "obsflow") -> Path:
    """Write ``hdul`` atomically with FITS CHECKSUM/DATASUM cards on every HDU.

    The checksum cards' comments carry ``stamp`` instead of the current time
    (astropy's default), so the same content always gives the same bytes.
    """
    return write_fits_hashed(hdul, path, stamp).path


def write_fits_hashed(hdul: fits.HDUList | Iterable[fits.PrimaryHDU | fits.ImageHDU
                                                   | fits.BinTableHDU],
                      path: Path, stamp: str = "obsflow") -> Written:
    """:func:`write_fits`, also hashing the file as it is written.

    ``hdul`` may also be any iterable of HDUs, the primary first (e.g. a
    generator making each HDU's array only when it is written, so a large
    product never holds two copies of all its arrays).

    Image HDUs (plain arrays) are converted to their big-endian disk form
    once, summed in the same compiled pass for DATASUM
    (:func:`obsflow.fitschecksum.disk_form_and_sum`); that one buffer
    feeds the sha256 and is written, so a product is converted, summed and
    hashed in one pass, by its writer.  Other HDUs (tables) are serialized
    by astropy.  The bytes are those astropy's ``writeto`` writes after
    ``add_checksum(when=stamp)`` (tests/test_fileio.py compares them).
    """
    digest, size = hashlib.sha256(), 0
    with atomic_path(Path(path)) as tmp, open(tmp, "wb") as fh:
        for index, hdu in enumerate(hdul):
            for chunk in _hdu_bytes(hdu, stamp, primary=index == 0):
                digest.update(chunk)
                fh.write(chunk)
                size += len(chunk)
    return Written(Path(path), digest.hexdigest(), size)


def _hdu_bytes(hdu: fits.PrimaryHDU | fits.ImageHDU | fits.BinTableHDU, stamp: str,
               primary: bool) -> list[bytes | memoryview]:
    """The bytes of one HDU as FITS stores it, with CHECKSUM and DATASUM set."""
    import io

    import numpy as np
    from astropy.io import fits

    from obsflow.fitschecksum import datasum_of, disk_form_and_sum, set_checksum

    if isinstance(hdu, fits.PrimaryHDU | fits.ImageHDU):
        data = hdu.data
        if data is None:
            set_checksum(hdu.header, 0, stamp)
            return [hdu.header.tostring().encode("ascii")]
        unsigned = data.dtype.kind == "u" and data.dtype.itemsize > 1
        bzero = 1 << (8 * data.dtype.itemsize - 1) if unsigned else 0
        if type(data) is np.ndarray and hdu.header.get("BSCALE", 1) == 1 \
                and hdu.header.get("BZERO", 0) == bzero:
            raw, words = disk_form_and_sum(data)
            set_checksum(hdu.header, datasum_of(words), stamp)
            return [hdu.header.tostring().encode("ascii"), raw.data, bytes(-raw.size % 2880)]
    hdu.add_checksum(when=stamp)  # a table (or a scaled image): astropy serializes it
    buffer = io.BytesIO()
    fits.HDUList([hdu] if primary else [fits.PrimaryHDU(), hdu]).writeto(buffer, checksum=False)
    return [buffer.getvalue() if primary else buffer.getvalue()[2880:]]  # past the empty primary


def sha256_file(path: Path, chunk_bytes: int = 8 << 20) -> str:
    """Hex sha256 of a file, read in chunks of ``chunk_bytes``."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()
