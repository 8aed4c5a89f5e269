"""Packages that re-export their submodules' names without importing them up front.

A package ``__init__`` that re-exported everything eagerly made every
``import obsflow.<package>.<anything>`` pay for numpy, astropy and numba, and
with them every command of the CLI (``obsflow --help``, ``status``).  With
:func:`lazy_exports` (PEP 562) a name is imported from its submodule the first
time it is read, then kept on the package::

    if TYPE_CHECKING:  # what type checkers and readers see
        from obsflow.ingest.service import ingest_once
    __getattr__, __dir__ = lazy_exports(__name__, {"ingest_once": "service"})
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any],
                                                                     Callable[[], list[str]]]:
    """Module ``__getattr__`` and ``__dir__`` for ``package``: name -> submodule (relative name)."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    sys.modules[package].__class__ = _make_package_class(exports)
    return __getattr__, __dir__


def _make_package_class(exports: Mapping[str, str]) -> type[types.ModuleType]:
    """A module class whose instances do not let a submodule hide a re-exported name.

    Importing ``pkg.decode`` binds the submodule as ``pkg.decode``; when the
    package re-exports a function of that name (``pkg.decode`` the function
    from ``pkg/decode.py``), that binding is skipped so the name still means
    the function, as it did when the package imported it eagerly.
    """

    class LazyPackage(types.ModuleType):
        def __setattr__(self, name: str, value: Any) -> None:
            if (name in exports and isinstance(value, types.ModuleType)
                    and value.__name__ == f"{self.__name__}.{name}"):
                return
            super().__setattr__(name, value)

    return LazyPackage
