"""Benchmark the VO endpoints: SIA2 and TAP small queries over 1,000,000 exposures (SQLite).

1. The catalog of ``bench_archive.py`` (1,000,000 exposures uniform on the
   sky, one product each) is bulk-inserted into a site's SQLite database.
2. ``obsflow serve`` (a separate process) serves it on 127.0.0.1; one
   keep-alive httpx client sends, for 200 random cones (radius 0.05-0.5 deg):
   * SIA2: ``GET /vo/sia2/query?POS=CIRCLE ra dec r``;
   * TAP: ``POST /vo/tap/sync`` with ``SELECT TOP 100 * FROM ivoa.ObsCore WHERE
     CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', ra, dec, r)) = 1``;
   each answer is a full ObsCore VOTable, parsed to count its rows.
   p50/p95 latency, end to end (request, policy, query, VOTable, transfer).
3. Anchors in the same run: ``GET /api/health`` (the HTTP round-trip floor)
   and ``GET /api/search`` JSON cone searches over the same cones.

Run with ``.venv/bin/python benchmarks/bench_vo.py`` (about 1 minute).
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
from astropy.io.votable import parse_single_table

sys.path.insert(0, str(Path(__file__).parent))
from bench_archive import N, build_catalog, serve  # noqa: E402
from obsflow.archive.context import Archive  # noqa: E402
from obsflow.site import init_site  # noqa: E402

CONES = 200


def _timed(client: httpx.Client, send: Callable[[httpx.Client], httpx.Response],
           count: Callable[[httpx.Response], int]) -> tuple[float, int]:
    t0 = time.perf_counter()
    response = send(client)
    response.raise_for_status()
    rows = count(response)
    return (time.perf_counter() - t0) * 1e3, rows


def _votable_rows(response: httpx.Response) -> int:
    return len(parse_single_table(io.BytesIO(response.content)).array)


def _report(name: str, results: list[tuple[float, int]], target: str) -> None:
    lat = np.array([r[0] for r in results])
    rows = np.array([r[1] for r in results])
    print(f"{name}: p50 {np.percentile(lat, 50):.1f} ms, p95 {np.percentile(lat, 95):.1f} ms, "
          f"max {lat.max():.1f} ms; rows per answer mean {rows.mean():.1f}, max {rows.max()}"
          f"{'  (target ' + target + ')' if target else ''}")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = init_site(Path(tmp) / "site", profile="webb_like")
        Archive.from_site(cfg).close()
        seconds = build_catalog(Path(cfg.database_url.removeprefix("sqlite:///")))
        print(f"bulk insert of {N:,} exposures + products: {seconds:.1f} s")
        rng = np.random.default_rng(4)
        cones = [(float(rng.uniform(0, 360)), float(np.degrees(np.arcsin(rng.uniform(-1, 1)))),
                  float(rng.uniform(0.05, 0.5))) for _ in range(CONES)]
        port = int(os.environ.get("BENCH_PORT", "18766"))
        proc = serve(cfg.root, port)
        base = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=base, timeout=60) as client:
                run(client, cones)
        finally:
            proc.terminate()
            proc.wait(10)


def run(client: httpx.Client, cones: list[tuple[float, float, float]]) -> None:
    def sia2(c: tuple[float, float, float]) -> Callable[[httpx.Client], httpx.Response]:
        return lambda cl: cl.get("/vo/sia2/query", params={"POS": "CIRCLE {} {} {}".format(*c)})

    def tap(c: tuple[float, float, float]) -> Callable[[httpx.Client], httpx.Response]:
        adql = ("SELECT TOP 100 * FROM ivoa.ObsCore WHERE CONTAINS(POINT('ICRS', s_ra, s_dec), "
                "CIRCLE('ICRS', {}, {}, {})) = 1".format(*c))
        return lambda cl: cl.post("/vo/tap/sync", data={"REQUEST": "doQuery", "LANG": "ADQL",
                                                         "QUERY": adql})

    def api(c: tuple[float, float, float]) -> Callable[[httpx.Client], httpx.Response]:
        return lambda cl: cl.get("/api/search", params=dict(zip(("ra", "dec", "radius"), c,
                                                                strict=True)))

    for c in cones[:10]:  # warm the page cache and the server
        _timed(client, sia2(c), _votable_rows)
        _timed(client, tap(c), _votable_rows)
    _report("SIA2 cone (200 cones, r 0.05-0.5 deg)",
            [_timed(client, sia2(c), _votable_rows) for c in cones], "p95 <= 100 ms")
    _report("TAP CONTAINS(POINT, CIRCLE) TOP 100 * (same cones)",
            [_timed(client, tap(c), _votable_rows) for c in cones], "p95 <= 100 ms")
    _report("anchor, /api/search JSON cone (same cones)",
            [_timed(client, api(c), lambda r: len(r.json()["results"])) for c in cones], "")
    _report("anchor, /api/health round trip",
            [_timed(client, lambda cl: cl.get("/api/health"), lambda r: 0) for _ in cones], "")


if __name__ == "__main__":
    main()
