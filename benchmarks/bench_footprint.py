"""Benchmark the footprint search: SIA2 POS and cone searches over many exposures (SQLite or PostgreSQL).

1. ``N`` exposures (default 1,000,000; env ``BENCH_N``), uniform on the sky,
   each a square footprint of 0.02-0.1 deg at a random position angle (its
   ``s_region`` polygon, counter-clockwise, as registration stores it) with its
   HEALPix cells from :func:`obsflow.archive.footprints.coverage_cells`, and
   one product each, are bulk-inserted into a site's database.
2. ``obsflow serve`` (a separate process) serves it on 127.0.0.1; one
   keep-alive httpx client sends, for 200 random cones (radius 0.05-0.5 deg):
   * SIA2 ``POS=CIRCLE ra dec r`` (footprint overlap), ``POS=POLYGON`` (the
     square inscribed in the same cone) and ``POS=RANGE`` (the RA/Dec box of
     the same size), each answer a full ObsCore VOTable;
   * TAP ``1=INTERSECTS(s_region, CIRCLE)``, ``INTERSECTS(POLYGON, s_region)=1``
     (the SIA2 squares, the shape first) and ``1=CONTAINS(POINT(centre),
     s_region)`` (through the same footprint-cell prefilter);
   * ``/api/search`` JSON cone (footprint overlap).
   Anchor in the same run: TAP ``CONTAINS(POINT(s_ra, s_dec), CIRCLE(...))``
   over the same cones, the centre-only cone test.  Every kind runs on one
   cone before the next cone (the shared machine's drift falls on all alike);
   every row's ratio to the anchor, and the load average before and after.
   p50/p95 latency, end to end; the CPU time of ``obsflow serve`` (and, on
   PostgreSQL, of its database backends) per request beside the wall time.

On PostgreSQL (``--database-url`` or env ``BENCH_DATABASE_URL``, a database
with pg_sphere): the site's schema is made in a fresh schema of that
database (dropped at the end; ``--schema NAME --keep`` builds it once and
reuses it), the rows go in by ``COPY``, and ``obsflow serve`` runs on it.

Run with ``.venv/bin/python benchmarks/bench_footprint.py [--database-url URL]``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
from astropy import units as u
from astropy.coordinates import offset_by

sys.path.insert(0, str(Path(__file__).parent))
from bench_archive import build_catalog, serve  # noqa: E402
from bench_vo import (  # noqa: E402
    Cone3,
    Send,
    _report,
    _timed,
    _votable_rows,
    api_cone_request,
    api_rows,
    sia2_request,
    tap_centre_request,
)
from obsflow.archive.context import Archive  # noqa: E402
from obsflow.archive.sky import Footprint  # noqa: E402
from obsflow.site import init_site  # noqa: E402

N = int(os.environ.get("BENCH_N", "1000000"))
CONES = 200


def _footprints(ra: np.ndarray, dec: np.ndarray) -> list[Footprint]:
    """Square footprints of 0.02-0.1 deg at random position angles: corners at
    ``size / sqrt(2)`` from the centre at ``pa + 45 + 90 k`` (counter-clockwise on
    the sky), as registration stores them."""
    rng = np.random.default_rng(len(ra) + int(ra[0] * 1e6))
    size, pa = rng.uniform(0.02, 0.1, len(ra)), rng.uniform(0, 360, len(ra))
    corners = [offset_by(np.radians(ra), np.radians(dec), np.radians(pa + 45 + 90 * k),
                         np.radians(size / math.sqrt(2))) for k in range(4)]
    cra = np.stack([c[0].to_value(u.deg) % 360.0 for c in corners], axis=1)
    cdec = np.stack([c[1].to_value(u.deg) for c in corners], axis=1)
    return [Footprint(float(ra[i]), float(dec[i]), float(size[i] * math.sqrt(2)),
                      tuple(zip(cra[i].tolist(), cdec[i].tolist(), strict=True)))
            for i in range(len(ra))]


def _polygon(c: tuple[float, float, float]) -> str:
    ra, dec, r = c
    half = r / math.sqrt(2)
    w = half / max(math.cos(math.radians(dec)), 0.05)
    pts = [(ra - w, dec - half), (ra + w, dec - half), (ra + w, dec + half), (ra - w, dec + half)]
    return "POLYGON " + " ".join(f"{a % 360:.6f} {max(min(d, 90), -90):.6f}" for a, d in pts)


def _range(c: tuple[float, float, float]) -> str:
    ra, dec, r = c
    w = min(r / max(math.cos(math.radians(dec)), 0.05), 179.0)
    return (f"RANGE {(ra - w) % 360:.6f} {(ra + w) % 360:.6f} {max(dec - r, -90):.6f} "
            f"{min(dec + r, 90):.6f}")


def _tap(adql: str) -> Send:
    return lambda cl: cl.post("/vo/tap/sync", data={"REQUEST": "doQuery", "LANG": "ADQL",
                                                     "QUERY": adql})


def tap_intersects_circle(c: Cone3) -> Send:
    """TAP ``1=INTERSECTS(s_region, CIRCLE)``: footprints overlapping the cone."""
    return _tap("SELECT * FROM ivoa.ObsCore WHERE "
                "1 = INTERSECTS(s_region, CIRCLE('ICRS', {}, {}, {}))".format(*c))


def tap_intersects_polygon(c: Cone3) -> Send:
    """TAP ``INTERSECTS(POLYGON, s_region) = 1`` (the shape first) with the SIA2 square."""
    values = ", ".join(_polygon(c).split()[1:])
    return _tap(f"SELECT * FROM ivoa.ObsCore WHERE INTERSECTS(POLYGON('ICRS', {values}), "
                "s_region) = 1")


def tap_contains_point(c: Cone3) -> Send:
    """TAP ``1=CONTAINS(POINT(cone centre), s_region)``: footprints around a position."""
    return _tap("SELECT * FROM ivoa.ObsCore WHERE "
                "1 = CONTAINS(POINT('ICRS', {}, {}), s_region)".format(*c[:2]))


def _summary(name: str, results: list[tuple[float, int]]) -> tuple[float, float]:
    """Print one row's latencies; its (p50, p95) ms."""
    _report(name, results, "p95 <= 100 ms")
    lat = np.array([r[0] for r in results])
    return float(np.percentile(lat, 50)), float(np.percentile(lat, 95))


