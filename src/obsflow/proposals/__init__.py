"""Proposals: program files (TOML) and their check against the observatory profile.

See :mod:`obsflow.proposals.program` and docs/planning.md; two example
programs ship in ``obsflow/proposals/examples/`` (:func:`example_programs`).
"""

from importlib import resources
from pathlib import Path

from obsflow.proposals.program import Program, TargetRequest, check_program, load_program

__all__ = ["Program", "TargetRequest", "check_program", "example_programs", "load_program"]


def example_programs() -> list[Path]:
    """Paths of the example program files shipped with obsflow."""
    folder = resources.files("obsflow.proposals") / "examples"
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".toml"))
