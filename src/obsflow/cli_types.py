"""Click parameter types shared by the ``obsflow`` commands."""

from __future__ import annotations

import math
from typing import Any

import click

__all__ = ["FiniteFloatRange"]


class FiniteFloatRange(click.FloatRange):
    """A :class:`click.FloatRange` that also refuses ``inf``, ``-inf`` and ``nan``.

    Python's ``float()`` reads those words, and ``nan`` passes every range
    check (it compares false), so a plain FloatRange lets them through.
    """

    name = "finite float range"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Convert ``value`` and check it is a finite number in the range."""
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)
