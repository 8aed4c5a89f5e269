"""The one-line notice before numba compiles the kernels on a fresh install."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from rich.console import Console

from obsflow import kernel_cache
from obsflow.kernel_cache import KERNEL_MODULES, announce_compilation, uncompiled_modules

PACKAGE = Path(kernel_cache.__file__).resolve().parent


def _copy_sources(dest: Path) -> None:
    for relative in KERNEL_MODULES:
        (dest / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PACKAGE / relative, dest / relative)


def test_fresh_install_has_every_module_uncompiled_then_none(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    _copy_sources(tmp_path)
    assert uncompiled_modules(tmp_path) == list(KERNEL_MODULES)
    for relative in KERNEL_MODULES[:3]:  # numba's index file names: <stem>.<function>-<line>.py<ver>.nbi
        cache = (tmp_path / relative).parent / "__pycache__"
        cache.mkdir(exist_ok=True)
        (cache / f"{Path(relative).stem}.kernel-12.py311.nbi").write_bytes(b"")
    assert uncompiled_modules(tmp_path) == list(KERNEL_MODULES[3:])


def test_numba_cache_dir_is_where_the_index_is_looked_for(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _copy_sources(tmp_path / "pkg")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "cache"))
    assert len(uncompiled_modules(tmp_path / "pkg")) == len(KERNEL_MODULES)
    for relative in KERNEL_MODULES:
        source = tmp_path / "pkg" / relative
        folder = tmp_path / "cache" / str(source.parent).lstrip("/")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{source.stem}.f-1.py311.nbi").write_bytes(b"")
    assert uncompiled_modules(tmp_path / "pkg") == []


def test_installed_kernels_are_compiled_after_a_calibration_ran() -> None:
    """The test session has calibrated by now or will: the real package check runs and answers
    consistently with the files on disk."""
    missing = uncompiled_modules()
    for relative in KERNEL_MODULES:
        source = PACKAGE / relative
        has_index = any((source.parent / "__pycache__").glob(f"{source.stem}.*.nbi"))
        assert (relative in missing) == (not has_index)


def test_announcement_is_one_line_only_when_compiling(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    _copy_sources(tmp_path)
    console = Console(record=True, width=200)
    assert announce_compilation(console, tmp_path) is True
    text = console.export_text()
    assert text.count("\n") == 1
    assert f"compiling the numerical kernels ({len(KERNEL_MODULES)} modules)" in text
    assert "about a minute" in text
    for relative in KERNEL_MODULES:
        cache = (tmp_path / relative).parent / "__pycache__"
        cache.mkdir(exist_ok=True)
        (cache / f"{Path(relative).stem}.k-1.py311.nbi").write_bytes(b"")
    assert announce_compilation(console, tmp_path) is False
    assert console.export_text() == ""


def test_the_list_names_every_module_with_cached_kernels() -> None:
    """KERNEL_MODULES is written out (no source scan at run time); it must not drift."""
    found = sorted(path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py")
                   if "njit(cache=True" in path.read_text(encoding="utf-8")
                   and path.name != "kernel_cache.py")
    assert found == sorted(KERNEL_MODULES)
