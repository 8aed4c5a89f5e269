"""The headers of a FITS file, read in pure Python (no astropy, no numpy).

``obsflow refs best`` needs seven keywords of a product; importing
astropy's FITS reader for them cost a second of start-up.  :func:`read_headers`
walks the file's HDUs (80-character cards in 2880-byte blocks, FITS
standard 4.0, section 4) and returns each header as a dict, or None for
anything it does not take on itself: not FITS, truncated, random groups, a
value it cannot read (complex numbers, a malformed card).  A caller given
None reads the file with astropy (:func:`obsflow.models.fitsfile.open_fits`),
which names the problem; so this reader never decides that a file is bad.

Values read as astropy reads them: strings without trailing blanks (``''``
is a quote, ``CONTINUE`` cards extend a string ending in ``&``), ``T``/``F``
as bool, integers as int, reals (``E`` or ``D`` exponent) as float; the first
card of a repeated keyword wins.  A test compares it with astropy on the
products obsflow writes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from obsflow.exceptions import DataModelError

__all__ = ["BLOCK_BYTES", "read_headers"]

BLOCK_BYTES = 2880
"""Size of a FITS block, bytes."""

CARD_BYTES = 80
"""Size of a header card, bytes."""

_INT = re.compile(r"[+-]?\d+")
_REAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([EeDd][+-]?\d+)?")


def _string(text: str) -> tuple[str, str]:
    """The string value starting at ``text[0] == "'"`` and the rest of the card after it."""
    out, i = [], 1
    while i < len(text):
        if text[i] == "'":
            if text[i + 1:i + 2] == "'":
                out.append("'")
                i += 2
                continue
            return "".join(out).rstrip(), text[i + 1:]
        out.append(text[i])
        i += 1
    raise DataModelError("unterminated string")


def _value(text: str) -> Any:
    """The value of a card's value field (after ``= ``)."""
    stripped = text.lstrip()
    if stripped.startswith("'"):
        value, rest = _string(stripped)
        if rest.strip() and not rest.strip().startswith("/"):
            raise DataModelError("text after a string")
        return value
    field = stripped.split("/", 1)[0].strip()
    if field in ("T", "F"):
        return field == "T"
    if _INT.fullmatch(field):
        return int(field)
    if _REAL.fullmatch(field):
        return float(field.replace("D", "E").replace("d", "e"))
    raise DataModelError(f"value {field!r}")


def _parse_header(cards: list[str]) -> dict[str, Any]:
    header: dict[str, Any] = {}
    last: str | None = None
    for card in cards:
        keyword = card[:8].rstrip()
        if keyword == "CONTINUE" and last is not None:
            head = header[last]
            if not (isinstance(head, str) and head.endswith("&")):
                raise DataModelError("CONTINUE after a value that does not end with '&'")
            more, _ = _string(card[8:].lstrip())
            header[last] = (head[:-1] + more).rstrip()
            continue
        last = None
        if card[8:10] != "= " or keyword in ("", "HIERARCH"):
            continue  # commentary (COMMENT, HISTORY, blank), or a HIERARCH card: not read
        if keyword not in header:
            header[keyword] = _value(card[10:])
            last = keyword
    return header


def _data_bytes(header: dict[str, Any]) -> int:
    """Bytes of an HDU's data (before padding to whole blocks)."""
    naxis = header.get("NAXIS", 0)
    if header.get("GROUPS") is True:
        raise DataModelError("random groups")
    if naxis == 0:
        return 0
    count = 1
    for i in range(1, naxis + 1):
        count *= int(header[f"NAXIS{i}"])
    return abs(int(header["BITPIX"])) // 8 * int(header.get("GCOUNT", 1)) * (
        int(header.get("PCOUNT", 0)) + count)


def _blocks(nbytes: int) -> int:
    return -(-nbytes // BLOCK_BYTES) * BLOCK_BYTES


def read_headers(path: Path) -> list[dict[str, Any]] | None:
    """Every HDU's header of the FITS file ``path`` as a dict, in order; None when this
    reader does not take the file (see the module docstring: read it with astropy)."""
    try:
        with open(path, "rb") as stream:
            size = stream.seek(0, 2)
            if size == 0 or size % BLOCK_BYTES:
                return None
            headers: list[dict[str, Any]] = []
            offset = 0
            while offset < size:
                stream.seek(offset)
                cards: list[str] = []
                while True:
                    block = stream.read(BLOCK_BYTES)
                    if len(block) < BLOCK_BYTES:
                        return None
                    offset += BLOCK_BYTES
                    text = block.decode("ascii")
                    cards += [text[i:i + CARD_BYTES] for i in range(0, BLOCK_BYTES, CARD_BYTES)]
                    if any(card.startswith("END ") or card == "END".ljust(CARD_BYTES)
                           for card in cards[-BLOCK_BYTES // CARD_BYTES:]):
                        break
                end = next(i for i, card in enumerate(cards) if card.rstrip() == "END")
                first = "SIMPLE" if not headers else "XTENSION"
                if not cards[0].startswith(first):
                    return None
                header = _parse_header(cards[:end])
                headers.append(header)
                offset += _blocks(_data_bytes(header))
            return headers if offset == size else None
    except (OSError, UnicodeDecodeError, KeyError, ValueError, TypeError, StopIteration):
        # DataModelError (a ValueError) included: a card this reader does not take
        return None
