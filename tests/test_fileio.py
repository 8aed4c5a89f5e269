"""Atomic writing and its clean-up after a killed writer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from obsflow.fileio import atomic_path, remove_stale_parts


def test_atomic_path_leaves_nothing_on_error(tmp_path: Path) -> None:
    final = tmp_path / "product.fits"
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(final) as tmp:
        tmp.write_bytes(b"whole")
    assert final.read_bytes() == b"whole" and list(tmp_path.iterdir()) == [final]


def test_stale_parts_of_dead_writers_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    stale = tmp_path / f".a_uncal.fits.{dead.stdout.strip()}-7.part"
    live = tmp_path / f".b_uncal.fits.{os.getpid()}.part"
    other = tmp_path / "c.part"
    for path in (stale, live, other):
        path.write_bytes(b"x")
    assert remove_stale_parts(tmp_path) == [stale]
    assert not stale.exists() and live.exists() and other.exists()


def test_two_threads_writing_one_file_use_their_own_temporary_names(tmp_path: Path) -> None:
    import threading

    final = tmp_path / "product.fits"
    both_open = threading.Barrier(2)
    temps: dict[str, Path] = {}
    errors: list[BaseException] = []
    contents = {"a": b"a" * 100_000, "b": b"b" * 100_000}

    def write(name: str) -> None:
        try:
            with atomic_path(final) as tmp:
                temps[name] = tmp
                tmp.write_bytes(contents[name])
                both_open.wait(timeout=10)  # both temporary files exist at this point
                assert tmp.read_bytes() == contents[name]
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(name,)) for name in contents]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert temps["a"] != temps["b"] and temps["a"].parent == temps["b"].parent == tmp_path
    assert all(t.name.startswith(".product.fits.") and t.name.endswith(".part")
               for t in temps.values())
    assert final.read_bytes() in contents.values()
    assert list(tmp_path.iterdir()) == [final]


def test_stale_part_of_a_live_writer_thread_is_kept(tmp_path: Path) -> None:
    import threading

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    with atomic_path(tmp_path / "x.y_cal.fits") as tmp:  # the name atomic_path really uses
        tmp.write_bytes(b"x")
        mine = tmp_path / f".z.fits.{os.getpid()}-{threading.get_native_id()}.part"
        gone = tmp_path / f".x.y_cal.fits.{dead}-{threading.get_native_id()}.part"
        for path in (mine, gone):
            path.write_bytes(b"x")
        assert sorted(remove_stale_parts(tmp_path)) == [gone]
        assert tmp.exists() and mine.exists() and not gone.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [mine.name, "x.y_cal.fits"]