ANCHOR = "anchor, TAP CONTAINS(POINT(s_ra, s_dec), CIRCLE) centre-only"


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds so far of the processes ``pids`` (gone ones count 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def _backends(base: str | None) -> list[int]:
    """The PostgreSQL backends serving the benchmark (application_name ``bench_footprint``)."""
    if base is None:
        return []
    from sqlalchemy import create_engine, text

    admin = create_engine(base)
    with admin.connect() as conn:
        pids = [int(r[0]) for r in conn.execute(text(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'bench_footprint'"))]
    admin.dispose()
    return pids


def run(client: httpx.Client, cones: list[Cone3], server: int = 0,
        database: str | None = None) -> None:
    """Every kind of search for one cone, then the next cone: the machine's drift (it is
    shared) falls on every row alike, and each row's ratio to the anchor is fair."""
    kinds: dict[str, tuple[Callable[[Cone3], Send], Callable[[httpx.Response], int]]] = {
        ANCHOR: (tap_centre_request, _votable_rows),
        f"SIA2 POS=CIRCLE footprint overlap ({CONES} cones, r 0.05-0.5 deg)":
            (lambda c: sia2_request("CIRCLE {} {} {}".format(*c)), _votable_rows),
        "SIA2 POS=POLYGON footprint overlap (square in the same cones)":
            (lambda c: sia2_request(_polygon(c)), _votable_rows),
        "SIA2 POS=RANGE footprint overlap (box around the same cones)":
            (lambda c: sia2_request(_range(c)), _votable_rows),
        "TAP 1=INTERSECTS(s_region, CIRCLE) (same cones)": (tap_intersects_circle, _votable_rows),
        "TAP INTERSECTS(POLYGON, s_region)=1 (the SIA2 squares)":
            (tap_intersects_polygon, _votable_rows),
        "TAP 1=CONTAINS(POINT(cone centre), s_region)": (tap_contains_point, _votable_rows),
        "/api/search JSON cone, footprint overlap (same cones)": (api_cone_request, api_rows),
    }
    for c in cones[:10]:  # warm the page cache and the server
        for make, count in kinds.values():
            _timed(client, make(c), count)
    print(f"load average before: {os.getloadavg()}")
    pids = [server, *_backends(database)] if server else []
    cpu0, wall0 = _cpu_seconds(pids), time.perf_counter()
    results: dict[str, list[tuple[float, int]]] = {name: [] for name in kinds}
    for c in cones:
        for name, (make, count) in kinds.items():
            results[name].append(_timed(client, make(c), count))
    wall, requests = time.perf_counter() - wall0, len(cones) * len(kinds)
    print(f"load average after: {os.getloadavg()}")
    if pids:
        cpu = _cpu_seconds(pids) - cpu0
        print(f"CPU of the server{' and its PostgreSQL backends' if database else ''}: "
              f"{cpu / requests * 1e3:.1f} ms per request (all kinds), wall "
              f"{wall / requests * 1e3:.1f} ms per request")
    anchor = _summary(ANCHOR, results.pop(ANCHOR))
    ratios = [(name, *_summary(name, got)) for name, got in results.items()]
    for name, p50, p95 in ratios:
        print(f"  {name}: {p50 / anchor[0]:.2f} x anchor at p50, {p95 / anchor[1]:.2f} x at p95")


def _postgres_schema(base: str, schema: str | None) -> tuple[str, str, bool]:
    """A schema of the PostgreSQL database at ``base`` for the benchmark (a fresh one, or
    ``schema`` when it exists): (URL with it first on the search path, its name, whether it
    still needs its rows)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = schema or f"bench_footprint_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(text("SELECT 1 FROM information_schema.schemata WHERE "
                                   "schema_name = :s"), {"s": name}).first() is not None
        if not exists:
            conn.execute(text(f"CREATE SCHEMA {name}"))
    admin.dispose()
    url = make_url(base).update_query_dict({"options": f"-csearch_path={name},public",
                                            "application_name": "bench_footprint"})
    return url.render_as_string(hide_password=False), name, not exists


def _drop_schema(base: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {name} CASCADE"))
    admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"),
                        help="a PostgreSQL (with pg_sphere) database to run on, as a "
                             "SQLAlchemy URL (env BENCH_DATABASE_URL); default SQLite")
    parser.add_argument("--schema", help="PostgreSQL: reuse this schema (kept) if it exists, "
                                         "else build it under this name")
    parser.add_argument("--keep", action="store_true",
                        help="PostgreSQL: keep the schema after the run (for --schema)")
    args = parser.parse_args()
    env: dict[str, str] = {}
    schema, build, keep = None, True, args.keep or bool(args.schema)
    if args.database_url:
        url, schema, build = _postgres_schema(args.database_url, args.schema)
        env = {"OBSFLOW_DATABASE__URL": url}
        print(f"PostgreSQL schema {schema} ({'new' if build else 'reused'})")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ.update(env)  # the site and `obsflow serve` (a child) use the database
            cfg = init_site(Path(tmp) / "site", profile="webb_like")
            Archive.from_site(cfg).close()
            if build:
                db = env.get("OBSFLOW_DATABASE__URL") or Path(
                    cfg.database_url.removeprefix("sqlite:///"))
                seconds = build_catalog(db, N, footprints=_footprints)
                print(f"bulk insert of {N:,} exposures with footprints and cells + products: "
                      f"{seconds:.1f} s")
            rng = np.random.default_rng(4)
            cones = [(float(rng.uniform(0, 360)),
                      float(np.degrees(np.arcsin(rng.uniform(-1, 1)))),
                      float(rng.uniform(0.05, 0.5))) for _ in range(CONES)]
            port = int(os.environ.get("BENCH_PORT", "18767"))
            proc = serve(cfg.root, port)
            try:
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                    run(client, cones, proc.pid, args.database_url)
            finally:
                proc.terminate()
                proc.wait(10)
    finally:
        if schema is not None and not keep:
            _drop_schema(args.database_url, schema)


if __name__ == "__main__":
    main()
