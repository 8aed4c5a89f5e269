"""The names of the downlink faults the simulator can switch on (see :mod:`.downlink`).

Kept apart from the fault machinery so the command line can list them
without importing the simulator.
"""

from __future__ import annotations

from obsflow.exceptions import UnknownOptionError

__all__ = ["FAULTS", "parse_faults"]

FAULTS = ("reorder", "split", "duplicate", "drop", "bitflip", "truncate")


def parse_faults(spec: str) -> frozenset[str]:
    """``none``, ``all`` or a comma-separated list of :data:`FAULTS`."""
    spec = spec.strip().lower()
    if spec in ("", "none"):
        return frozenset()
    if spec == "all":
        return frozenset(FAULTS)
    names = frozenset(s.strip() for s in spec.split(",") if s.strip())
    for name in names:
        if name not in FAULTS:
            raise UnknownOptionError("fault", name, (*FAULTS, "all", "none"))
    return names
