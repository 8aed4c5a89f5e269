"""Benchmark the obsflow CCSDS codec against ccsdspy on one full-frame exposure.

One exposure of 2048 rows x 10 groups = 20,480 science packets with 4096-byte
payloads (2048 big-endian uint16 pixels each), ~84 MB, is encoded in memory,
written to a temporary file and decoded (best of 3) by

* obsflow: ``decode_file`` (read + walk + header gather + CRC check of every
  packet) followed by ``payloads()`` (the (N, 4096) uint8 gather);
* ccsdspy: ``FixedLength.load`` with the six secondary header fields, the
  payload as a 2048-element big-endian uint16 ``PacketArray`` and the CRC
  (ccsdspy does not check the CRC).

Run with ``.venv/bin/python benchmarks/bench_codec.py``.
"""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from obsflow.telemetry import (
    SECONDARY_HEADER_DTYPE,
    decode,
    decode_file,
    encode_packets,
)

ROWS, GROUPS, PIXELS = 2048, 10, 2048
APID = 0x100


def best_of(fn: Callable[[], Any], repeat: int = 3) -> float:
    """Best wall-clock time of ``repeat`` calls, in seconds."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def build_inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sequence counts (N,), secondary headers (N,) and pixels (N, 2048) uint16."""
    n = ROWS * GROUPS
    index = np.arange(n)
    sec = np.zeros(n, dtype=SECONDARY_HEADER_DTYPE)
    sec["time_coarse"] = 1_000_000 + index // 1000
    sec["time_fine"] = (index % 1000) * 65
    sec["exposure_id"] = 1
    sec["group"] = index // ROWS
    sec["row"] = index % ROWS
    sec["packet_index"] = index
    pixels = np.random.default_rng(0).integers(0, 2**16, (n, PIXELS), dtype=np.uint16)
    return index % 16384, sec, pixels


def ccsdspy_definition() -> Any:
    """ccsdspy FixedLength definition of the science packet."""
    import ccsdspy
    from ccsdspy import PacketArray, PacketField

    fields: list[Any] = [
        PacketField(name=name, data_type="uint", bit_length=bits)
        for name, bits in [("time_coarse", 32), ("time_fine", 16), ("exposure_id", 32),
                           ("group", 16), ("row", 16), ("packet_index", 32)]
    ]
    fields.append(PacketArray(name="pixels", data_type="uint", bit_length=16,
                              array_shape=PIXELS))
    fields.append(PacketField(name="crc", data_type="uint", bit_length=16))
    return ccsdspy.FixedLength(fields)


def main() -> None:
    seq, sec, pixels = build_inputs()
    stream = encode_packets(APID, seq, sec, pixels)  # also compiles the kernels
    mb = stream.size / 1e6
    decode(stream[:4122]).payloads()  # compile decode kernels before timing
    t_encode = best_of(lambda: encode_packets(APID, seq, sec, pixels))

    definition = ccsdspy_definition()
    logging.getLogger("ccsdspy").setLevel(logging.ERROR)  # after import: it sets its own
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "exposure.bin"
        path.write_bytes(stream.tobytes())

        def ours() -> np.ndarray:
            table = decode_file(path)
            assert table.crc_ok.all()
            return table.payloads()

        def theirs() -> dict[str, np.ndarray]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return definition.load(str(path))

        np.testing.assert_array_equal(ours().view(">u2"), theirs()["pixels"])
        t_ours = best_of(ours)
        t_mem = best_of(lambda: decode(stream).payloads())
        t_theirs = best_of(theirs)

    print(f"stream: {ROWS * GROUPS} packets x {stream.size // (ROWS * GROUPS)} bytes = {mb:.1f} MB")
    print(f"{'operation':<52}{'time (s)':>10}{'MB/s':>10}")
    rows = [
        ("obsflow encode_packets (uint16 pixels -> packets+CRC)", t_encode),
        ("obsflow decode_file + CRC check + payloads()", t_ours),
        ("obsflow decode (in memory) + CRC check + payloads()", t_mem),
        ("ccsdspy FixedLength.load (no CRC check)", t_theirs),
    ]
    for label, seconds in rows:
        print(f"{label:<52}{seconds:>10.3f}{mb / seconds:>10.0f}")
    print(f"ratio obsflow/ccsdspy (file decode, MB/s): {t_theirs / t_ours:.1f}x")


if __name__ == "__main__":
    main()
