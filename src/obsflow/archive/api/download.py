"""Serving product files: streamed, with HTTP Range, a sha256 header, verified first.

Local stores are served by a Starlette ``FileResponse`` (single and multiple
ranges, ``If-Range``) with 1 MiB chunks.  Before a file is served its
sha256 is checked against the catalog; the check is remembered per
(size, mtime, inode) of the file, so a file is hashed again as soon as it
changes on disk.  Other (fsspec) stores are hashed on every download and
streamed with single-range support.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Iterator

from starlette.responses import FileResponse, Response, StreamingResponse

from obsflow.archive.schema import Product
from obsflow.archive.store import ProductStore
from obsflow.exceptions import RangeNotSatisfiableError

__all__ = ["ChecksumCache", "checksum_headers", "product_response"]

CHUNK = 1 << 20
"""Bytes per chunk sent."""

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class _BigChunkFileResponse(FileResponse):
    chunk_size = CHUNK


class ChecksumCache:
    """Remembers which local files were verified, by their stat signature."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, ...]] = {}
        self._lock = threading.Lock()

    def verify(self, store: ProductStore, key: str, sha256: str) -> None:
        """Check ``key`` against ``sha256`` unless it was checked and has not changed."""
        signature = (*store.stat_signature(key), hash(sha256))
        with self._lock:
            if self._seen.get(key) == signature:
                return
        store.verify(key, sha256)
        with self._lock:
            self._seen[key] = signature


def checksum_headers(sha256: str) -> dict[str, str]:
    """``X-Checksum-SHA256`` (hex) and ``Repr-Digest`` (RFC 9530) headers."""
    b64 = base64.b64encode(bytes.fromhex(sha256)).decode()
    return {"X-Checksum-SHA256": sha256, "Repr-Digest": f"sha-256=:{b64}:",
            "ETag": f'"{sha256}"'}


def _single_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end exclusive) of a single-range header; None to send everything."""
    if header is None or "," in header:
        return None
    match = _RANGE.match(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.groups()
    if first == "":
        start, end = max(size - int(last), 0), size
    else:
        start, end = int(first), min(int(last) + 1, size) if last else size
    if start >= size or start >= end:
        raise RangeNotSatisfiableError(f"range {header!r} is outside the {size}-byte file")
    return start, end


def _stream(store: ProductStore, key: str, start: int, end: int) -> Iterator[bytes]:
    with store.open(key) as handle:
        handle.seek(start)
        left = end - start
        while left > 0 and (block := handle.read(min(CHUNK, left))):
            left -= len(block)
            yield block


def _remote_response(store: ProductStore, product: Product, range_header: str | None,
                     headers: dict[str, str]) -> Response:
    try:
        span = _single_range(range_header, product.size)
    except RangeNotSatisfiableError:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{product.size}"})
    start, end = span or (0, product.size)
    headers = {**headers, "Accept-Ranges": "bytes", "Content-Length": str(end - start)}
    status = 200
    if span is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{product.size}"
    return StreamingResponse(_stream(store, product.path, start, end), status_code=status,
                             media_type=product.content_type, headers=headers)


def product_response(store: ProductStore, cache: ChecksumCache, product: Product,
                     range_header: str | None) -> Response:
    """The download response of a visible product (checksum verified first)."""
    headers = checksum_headers(product.sha256)
    headers["Content-Disposition"] = f'attachment; filename="{product.filename}"'
    if store.is_local:
        cache.verify(store, product.path, product.sha256)
        return _BigChunkFileResponse(store.local_path(product.path),
                                     media_type=product.content_type, headers=headers)
    store.verify(product.path, product.sha256)
    return _remote_response(store, product, range_header, headers)
