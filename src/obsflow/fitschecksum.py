"""FITS CHECKSUM / DATASUM for data written piece by piece.

astropy computes both cards from an HDU whose data is in memory
(``hdu.add_checksum``).  A product streamed to disk block by block (a time
series of thousands of integrations) never holds its whole data, so its
DATASUM is accumulated here block by block (:class:`DataSum`) and its
CHECKSUM derived from the header and that sum (:func:`set_checksum`).

The algorithm is the FITS standard's (Seaman, Pence & Rots, "FITS Checksum
Proposal", FITS standard 4.0 appendix J): the 32-bit ones'-complement sum of
the big-endian 32-bit words of a unit, and for CHECKSUM the 16-character
ASCII encoding of the complement of the sum over header and data, chosen so
that the whole HDU then sums to negative zero.  Files written with it verify
with astropy (``checksum=True``) and fitsverify (tests/test_fitschecksum.py).
"""

from __future__ import annotations

import numpy as np
from astropy.io import fits

__all__ = ["DataSum", "checksum_of", "disk_form", "datasum_of", "disk_form_and_sum",
           "set_checksum"]

_MASK = 0xFFFFFFFF
_EXCLUDE = frozenset(range(0x3A, 0x41)) | frozenset(range(0x5B, 0x61))
"""ASCII punctuation between the digits and letters, never used in an encoded checksum."""


def _fold(total: int) -> int:
    """Ones'-complement 32-bit value of a plain sum of 32-bit words (end-around carries)."""
    while total > _MASK:
        total = (total & _MASK) + (total >> 32)
    return total


class DataSum:
    """The DATASUM of a data unit, fed in order, in blocks of any size.

    Each block is an array of values (any byte order; unsigned integers of
    16 bits or more are summed in their FITS disk form, signed with a BZERO
    offset, as astropy writes them) or raw ``bytes`` as on disk.  The zero
    padding to 2880 bytes adds nothing, so it need not be fed.
    """

    def __init__(self) -> None:
        self._total = 0
        self._carry = b""  # bytes of an unfinished 32-bit word from the previous block

    def update(self, block: np.ndarray | bytes) -> None:
        """Add the next block of the data unit."""
        if isinstance(block, np.ndarray):
            raw = disk_form(block).reshape(-1).view(np.uint8)
        else:
            raw = np.frombuffer(block, np.uint8)
        if self._carry:
            need = 4 - len(self._carry)
            head, raw = bytes(self._carry) + raw[:need].tobytes(), raw[need:]
            if len(head) < 4:
                self._carry = head
                return
            self._total += int.from_bytes(head, "big")
        whole = raw.size - raw.size % 4
        self._carry = raw[whole:].tobytes()
        if whole:
            self._total += int(np.sum(raw[:whole].view(">u4"), dtype=np.uint64))

    def add_words(self, total: int) -> None:
        """Add the plain sum ``total`` of the next whole 32-bit words of the data unit (as
        :func:`disk_form_and_sum` sums them), in place of feeding their bytes."""
        if self._carry:
            from obsflow.exceptions import DataModelError

            raise DataModelError("DataSum.add_words after a block that ended inside a word")
        self._total += int(total)

    @property
    def value(self) -> int:
        """The 32-bit DATASUM of everything fed so far (as if zero-padded)."""
        tail = self._carry + bytes(4 - len(self._carry)) if self._carry else b""
        return _fold(self._total + int.from_bytes(tail, "big")) if tail else _fold(self._total)


def disk_form(values: np.ndarray) -> np.ndarray:
    """``values`` as FITS stores them: big-endian, C-contiguous; unsigned integers of 16
    bits or more as signed with the BZERO offset 2**(bits - 1) (astropy's convention).

    No copy when ``values`` already are in that form.
    """
    if values.dtype.kind == "u" and values.dtype.itemsize > 1:
        native = values.astype(values.dtype.newbyteorder("="), copy=False)
        flip = native.dtype.type(1 << (8 * values.dtype.itemsize - 1))
        values = (native ^ flip).view(f"i{values.dtype.itemsize}")
    return np.ascontiguousarray(values, dtype=values.dtype.newbyteorder(">"))


def disk_form_and_sum(values: np.ndarray) -> tuple[np.ndarray, int]:
    """``values`` in their FITS disk form as bytes (:func:`disk_form`) and the plain sum of
    their 32-bit words (:func:`datasum_of` folds it into the DATASUM; :meth:`DataSum.add_words`
    adds it to a running one).

    Arrays of 4-byte native values (float32, int32, uint32: most of a
    product) are swapped and summed in one compiled pass
    (:func:`obsflow.fitswords.swapped_words_sum`); others go through
    :func:`disk_form` and :class:`DataSum`, whose sum comes back already folded
    (equal modulo 2**32 - 1, so it folds and adds up the same).
    """
    native = values.dtype.byteorder in ("=", "|") or (
        values.dtype.byteorder == "<" and np.little_endian)
    if values.dtype.itemsize == 4 and values.dtype.kind in "fiu" and native \
            and values.flags.c_contiguous:
        from obsflow.fitswords import swapped_words_sum

        words = values.reshape(-1).view(np.uint32)
        out = np.empty(words.size, np.uint32)
        flip = np.uint32(0x80000000 if values.dtype.kind == "u" else 0)
        return out.view(np.uint8), int(swapped_words_sum(words, flip, out))
    raw = disk_form(values).reshape(-1).view(np.uint8)
    total = DataSum()
    total.update(raw)
    return raw, total.value


def datasum_of(total: int) -> int:
    """The 32-bit DATASUM of a whole data unit whose words sum to ``total``
    (:func:`disk_form_and_sum`'s second value)."""
    return _fold(total)


def _encode(value: int) -> str:
    """The 16-character ASCII encoding of a 32-bit value (FITS standard, appendix J)."""
    chars = [0] * 16
    for byte_index in range(4):
        byte = (value >> (24 - 8 * byte_index)) & 0xFF
        quad = [byte // 4 + 0x30] * 4
        quad[0] += byte % 4
        changed = True
        while changed:
            changed = False
            for j in (0, 2):
                if quad[j] in _EXCLUDE or quad[j + 1] in _EXCLUDE:
                    quad[j] += 1
                    quad[j + 1] -= 1
                    changed = True
        for j in range(4):
            chars[4 * j + byte_index] = quad[j]
    return "".join(chr(chars[(i + 15) % 16]) for i in range(16))  # rotated right by one


def checksum_of(header: fits.Header, datasum: int) -> str:
    """The CHECKSUM value of an HDU whose header is ``header`` (its DATASUM and
    CHECKSUM cards already present, CHECKSUM's value ignored) and data sum ``datasum``."""
    probe = header.copy()
    probe["CHECKSUM"] = "0" * 16
    words = np.frombuffer(probe.tostring().encode("ascii"), ">u4")
    total = _fold(int(np.sum(words, dtype=np.uint64)) + datasum)
    return _encode(~total & _MASK)


def set_checksum(header: fits.Header, datasum: int, when: str = "obsflow") -> None:
    """Set DATASUM and CHECKSUM in ``header`` for a data unit whose sum is ``datasum``.

    Cards as astropy's ``add_checksum(when=when)`` writes them (``when`` is
    both cards' comment), so a streamed product's header reads, and sums,
    like any other product's (:func:`obsflow.fileio.write_fits`).
    """
    header["CHECKSUM"] = ("0" * 16, when)
    header["DATASUM"] = (str(datasum), when)
    header["CHECKSUM"] = checksum_of(header, datasum)
