"""Benchmark the archive: cone search over 1,000,000 exposures, downloads over loopback.

1. A site (SQLite) is created and 1,000,000 exposures (uniform on the sky)
   plus one product each are bulk-inserted into its catalog.
2. Cone search: 200 random cones (radius 0.05-0.5 deg) through
   ``search_products`` (the function behind ``/api/search``: access policy,
   count and first page); p50/p95 latency.  Anchor: the same exact cone
   test without the HEALPix prefilter (a full scan), 5 cones.
3. Download: a 512 MiB product is served by ``obsflow serve`` (a separate
   process) and downloaded over 127.0.0.1 with httpx; the first download
   includes the sha256 check, later ones are best of 3.  Anchor: the page-cache
   read rate of the file and a raw ``socket.sendfile`` loopback copy.

Run with ``.venv/bin/python benchmarks/bench_archive.py`` (about 2 minutes).
"""

from __future__ import annotations

import hashlib
import math
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
from sqlalchemy import and_, select

from obsflow.archive.context import Archive
from obsflow.archive.footprints import coverage_cells
from obsflow.archive.policy import ANONYMOUS
from obsflow.archive.schema import Exposure, Product
from obsflow.archive.search import Cone, SearchQuery, search_products
from obsflow.archive.sky import Footprint, healpix_index, unit_vector
from obsflow.site import init_site

N = 1_000_000
SIZE = 512 << 20
LATER = datetime(2031, 1, 1)


EXPOSURE_COLUMNS = ("id", "obs_id", "program", "observation", "visit", "exposure", "detector",
                    "facility_name", "instrument_name", "filter", "readpatt", "subarray",
                    "target_name", "s_ra", "s_dec", "cx", "cy", "cz", "hpx", "s_fov", "s_region",
                    "t_min", "t_max", "t_exptime", "release_date")
PRODUCT_COLUMNS = ("id", "product_id", "exposure_id", "kind", "level", "calib_level",
                   "dataproduct_type", "version", "is_latest", "filename", "path", "size",
                   "sha256", "content_type", "created", "software_version", "recipe",
                   "reference_files", "uuid", "run", "provenance")
_WHEN = "2026-01-01 00:00:00.000000"
Rows = list[tuple[object, ...]]


def catalog_chunks(n: int, footprints: Callable[[np.ndarray, np.ndarray], list[Footprint]]
                   | None = None, chunk: int = 50_000) -> Iterator[tuple[Rows, Rows, Rows]]:
    """``n`` exposures uniform on the sky, in chunks of (exposure rows, footprint-cell rows,
    product rows), every column of :data:`EXPOSURE_COLUMNS` / :data:`PRODUCT_COLUMNS`.

    ``footprints`` (RA, Dec arrays of a chunk, degrees -> their footprints)
    gives each exposure its ``s_region``, field of view and HEALPix cells; by
    default an exposure has only its centre (fov 0.018 deg, no region).
    """
    rng = np.random.default_rng(1)
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    hpx = healpix_index(ra, dec)
    a, d = np.radians(ra), np.radians(dec)
    cx, cy, cz = np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)
    for lo in range(0, n, chunk):
        hi = min(lo + chunk, n)
        shapes = footprints(ra[lo:hi], dec[lo:hi]) if footprints else None
        rows: Rows = []
        cells: Rows = []
        for i in range(lo, hi):
            fov, region = (shapes[i - lo].fov, shapes[i - lo].s_region) if shapes else (0.018, "")
            rows.append((i + 1, f"b{i:07d}", "B1", 1, 1, i, "D1", "OBSFLOW-W", "WIRCAM", "F150W",
                         "RAPID", "FULL", f"T{i % 1000}", float(ra[i]), float(dec[i]),
                         float(cx[i]), float(cy[i]), float(cz[i]), int(hpx[i]), fov, region,
                         61000.0, 61000.01, 864.0, _WHEN))
            if shapes:
                cells.extend((i + 1, c) for c in coverage_cells(shapes[i - lo]))
        products: Rows = [
            (r[0], f"b{int(r[0]) - 1:07d}_cal_v1", r[0], "cal", "2b", 2, "image", 1, True,
             "f.fits", "f.fits", 1, "", "application/fits", _WHEN, "", "", "[]",
             f"{int(r[0]) - 1:032x}", "bench", "{}") for r in rows]
        yield rows, cells, products


