"""Zip archives made as a stream of byte chunks, for downloads too large to hold.

:func:`stream_zip` drives the standard library's :mod:`zipfile` over an
unseekable sink: each member's CRC-32 and sizes follow its data (a data
descriptor, general-purpose flag bit 3) and every member carries zip64
fields, so members and archives past 4 GiB need nothing special.  Members
are stored, not deflated (FITS data hardly compresses, and storing leaves
the server's CPU free).  Only the chunk being passed on is held in memory:
what the caller's member iterators yield, plus the few bytes of headers.

If a member's iterator raises, or yields another number of bytes than the
member declared, the exception propagates and the stream stops before the
central directory: the receiver holds a truncated file that no zip reader
takes for a whole archive.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from obsflow.exceptions import ChecksumMismatchError

__all__ = ["ZipMember", "stream_zip", "text_member"]

ZIP_EPOCH = datetime(1980, 1, 1)
"""The earliest time a zip entry can carry (DOS date); earlier times are clamped to it."""


@dataclass(frozen=True)
class ZipMember:
    """One file of a streamed zip.

    Attributes
    ----------
    name : str
        Path inside the archive (``/``-separated).
    size : int
        Its length in bytes (checked against what ``chunks`` yields).
    chunks : callable
        Called when the member's turn comes; yields its bytes in pieces.
    modified : datetime
        Modification time stored in the entry (naive UTC; second resolution).
    """

    name: str
    size: int
    chunks: Callable[[], Iterable[bytes]]
    modified: datetime


def text_member(name: str, text: str, modified: datetime) -> ZipMember:
    """A small member holding ``text`` (UTF-8)."""
    data = text.encode()
    return ZipMember(name, len(data), lambda: (data,), modified)


class _Sink:
    """A write-only, unseekable file for :mod:`zipfile`: keeps what is written until taken."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        """Nothing to flush: the parts wait for :meth:`take`."""

    def close(self) -> None:
        """Nothing to close."""

    def take(self) -> bytes:
        """Everything written since the last call."""
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def _entry(member: ZipMember) -> zipfile.ZipInfo:
    moment = max(member.modified, ZIP_EPOCH)
    info = zipfile.ZipInfo(member.name, moment.timetuple()[:6])
    info.file_size = member.size
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o100644 << 16  # a regular file, rw-r--r--
    return info


def stream_zip(members: Iterable[ZipMember]) -> Iterator[bytes]:
    """The zip archive of ``members``, in order, as a sequence of non-empty byte chunks.

    Raises
    ------
    ChecksumMismatchError
        A member yielded another number of bytes than its ``size``.
    """
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for member in members:
            written = 0
            with archive.open(_entry(member), "w", force_zip64=True) as out:
                for chunk in member.chunks():
                    out.write(chunk)
                    written += len(chunk)
                    if data := sink.take():
                        yield data
                if written != member.size:
                    raise ChecksumMismatchError(
                        f"{member.name}: {written} bytes read, {member.size} expected")
            if data := sink.take():
                yield data
    if data := sink.take():
        yield data
