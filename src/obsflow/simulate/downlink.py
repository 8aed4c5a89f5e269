"""Recorder dumps and downlink faults.

The time-ordered packet stream is cut into dumps (one file per ground
contact).  Faults, each switchable, then make the delivery realistic:

``reorder``    packets swapped locally inside a dump
``split``      dump boundaries fall in the middle of exposures (otherwise
               they are moved to the nearest exposure boundary)
``duplicate``  some packets delivered twice
``drop``       some science packets (and one run of consecutive ones) missing
``bitflip``    one bit flipped in the payload of some science packets (CRC fails)
``truncate``   the first dump file cut in the middle of a packet

Everything that did not arrive intact (dropped, corrupted, cut off) is sent
again, with its original headers, in a final retransmission dump.  The
returned fate table records every fault for the truth folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from obsflow.simulate.faults import FAULTS, parse_faults
from obsflow.simulate.packetize import PacketStream
from obsflow.telemetry import CRC_SIZE, HEADER_SIZE

__all__ = ["FAULTS", "Dump", "make_dumps", "parse_faults"]


@dataclass
class Dump:
    """One dump file: packet ids in delivery order, bit flips and a truncation.

    ``flips`` maps a position in ``ids`` to the bit offset flipped inside that
    packet; ``truncate_at`` cuts the file at that byte when not None.
    """

    index: int
    ids: np.ndarray
    retransmission: bool = False
    flips: dict[int, int] = field(default_factory=dict)
    truncate_at: int | None = None

    def render(self, stream: PacketStream) -> np.ndarray:
        """The file's bytes."""
        data = stream.gather(self.ids).copy()
        starts = np.concatenate([[0], np.cumsum(stream.size[self.ids])[:-1]]).astype(np.int64)
        for pos, bit in self.flips.items():
            byte = starts[pos] + bit // 8
            data[byte] ^= np.uint8(1 << (bit % 8))
        return data if self.truncate_at is None else data[: self.truncate_at]


def _exposure_of(stream: PacketStream) -> np.ndarray:
    """Forward-filled science exposure id at each packet (0 before the first)."""
    exp = stream.exposure_id.astype(np.int64)
    idx = np.where(exp > 0, np.arange(len(exp)), 0)
    np.maximum.accumulate(idx, out=idx)
    return exp[idx]