def build_catalog(db: Path | str, n: int = N,
                  footprints: Callable[[np.ndarray, np.ndarray], list[Footprint]] | None = None
                  ) -> float:
    """Bulk-insert ``n`` exposures (uniform on the sky) and a product each; returns seconds.

    ``db`` is the SQLite file of a site, or the SQLAlchemy URL of a PostgreSQL
    database whose schema ``init_site`` made (there rows go in by ``COPY``);
    ``footprints`` as :func:`catalog_chunks`.
    """
    start = time.perf_counter()
    if isinstance(db, str) and db.startswith("postgresql"):
        _build_postgres(db, catalog_chunks(n, footprints))
    else:
        _build_sqlite(Path(db), catalog_chunks(n, footprints))
    return time.perf_counter() - start


def _insert(table: str, columns: tuple[str, ...], mark: str = "?") -> str:
    return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
            f"({', '.join([mark] * len(columns))})")


def _build_sqlite(db: Path, chunks: Iterator[tuple[Rows, Rows, Rows]]) -> None:
    con = sqlite3.connect(db)
    con.execute("PRAGMA synchronous=OFF")
    con.execute("INSERT INTO programs VALUES ('B1', 'PI', 'bench', 0, '2026-01-01 00:00:00')")
    con.execute("INSERT INTO runs VALUES ('bench', 'manual', '2026-01-01 00:00:00', '')")
    for rows, cells, products in chunks:
        con.executemany(_insert("exposures", EXPOSURE_COLUMNS), rows)
        con.executemany("INSERT INTO footprint_cells (exposure_id, cell) VALUES (?, ?)", cells)
        con.executemany(_insert("products", PRODUCT_COLUMNS), products)
        con.commit()
    con.execute("ANALYZE")
    con.close()


def _build_postgres(url: str, chunks: Iterator[tuple[Rows, Rows, Rows]]) -> None:
    """The same rows into PostgreSQL with ``COPY ... FROM STDIN``, one transaction per chunk,
    then ``VACUUM ANALYZE`` (statistics and the visibility map of index-only scans)."""
    import psycopg
    from sqlalchemy.engine import make_url

    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as con:
        con.execute("INSERT INTO programs VALUES ('B1', 'PI', 'bench', 0, '2026-01-01')")
        con.execute("INSERT INTO runs VALUES ('bench', 'manual', '2026-01-01', '')")
        con.commit()
        for rows, cells, products in chunks:
            with con.cursor() as cur:
                for table, columns, data in (("exposures", EXPOSURE_COLUMNS, rows),
                                             ("footprint_cells", ("exposure_id", "cell"), cells),
                                             ("products", PRODUCT_COLUMNS, products)):
                    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                        for row in data:
                            copy.write_row(row)
            con.commit()
        con.autocommit = True
        con.execute("VACUUM ANALYZE")


def cone_latencies(archive: Archive, cones: list[Cone]) -> np.ndarray:
    times = []
    with archive.session() as session:
        for cone in cones:
            t0 = time.perf_counter()
            search_products(session, SearchQuery(cone=cone, page_size=100), ANONYMOUS, LATER)
            times.append(time.perf_counter() - t0)
    return np.array(times) * 1e3


