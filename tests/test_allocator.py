"""export.core.allocator: training processes keep freed buffers instead of faulting them back in."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# A training step's pattern: three 8 MiB buffers alive at once, filled, then all freed;
# 40 steps. Prints the minor page faults they took (each fresh 4 KiB page is one fault).
FAULTS = textwrap.dedent("""
    import resource, sys
    import numpy as np
    if sys.argv[1] == "keep":
        from edgemer.export.core.allocator import keep_freed_buffers
        assert keep_freed_buffers()
    def step():
        a, b, c = np.ones(1 << 20), np.ones(1 << 20), np.ones(1 << 20)
        return a.sum() + b.sum() + c.sum()
    step()  # the first step faults its pages in either way
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(40):
        step()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_freed_buffers_are_reused_without_page_faults():
    default, kept = _faults("default"), _faults("keep")
    # 40 steps x 3 x 2048 pages: glibc's defaults give much of the 24 MiB back after each step (a
    # heap trim) and fault most of it in again on the next
    assert default > 40 * 1000
    assert kept < default / 10


def test_without_glibc_nothing_changes(monkeypatch):
    from edgemer.export.core import allocator

    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator.keep_freed_buffers() is False
