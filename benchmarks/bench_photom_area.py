"""Benchmark photom with and without the pixel-area map (issue 14), one core.

A 2048 x 2048 float32 image (SCI, ERR, VAR_POISSON, VAR_RNOISE, DQ):
``apply_photom(img, p)`` (nominal pixels) against ``apply_photom(img, p, area)``
(webb_like's first detector's relative pixel area, read-only as
``relative_pixel_area`` keeps it); kernels loaded before the clock starts;
best and median of 15 alternating runs, wall and CPU.  Also the one-time cost
of the area map (computed once per detector window and kept).

Run with ``NUMBA_NUM_THREADS=1 .venv/bin/python benchmarks/bench_photom_area.py``.
"""

from __future__ import annotations

import os
import time

import numpy as np

from obsflow.calibrate.image import ImageArrays, apply_photom
from obsflow.models import pointing
from obsflow.profiles import load_profile


def main() -> None:
    det = load_profile("webb_like").instruments[0].detectors[0]
    frame = (det.nx, det.ny, 1, 1, det.nx, det.ny)
    c0, w0 = time.process_time(), time.perf_counter()
    area = pointing.relative_pixel_area(det.distortion, frame)
    print(f"area map {det.nx}x{det.ny}, once per detector window: "
          f"{time.perf_counter() - w0:.3f} s wall, {time.process_time() - c0:.3f} s CPU")
    assert area is not None
    rng = np.random.default_rng(1)
    shape = (det.ny, det.nx)
    img = ImageArrays(*(rng.normal(5.0, 1.0, shape).astype(np.float32) for _ in range(4)),
                      np.zeros(shape, np.uint32))
    apply_photom(img, 0.3)
    apply_photom(img, 0.3, area)  # kernels loaded (or compiled) before timing
    times: dict[str, list[tuple[float, float]]] = {"nominal": [], "with area map": []}
    for _ in range(15):
        for name, args in (("nominal", ()), ("with area map", (area,))):
            c0, w0 = time.process_time(), time.perf_counter()
            apply_photom(img, 0.3, *args)
            times[name].append((time.perf_counter() - w0, time.process_time() - c0))
    print(f"load average {os.getloadavg()}")
    for name, got in times.items():
        wall, cpu = np.array(got).T * 1e3
        print(f"{name}: best {wall.min():.1f} ms wall ({cpu.min():.1f} ms CPU), median "
              f"{np.median(wall):.1f} ms wall ({np.median(cpu):.1f} ms CPU)")
    ratio = np.median([a[1] for a in times["with area map"]]) / np.median(
        [a[1] for a in times["nominal"]])
    print(f"with / without the area map, median CPU: {ratio:.2f}")


if __name__ == "__main__":
    main()
