"""keep_freed_memory: a freed full-frame plane is reused, not faulted in again."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

_PROBE = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    from obsflow.procmem import keep_freed_memory

    took = keep_freed_memory() if sys.argv[1] == "keep" else None
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    planes = [np.ones((2048, 2048), np.float32) for _ in range(6)]  # 16 MiB each: a job's planes
    del planes
    before = faults()
    for _ in range(4):  # four more "exposures" allocating and filling the same planes
        planes = [np.ones((2048, 2048), np.float32) for _ in range(6)]
        del planes
    print(json.dumps({"took": took, "faults": faults() - before}))
""")


def _faults(mode: str) -> dict[str, object]:
    run = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True,
                         timeout=60, check=True)
    return dict(json.loads(run.stdout.strip().splitlines()[-1]))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_freed_planes_are_reused_instead_of_faulted_in_again() -> None:
    default, kept = _faults("default"), _faults("keep")
    pages = 4 * 6 * 2048 * 2048 * 4 // 4096  # every page of the four rounds
    assert kept["took"] is True
    # glibc by default trims the heap and unmaps big blocks: pages faulted in again
    assert int(str(default["faults"])) > pages // 10
    assert int(str(kept["faults"])) < pages // 100  # kept in the heap: no new page
