"""The console every command prints its results on.

People copy values out of the tables (product ids, reference file names,
paths), so a value is never cut: on a terminal long values wrap inside their
column (``fold``) instead of ending in an ellipsis, and when the output is
piped or redirected lines are not limited to 80 columns at all.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.rule import Rule
from rich.table import Table

__all__ = ["OutputConsole", "output_console"]

PIPED_WIDTH = 100_000
"""Line width when stdout is not a terminal: wide enough that nothing is wrapped or cut."""

RULE_WIDTH = 100
"""Width of a horizontal rule (a section title) at most: a piped rule is not 100,000 wide."""


class OutputConsole(Console):
    """A rich console whose tables fold long values rather than cutting them."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        """Print like :meth:`rich.console.Console.print`, folding table cells that would be cut."""
        for item in objects:
            if isinstance(item, Table):
                for column in item.columns:
                    if column.overflow == "ellipsis" and not column.no_wrap:
                        column.overflow = "fold"
        super().print(*objects, **kwargs)

    def rule(self, title: Any = "", **kwargs: Any) -> None:
        """A section title across the line, at most :data:`RULE_WIDTH` wide."""
        self.print(Rule(title, **kwargs), width=min(self.width, RULE_WIDTH))


def output_console(*, stderr: bool = False) -> OutputConsole:
    """The console for a command's output (stdout, or stderr for messages)."""
    probe = Console(stderr=stderr)
    width = None if probe.is_terminal else PIPED_WIDTH
    return OutputConsole(stderr=stderr, highlight=False, width=width)
