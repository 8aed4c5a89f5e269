"""The product store: where product files and previews live.

By default a local folder (the site's ``paths.products``), where the pipeline
writes each product once, at ``<run>/<program>/<basename>/<uuid[:12]>/<file
name>`` (:meth:`obsflow.models.ProductRef.relpath`), and the archive registers it
in place (:meth:`ProductStore.key_of`); any fsspec filesystem
when ``archive.store_url`` names one (``s3://bucket/prefix``,
``memory://archive``, ...).  Paths handed around are *store keys*: relative,
``/``-separated, never containing ``..``; :meth:`ProductStore.local_path`
turns a key into a file path only after checking it stays inside the root.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import fsspec

from obsflow.exceptions import ArchiveError, ChecksumMismatchError
from obsflow.fileio import atomic_path, sha256_file

__all__ = ["ProductStore"]

_CHUNK = 8 << 20


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ArchiveError(f"invalid store key {key!r}")
    return key


class ProductStore:
    """A product store rooted at a local folder or an fsspec URL.

    Parameters
    ----------
    root : str or pathlib.Path
        Local folder, or an fsspec URL such as ``memory://archive``.
    """

    def __init__(self, root: str | Path) -> None:
        text = str(root)
        self._local: Path | None = None
        if isinstance(root, Path) or "://" not in text or text.startswith("file://"):
            self._local = Path(text.removeprefix("file://")).expanduser().resolve()
            self._local.mkdir(parents=True, exist_ok=True)
            self._fs: Any = None
            self._root = str(self._local)
        else:
            self._fs, self._root = fsspec.core.url_to_fs(text)
            self._root = self._root.rstrip("/")

    @property
    def is_local(self) -> bool:
        """True when files can be served straight from the local disk."""
        return self._local is not None

    def __repr__(self) -> str:
        return f"ProductStore({self._root!r})"

    def local_path(self, key: str) -> Path:
        """Absolute local path of ``key`` (local stores only), checked to stay in the root."""
        if self._local is None:
            raise ArchiveError("this product store is not on the local disk")
        path = (self._local / _check_key(key)).resolve()
        if not path.is_relative_to(self._local):
            raise ArchiveError(f"store key {key!r} leaves the store")
        return path

    def key_of(self, path: Path) -> str | None:
        """The key of a local file that is inside this (local) store, else None."""
        if self._local is None:
            return None
        resolved = Path(path).resolve()
        if not resolved.is_relative_to(self._local):
            return None
        return _check_key(resolved.relative_to(self._local).as_posix())

    def _remote(self, key: str) -> str:
        return f"{self._root}/{_check_key(key)}"

    def put_file(self, source: Path, key: str) -> str:
        """Copy ``source`` to ``key`` atomically and return the sha256 of the stored copy."""
        if self._local is not None:
            with atomic_path(self.local_path(key)) as tmp:
                shutil.copyfile(source, tmp)
            return sha256_file(self.local_path(key))
        temp = f"{self._remote(key)}.{uuid.uuid4().hex}.part"
        self._fs.put_file(str(source), temp)
        self._fs.mv(temp, self._remote(key))
        return self.sha256(key)

    def put_bytes(self, data: bytes, key: str) -> None:
        """Write ``data`` to ``key`` atomically."""
        if self._local is not None:
            with atomic_path(self.local_path(key)) as tmp:
                tmp.write_bytes(data)
            return
        temp = f"{self._remote(key)}.{uuid.uuid4().hex}.part"
        self._fs.pipe_file(temp, data)
        self._fs.mv(temp, self._remote(key))

    def delete(self, key: str) -> None:
        """Remove ``key`` from the store (nothing happens when it is not there)."""
        if self._local is not None:
            self.local_path(key).unlink(missing_ok=True)
        elif self._fs.exists(self._remote(key)):
            self._fs.rm_file(self._remote(key))

    def exists(self, key: str) -> bool:
        """True if ``key`` is in the store."""
        if self._local is not None:
            return self.local_path(key).is_file()
        return bool(self._fs.exists(self._remote(key)))

    def size(self, key: str) -> int:
        """Size of ``key`` in bytes."""
        if self._local is not None:
            return self.local_path(key).stat().st_size
        return int(self._fs.size(self._remote(key)))

    @contextmanager
    def open(self, key: str) -> Iterator[IO[bytes]]:
        """Open ``key`` for binary reading."""
        if self._local is not None:
            with open(self.local_path(key), "rb") as handle:
                yield handle
        else:
            with self._fs.open(self._remote(key), "rb") as handle:
                yield handle

    def read_bytes(self, key: str) -> bytes:
        """Whole content of ``key``."""
        with self.open(key) as handle:
            return handle.read()

    def sha256(self, key: str) -> str:
        """Hex sha256 of ``key``'s content."""
        if self._local is not None:
            return sha256_file(self.local_path(key))
        digest = hashlib.sha256()
        with self.open(key) as handle:
            while block := handle.read(_CHUNK):
                digest.update(block)
        return digest.hexdigest()

    def verify(self, key: str, sha256: str) -> None:
        """Raise :class:`ChecksumMismatchError` unless ``key`` hashes to ``sha256``."""
        found = self.sha256(key)
        if found != sha256:
            raise ChecksumMismatchError(
                f"stored product {key} has sha256 {found}, the catalog records {sha256}"
            )

    def stat_signature(self, key: str) -> tuple[int, ...]:
        """(size, mtime_ns, inode) of a local file: it changes whenever the file does."""
        st = os.stat(self.local_path(key))
        return (st.st_size, st.st_mtime_ns, st.st_ino)
