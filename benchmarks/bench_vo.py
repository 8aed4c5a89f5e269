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


Cone3 = tuple[float, float, float]
"""A cone: RA, Dec, radius, degrees."""
Send = Callable[[httpx.Client], httpx.Response]


def sia2_request(pos: str) -> Send:
    """SIA2 query with ``POS`` (CIRCLE, RANGE or POLYGON)."""
    return lambda cl: cl.get("/vo/sia2/query", params={"POS": pos})


def tap_centre_request(c: Cone3, top: int | None = None) -> Send:
    """TAP sync ``CONTAINS(POINT(s_ra, s_dec), CIRCLE)``: exposures whose centre is in the cone."""
    adql = (f"SELECT {f'TOP {top} ' if top else ''}* FROM ivoa.ObsCore WHERE "
            "CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', {}, {}, {})) = 1".format(*c))
    return lambda cl: cl.post("/vo/tap/sync", data={"REQUEST": "doQuery", "LANG": "ADQL",
                                                     "QUERY": adql})


def api_cone_request(c: Cone3) -> Send:
    """``/api/search`` JSON cone."""
    return lambda cl: cl.get("/api/search", params=dict(zip(("ra", "dec", "radius"), c, strict=True)))


def api_rows(response: httpx.Response) -> int:
    """Results in an ``/api/search`` answer's page."""
    return len(response.json()["results"])


def run(client: httpx.Client, cones: list[Cone3]) -> None:
    def circle(c: Cone3) -> str:
        return "CIRCLE {} {} {}".format(*c)

    for c in cones[:10]:  # warm the page cache and the server
        _timed(client, sia2_request(circle(c)), _votable_rows)
        _timed(client, tap_centre_request(c, 100), _votable_rows)
    _report("SIA2 cone (200 cones, r 0.05-0.5 deg)",
            [_timed(client, sia2_request(circle(c)), _votable_rows) for c in cones], "p95 <= 100 ms")
    _report("TAP CONTAINS(POINT, CIRCLE) TOP 100 * (same cones)",
            [_timed(client, tap_centre_request(c, 100), _votable_rows) for c in cones],
            "p95 <= 100 ms")
    _report("anchor, /api/search JSON cone (same cones)",
            [_timed(client, api_cone_request(c), api_rows) for c in cones], "")
    _report("anchor, /api/health round trip",
            [_timed(client, lambda cl: cl.get("/api/health"), lambda r: 0) for _ in cones], "")


if __name__ == "__main__":
    main()
