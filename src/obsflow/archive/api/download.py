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

from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from obsflow.archive.api.head import HEAD_SCOPE_KEY
from obsflow.archive.schema import Product, ProductFile
from obsflow.archive.store import ProductStore
from obsflow.exceptions import RangeNotSatisfiableError

__all__ = ["MAX_RANGES", "ChecksumCache", "checksum_headers", "parse_range", "product_response"]

CHUNK = 1 << 20
"""Bytes per chunk sent."""

MAX_RANGES = 16
"""More ranges than this in one Range header are ignored (the whole file is sent)."""

_RANGE_SPEC = re.compile(r"^(?:(\d+)-(\d*)|-(\d+))$")
_BEYOND = 10**19
"""Stands for a position of more than 19 digits: past the end of any file."""


def _position(digits: str) -> int:
    """A byte position of a Range (Python refuses to parse integers of thousands of digits)."""
    return int(digits) if len(digits) <= 19 else _BEYOND

Span = tuple[int, int]
"""A byte range: (first, end exclusive)."""


def parse_range(header: str | None, size: int) -> list[Span] | None:
    """The byte ranges a ``Range`` header asks of a ``size``-byte file, sorted and merged.

    None means "send the whole file": no header, a unit other than
    ``bytes``, invalid syntax (e.g. ``bytes=5-3``), or too many ranges.
    Ranges that start past the end are dropped; if none is left,
    :class:`RangeNotSatisfiableError`.
    """
    if header is None:
        return None
    unit, equals, range_set = header.partition("=")
    if not equals or unit.strip().lower() != "bytes":
        return None
    specs = [part.strip() for part in range_set.split(",") if part.strip()]
    if not specs or len(specs) > MAX_RANGES:
        return None
    spans: list[Span] = []
    for spec in specs:
        match = _RANGE_SPEC.match(spec)
        if match is None:
            return None
        first, last, suffix = match.groups()
        if suffix is not None:
            length = _position(suffix)
            if length > 0 and size > 0:
                spans.append((max(size - length, 0), size))
            continue
        start = _position(first)
        end = _position(last) + 1 if last else size
        if last and end <= start:  # last < first: invalid syntax
            return None
        if start < size:
            spans.append((start, min(end, size)))
    if not spans:
        raise RangeNotSatisfiableError(f"range {header[:100]!r} is outside the {size}-byte file",
                                       size)
    spans.sort()
    merged = [spans[0]]
    for start, end in spans[1:]:
        if start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


class _RangedFileResponse(FileResponse):
    """A ``FileResponse`` with 1 MiB chunks serving ranges already parsed by :func:`parse_range`."""

    chunk_size = CHUNK

    def __init__(self, path: str, spans: list[Span] | None, **kwargs: object) -> None:
        super().__init__(path, **kwargs)  # type: ignore[arg-type]
        self.spans = spans

    def _parse_range_header(self, http_range: str, file_size: int) -> list[Span]:  # type: ignore[override]
        return self.spans or []  # empty: Starlette sends the whole file

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get(HEAD_SCOPE_KEY):  # a HEAD answered as GET: headers only, file unread
            scope = {**scope, "method": "HEAD"}
        await super().__call__(scope, receive, send)


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


def _remote_response(store: ProductStore, product: Product | ProductFile, spans: list[Span] | None,
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


def product_response(store: ProductStore, cache: ChecksumCache,
                     product: Product | ProductFile, range_header: str | None) -> Response:
    """The download response of a visible product's file (checksum verified first).

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