def full_scan(archive: Archive, cones: list[Cone]) -> np.ndarray:
    times = []
    with archive.session() as session:
        for cone in cones:
            x, y, z = unit_vector(cone.ra, cone.dec)
            exact = Exposure.cx * x + Exposure.cy * y + Exposure.cz * z >= math.cos(
                math.radians(cone.radius))
            t0 = time.perf_counter()
            session.execute(select(Product.product_id).join(Exposure, Product.exposure_id ==
                                                            Exposure.id).where(and_(exact))).all()
            times.append(time.perf_counter() - t0)
    return np.array(times) * 1e3


def add_big_product(archive: Archive) -> str:
    key = "B1/001/v1/big_cal.fits"
    path = archive.settings.store.local_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    block = np.random.default_rng(2).bytes(1 << 20)
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        for _ in range(SIZE >> 20):
            fh.write(block)
            digest.update(block)
    with archive.session() as session, session.begin():
        row = session.get(Product, 1)
        assert row is not None
        row.path, row.size, row.sha256, row.filename = key, SIZE, digest.hexdigest(), "big.fits"
        return row.product_id


def download_rate(url: str) -> float:
    t0 = time.perf_counter()
    got = 0
    with httpx.stream("GET", url, timeout=120) as r:
        r.raise_for_status()
        for chunk in r.iter_raw(1 << 20):
            got += len(chunk)
    assert got == SIZE
    return SIZE / (time.perf_counter() - t0) / 1e6


def file_read_rate(path: Path) -> float:
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as fh:
        while fh.read(1 << 20):
            pass
    return SIZE / (time.perf_counter() - t0) / 1e6


def sendfile_rate(path: Path) -> float:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def send() -> None:
        conn, _ = server.accept()
        with conn, open(path, "rb") as fh:
            conn.sendfile(fh)

    thread = threading.Thread(target=send)
    thread.start()
    t0 = time.perf_counter()
    got = 0
    with socket.create_connection(("127.0.0.1", port)) as client:
        while data := client.recv(1 << 20):
            got += len(data)
    thread.join()
    server.close()
    assert got == SIZE
    return SIZE / (time.perf_counter() - t0) / 1e6


def serve(root: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "obsflow", "serve", "--site", str(root),
                             "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    for _ in range(400):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health").status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError("obsflow serve did not start")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = init_site(Path(tmp) / "site", profile="webb_like")
        archive = Archive.from_site(cfg)
        print(f"bulk insert of {N:,} exposures + products: "
              f"{build_catalog(Path(cfg.database_url.removeprefix('sqlite:///'))):.1f} s")
        rng = np.random.default_rng(3)
        cones = [Cone(float(rng.uniform(0, 360)),
                      float(np.degrees(np.arcsin(rng.uniform(-1, 1)))),
                      float(rng.uniform(0.05, 0.5))) for _ in range(200)]
        cone_latencies(archive, cones[:10])  # warm the page cache
        lat = cone_latencies(archive, cones)
        print(f"cone search (200 cones): p50 {np.percentile(lat, 50):.2f} ms, "
              f"p95 {np.percentile(lat, 95):.2f} ms, max {lat.max():.2f} ms (target p95 <= 50)")
        scan = full_scan(archive, cones[:5])
        print(f"anchor, full-scan exact cone test: median {np.median(scan):.0f} ms")
        product_id = add_big_product(archive)
        big = archive.settings.store.local_path("B1/001/v1/big_cal.fits")
        archive.close()
        port = int(os.environ.get("BENCH_PORT", "18765"))
        proc = serve(cfg.root, port)
        try:
            url = f"http://127.0.0.1:{port}/api/products/{product_id}/download"
            first = download_rate(url)
            best = max(download_rate(url) for _ in range(3))
        finally:
            proc.terminate()
            proc.wait(10)
        print(f"download 512 MiB over loopback: first (with sha256 check) {first:.0f} MB/s, "
              f"best of 3 {best:.0f} MB/s (target >= 500)")
        print(f"anchor, file read (page cache): {file_read_rate(big):.0f} MB/s; "
              f"raw socket.sendfile loopback: {sendfile_rate(big):.0f} MB/s")


if __name__ == "__main__":
    main()
