"""Every error obsflow raises is an ObsflowError, defined once, imported from one place.

The CLI turns :class:`~obsflow.exceptions.ObsflowError` into one clear line; a
bare built-in raised anywhere in ``src/`` would escape as a traceback.  These
tests read the source (AST), so a new ``raise ValueError(...)`` fails here.
"""

from __future__ import annotations

import ast
import builtins
import inspect
from pathlib import Path

import obsflow.exceptions as exc_module
from obsflow.exceptions import ObsflowError

SRC = Path(exc_module.__file__).parent
BUILTIN_EXCEPTIONS = {name for name, value in vars(builtins).items()
                      if isinstance(value, type) and issubclass(value, BaseException)}
# control flow handed to frameworks, never shown to a user as an error; AttributeError is
# what a package's module __getattr__ (PEP 562, obsflow._lazy) must raise for a missing name
ALLOWED_BUILTINS = {"SystemExit", "KeyboardInterrupt", "StopIteration", "GeneratorExit",
                    "AttributeError"}


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(p, ast.parse(p.read_text(), filename=str(p))) for p in sorted(SRC.rglob("*.py"))]


def _raised_name(node: ast.Raise) -> str | None:
    target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
    return target.id if isinstance(target, ast.Name) else None


def test_no_bare_builtin_is_raised() -> None:
    found = []
    for path, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and node.exc is not None:
                name = _raised_name(node)
                if name in BUILTIN_EXCEPTIONS - ALLOWED_BUILTINS:
                    found.append(f"{path.relative_to(SRC)}:{node.lineno} raise {name}")
    assert found == [], "bare built-ins raised (use an obsflow.exceptions class):\n" + \
        "\n".join(found)


def test_every_error_class_lives_in_obsflow_exceptions() -> None:
    elsewhere = []
    for path, tree in _modules():
        if path.name == "exceptions.py" and path.parent == SRC:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(
                    isinstance(b, ast.Name) and b.id.endswith(("Error", "Exception"))
                    for b in node.bases):
                elsewhere.append(f"{path.relative_to(SRC)}:{node.lineno} class {node.name}")
    assert elsewhere == []


def test_errors_have_one_import_path() -> None:
    """No module re-exports an error (``__all__``) and no shim module exists."""
    reexports = []
    for path, tree in _modules():
        if path.name == "exceptions.py" and path.parent == SRC:
            continue
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
                names = [e.value for e in getattr(node.value, "elts", [])
                         if isinstance(e, ast.Constant)]
                reexports += [f"{path.relative_to(SRC)}: {n}" for n in names
                              if str(n).endswith("Error")]
    assert reexports == []
    assert not (SRC / "archive" / "errors.py").exists()
    assert not (SRC / "orchestrate" / "errors.py").exists()


def test_each_error_is_an_obsflow_error_and_a_builtin() -> None:
    classes = [c for _, c in inspect.getmembers(exc_module, inspect.isclass)
               if issubclass(c, BaseException) and c.__module__ == exc_module.__name__]
    assert set(exc_module.__all__) == {c.__name__ for c in classes}
    for cls in classes:
        if cls is ObsflowError:
            continue
        assert issubclass(cls, ObsflowError), cls
        builtin_bases = [b for b in cls.__mro__
                         if b.__module__ == "builtins" and b not in (Exception, BaseException,
                                                                     object)]
        assert builtin_bases, f"{cls.__name__} inherits no matching built-in"