def _cut_points(stream: PacketStream, n_dumps: int, split: bool) -> list[int]:
    n = len(stream)
    owner = _exposure_of(stream)
    boundaries = np.flatnonzero(np.diff(owner) != 0) + 1
    cuts = []
    for k in range(1, n_dumps):
        target = k * n // n_dumps
        if split:
            same = np.flatnonzero(owner == owner[target])
            cut = int(same[len(same) // 2]) if owner[target] > 0 else target
        else:
            cut = int(boundaries[np.argmin(np.abs(boundaries - target))]) if boundaries.size else n
        cuts.append(cut)
    return sorted(set(c for c in cuts if 0 < c < n))


def _pick(rng: np.random.Generator, pool: np.ndarray, k: int) -> np.ndarray:
    k = min(k, pool.size)
    return np.sort(rng.choice(pool, size=k, replace=False)) if k else np.zeros(0, np.int64)


def make_dumps(stream: PacketStream, science_apids: set[int], faults: frozenset[str],
               n_dumps: int, rng: np.random.Generator) -> tuple[list[Dump], list[dict]]:  # type: ignore[type-arg]
    """Cut ``stream`` into dumps and apply ``faults``; return (dumps, fate records)."""
    fates: list[dict] = []  # type: ignore[type-arg]
    sci = np.flatnonzero(np.isin(stream.apid, list(science_apids)))
    n_sci = sci.size
    dropped = _pick(rng, sci, max(1, n_sci // 500)) if "drop" in faults else np.zeros(0, np.int64)
    if "drop" in faults and n_sci > 20:
        start = int(rng.integers(0, n_sci - 5))
        dropped = np.union1d(dropped, sci[start:start + 5])
    rest = np.setdiff1d(sci, dropped)
    flipped = _pick(rng, rest, max(1, n_sci // 1000)) if "bitflip" in faults else np.zeros(0, np.int64)
    rest = np.setdiff1d(rest, flipped)
    dup = _pick(rng, rest, max(1, len(stream) // 500)) if "duplicate" in faults else np.zeros(0, np.int64)
    for name, ids in (("dropped", dropped), ("corrupted", flipped), ("duplicated", dup)):
        fates += [_fate(stream, name, int(i)) for i in ids]
    flipped_set = set(flipped.tolist())
    bounds = [0, *_cut_points(stream, n_dumps, "split" in faults), len(stream)]
    dumps = []
    for k in range(len(bounds) - 1):
        ids = np.setdiff1d(np.arange(bounds[k], bounds[k + 1]), dropped)
        ids = _insert_duplicates(ids, dup, rng)
        if "reorder" in faults:
            ids = _shuffle_locally(ids, rng)
        flips = {int(p): _flip_bit(stream, int(i), rng) for p, i in enumerate(ids.tolist())
                 if i in flipped_set}
        dumps.append(Dump(k + 1, ids, flips=flips))
    if "truncate" in faults and dumps and len(dumps[0].ids) > 20:
        fates += _truncate(stream, dumps[0], rng)
        fates = _drop_cut_duplicates(fates, dumps[0], stream)
    for d in dumps:
        present = set(d.ids.tolist())
        for f in fates:
            if f["packet"] in present and f["fault"] != "dropped":
                f.setdefault("dump", d.index)
    missing = _missing(stream, dumps)
    if missing.size:
        dumps.append(Dump(len(dumps) + 1, missing, retransmission=True))
    return dumps, fates


def _fate(stream: PacketStream, fault: str, i: int) -> dict:  # type: ignore[type-arg]
    return {"fault": fault, "packet": i, "apid": int(stream.apid[i]),
            "seq_count": int(stream.seq_count[i]), "exposure_id": int(stream.exposure_id[i]),
            "packet_index": int(stream.packet_index[i])}


def _insert_duplicates(ids: np.ndarray, dup: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = list(ids.tolist())
    for i in sorted(set(dup.tolist()) & set(out), reverse=True):
        pos = out.index(i)
        out.insert(min(len(out), pos + 1 + int(rng.integers(0, 20))), i)
    return np.asarray(out, np.int64)


def _shuffle_locally(ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Swap about 1% of packets with a partner up to 50 places away."""
    out = ids.copy()
    n = out.size
    for a in rng.choice(n, size=max(1, n // 100), replace=False) if n > 1 else []:
        b = int(np.clip(a + rng.integers(-50, 51), 0, n - 1))
        out[[a, b]] = out[[b, a]]
    return out


def _flip_bit(stream: PacketStream, i: int, rng: np.random.Generator) -> int:
    """A bit offset inside packet ``i``'s payload (headers and CRC untouched)."""
    payload_bits = (int(stream.size[i]) - HEADER_SIZE - CRC_SIZE) * 8
    return HEADER_SIZE * 8 + int(rng.integers(0, payload_bits))


def _truncate(stream: PacketStream, dump: Dump, rng: np.random.Generator) -> list[dict]:  # type: ignore[type-arg]
    """Cut the dump inside one of its last packets; return fates of the packets lost by it.

    A packet counts as truncated only when no copy of it was delivered before
    the cut (a duplicate's earlier copy still arrived intact).
    """
    cut_pos = len(dump.ids) - int(rng.integers(2, 8))
    sizes = stream.size[dump.ids]
    start = int(sizes[:cut_pos].sum())
    dump.truncate_at = start + int(rng.integers(1, int(sizes[cut_pos])))
    before = set(dump.ids[:cut_pos].tolist())
    lost = dict.fromkeys(i for i in dump.ids[cut_pos:].tolist() if i not in before)
    return [_fate(stream, "truncated", int(i)) | {"dump": dump.index} for i in lost]


def _drop_cut_duplicates(fates: list[dict], dump: Dump, stream: PacketStream) -> list[dict]:  # type: ignore[type-arg]
    """Remove "duplicated" records of packets that did not arrive twice because of the cut."""
    assert dump.truncate_at is not None
    ends = np.cumsum(stream.size[dump.ids])
    whole = dump.ids[ends <= dump.truncate_at].tolist()
    counts: dict[int, int] = {}
    for i in whole:
        counts[i] = counts.get(i, 0) + 1
    return [f for f in fates if f["fault"] != "duplicated" or f["packet"] not in dump.ids.tolist()
            or counts.get(f["packet"], 0) >= 2]


def _missing(stream: PacketStream, dumps: list[Dump]) -> np.ndarray:
    """Packets not delivered intact by any dump (the retransmission list)."""
    good = np.zeros(len(stream), bool)
    for d in dumps:
        ids = d.ids
        if d.truncate_at is not None:
            ends = np.cumsum(stream.size[ids])
            ids = ids[ends <= d.truncate_at]
        bad_pos = np.fromiter(d.flips.keys(), np.int64, len(d.flips))
        ok = np.ones(ids.size, bool)
        ok[bad_pos[bad_pos < ids.size]] = False
        good[ids[ok]] = True
    return np.flatnonzero(~good)
