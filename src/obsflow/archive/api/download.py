"""Serving product files: streamed, with HTTP Range, a sha256 header, verified first.

Range requests follow RFC 9110 section 14 (:func:`parse_range`): a Range
with a unit other than ``bytes``, with invalid syntax or with more than
:data:`MAX_RANGES` ranges is ignored (the whole file, 200); a range set
none of whose ranges starts inside the file answers 416 with
``Content-Range: bytes */<size>`` and the API's JSON error; ranges only
apply to ``GET``.  Local stores are served by a Starlette ``FileResponse``
(single and multiple ranges as ``multipart/byteranges``, ``If-Range``)
with 1 MiB chunks.  Before a file is served its
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

from starlette.responses import Response, StreamingResponse

from obsflow.archive.schema import Product
from obsflow.archive.store import ProductStore

__all__ = ["MAX_RANGES", "ChecksumCache", "checksum_headers", "parse_range", "product_response"]

CHUNK = 1 << 20
"""Bytes per chunk sent."""

MAX_RANGES = 16
"""More ranges than this in one Range header are ignored (the whole file is sent)."""

_RANGE_SPEC = re.compile(r"^(?:(\d+)-(\d*)|-(\d+))$")

Span = tuple[int, int]
"""A byte range: (first, end exclusive)."""


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


def _stream(store: ProductStore, key: str, start: int, end: int) -> Iterator[bytes]:
    with store.open(key) as handle:
        handle.seek(start)
        left = end - start
        while left > 0 and (block := handle.read(min(CHUNK, left))):
            left -= len(block)
            yield block


def _remote_response(store: ProductStore, product: Product, spans: list[Span] | None,
                     headers: dict[str, str]) -> Response:
    span = spans[0] if spans is not None and len(spans) == 1 else None  # several: whole file
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
    """The download response of a visible product (checksum verified first).

    ``range_header`` is the request's Range (None for a method other than
    GET); :class:`RangeNotSatisfiableError` when none of its ranges fits.
    """
    headers = checksum_headers(product.sha256)
    headers["Content-Disposition"] = f'attachment; filename="{product.filename}"'
    if store.is_local:
        cache.verify(store, product.path, product.sha256)
        spans = parse_range(range_header, product.size)
        return _RangedFileResponse(str(store.local_path(product.path)), spans,
                                   media_type=product.content_type, headers=headers)
    store.verify(product.path, product.sha256)
    return _remote_response(store, product, parse_range(range_header, product.size), headers)
