"""The streamed zip download against the same files downloaded one by one, in one run.

An archive of eight public 8 MiB products (2048 x 1024 float32 images),
served by uvicorn on 127.0.0.1 in this process; five rounds, each streaming
``/api/download/zip`` of the eight and then the eight
``/api/products/{id}/download`` one after the other (httpx, bodies counted,
not kept).  Prints the medians and their ratio; ``--chunk BYTES`` changes the
zip's read size (:data:`obsflow.archive.web.bulk.ZIP_CHUNK`).

Command: ``.venv/bin/python benchmarks/bench_zip.py`` (about 30 s).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the product factory and the live server live with the tests

from tests.archive.conftest import live_server, make_archive  # noqa: E402
from tests.archive.factories import meta, write_product  # noqa: E402

from obsflow.archive.api import ApiSettings, create_app  # noqa: E402
from obsflow.archive.register import register_product, register_program  # noqa: E402
from obsflow.archive.web import bulk, routers  # noqa: E402

PRODUCTS = 8
ROUNDS = 5


def _fetch(client: httpx.Client, url: str, params: dict[str, list[str]] | None = None) -> int:
    """Bytes of the body of GET ``url`` (streamed, not kept)."""
    size = 0
    with client.stream("GET", url, params=params) as answer:
        answer.raise_for_status()
        for block in answer.iter_raw():
            size += len(block)
    return size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunk", type=int, default=bulk.ZIP_CHUNK, help="zip read size, bytes")
    bulk.ZIP_CHUNK = parser.parse_args().chunk
    folder = Path(tempfile.mkdtemp(prefix="obsflow-bench-zip-"))
    try:
        archive = make_archive(f"sqlite:///{folder / 'zip.db'}", folder / "store")
        register_program(archive, "03456", exclusive_months=0)
        ids = [register_product(archive, write_product(
            folder / "in", meta(program="03456", target="BENCH", subsize1=2048, subsize2=1024,
                                exposure=n + 1), seed=n)).product_id for n in range(PRODUCTS)]
        app = create_app(archive, ApiSettings(), routers=routers())
        zipped, single = [], []
        with live_server(app) as url, httpx.Client(timeout=300) as client:
            for _ in range(ROUNDS):
                start = time.perf_counter()
                zip_size = _fetch(client, url + "/api/download/zip", {"id": ids})
                zipped.append(time.perf_counter() - start)
                start = time.perf_counter()
                files = sum(_fetch(client, f"{url}/api/products/{pid}/download") for pid in ids)
                single.append(time.perf_counter() - start)
        archive.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    z, s = statistics.median(zipped), statistics.median(single)
    print(f"zip chunk {bulk.ZIP_CHUNK} B: zip of {zip_size / 1e6:.1f} MB in {z:.3f} s "
          f"({zip_size / 1e6 / z:.0f} MB/s); {PRODUCTS} single downloads of {files / 1e6:.1f} MB "
          f"in {s:.3f} s ({files / 1e6 / s:.0f} MB/s); zip / single = {z / s:.2f} "
          f"(medians of {ROUNDS})")


if __name__ == "__main__":
    main()
