"""fsspec stores, previews, and the archive commands."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
from click.testing import CliRunner
from tests.archive.conftest import free_port, live_server, make_archive
from tests.archive.factories import meta, write_product

from obsflow.archive.api import ApiSettings, create_app
from obsflow.archive.previews import preview_array, render_previews, stretch
from obsflow.archive.register import register_product
from obsflow.cli import main
from obsflow.site import init_site

LATER = datetime(2031, 1, 1)


def test_fsspec_memory_store_serves_ranges(db_url: str, tmp_path: Path) -> None:
    archive = make_archive(db_url, f"memory://obsflow-{uuid.uuid4().hex}")
    try:
        path = write_product(tmp_path, meta())
        record = register_product(archive, path)
        assert not archive.settings.store.is_local
        app = create_app(archive, ApiSettings(clock=lambda: LATER))
        with live_server(app) as url:
            base = f"{url}/api/products/{record.product_id}"
            full = httpx.get(f"{base}/download")
            assert full.content == path.read_bytes()
            part = httpx.get(f"{base}/download", headers={"Range": "bytes=10-19"})
            assert (part.status_code, part.content) == (206, path.read_bytes()[10:20])
            assert httpx.get(f"{base}/download", headers={"Range": "bytes=999999-"}
                             ).status_code == 416
            assert httpx.get(f"{base}/preview").headers["content-type"] == "image/png"
    finally:
        archive.close()


def test_preview_functions() -> None:
    ramp = np.zeros((2, 4, 8, 8), np.uint16)
    ramp[0, -1] = 7
    assert np.all(preview_array(ramp) == 7.0)
    ramp_image = np.arange(64.0).reshape(8, 8)
    stretched = stretch(ramp_image)  # all "noise": greys, none clipped white
    assert stretched.dtype == np.uint8 and 0 < stretched.min() and stretched.max() < 255
    assert stretched.max() - stretched.min() > 100
    assert np.all(np.diff(stretched.ravel().astype(int)) >= 0)  # monotonic
    ramp_image[4, 4] = 1e6  # a bright star: white
    assert stretch(ramp_image)[4, 4] == 255
    ramp_image[0, 0] = -1e6  # a hole far below the background: black
    assert stretch(ramp_image)[0, 0] == 0
    assert stretch(np.full((4, 4), np.nan)).max() == 0
    kinds = [r.kind for r in render_previews(np.ones((300, 600)))]
    assert kinds == ["png", "jpeg", "thumb"]
    thumb = render_previews(np.ones((300, 600)))[2]
    assert (thumb.width, thumb.height) == (256, 128)


def test_commands_register_and_serve(tmp_path: Path) -> None:
    root = tmp_path / "site"
    init_site(root, profile="smallsat")
    product = write_product(tmp_path, meta())
    runner = CliRunner()

    def run(*args: str, stdin: str | None = None) -> str:
        result = runner.invoke(main, [*args], input=stdin, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    assert "alice" in run("users", "add", "alice", "--site", str(root), "--password-stdin",
                          stdin="pw\n")
    token = run("tokens", "create", "alice", "--site", str(root), "--days", "30").strip()
    assert token.startswith("obf_")
    run("archive", "program", "add", "01234", "--site", str(root), "--exclusive-months", "12",
        "--pi", "A. Rivera", "--member", "alice")
    assert "added" in run("archive", "add", "--site", str(root), str(product))
    assert "already there" in run("archive", "add", "--site", str(root), str(product))
    assert "1 images of DEEP-FIELD-1" in run("archive", "hips", "--site", str(root))  # released
    bad = runner.invoke(main, ["tokens", "create", "nobody", "--site", str(root)])
    assert bad.exit_code == 2 and "no user 'nobody'" in bad.output
    wide = runner.invoke(main, ["serve", "--site", str(root), "--host", "0.0.0.0"])
    assert wide.exit_code == 2 and "loopback" in wide.output
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "obsflow", "serve", "--site", str(root),
                               "--port", str(port)], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if httpx.get(f"{url}/api/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        whoami = httpx.get(f"{url}/api/whoami", headers={"Authorization": f"Bearer {token}"})
        assert whoami.json() == {"name": "alice", "is_admin": False, "programs": ["01234"]}
        found = httpx.get(f"{url}/api/search", headers={"Authorization": f"Bearer {token}"})
        assert found.json()["total"] == 1
        props = httpx.get(f"{url}/hips/properties")  # serve serves the site's HiPS
        assert props.status_code == 200 and "DEEP-FIELD-1 (cal)" in props.text
        # no trusted proxy configured: a made-up X-Forwarded-For does not dodge the limit
        codes = [httpx.get(f"{url}/api/whoami", headers={
            "Authorization": f"Bearer obf_{'A' * 43}", "X-Forwarded-For": f"192.0.2.{n}"}
        ).status_code for n in range(11)]
        assert codes == [401] * 10 + [429]
        busy = runner.invoke(main, ["serve", "--site", str(root), "--port", str(port)])
        assert busy.exit_code == 2, busy.output
        assert f"127.0.0.1:{port} is already in use" in busy.output and "--port" in busy.output
    finally:
        server.terminate()
        server.wait(10)
