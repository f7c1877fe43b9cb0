"""glibc malloc thresholds (zzz/backends/_malloc.py): set once, never over the operator's.

Each case runs in a fresh interpreter: ``mallopt`` changes the whole process.
The effect is checked on glibc's behaviour itself: with the dynamic thresholds a
freed 1 MiB block is given back to the kernel (``munmap`` / trim) and the next
one page-faults again; with fixed thresholds the memory stays and is reused.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from zzz.backends import _malloc

GLIBC = _malloc._mallopt() is not None

#: Prints tune_malloc's answer, then the minor page faults of 20 rounds of four
#: 1 MiB ``bytes`` alive at once (four uploads in flight), freed together.
PROBE = r"""
import resource, sys
from zzz.backends._malloc import tune_malloc
print(tune_malloc(int(sys.argv[1]), int(sys.argv[2])))
block = 1024 * 1024
for _ in range(3):
    data = [bytes(block) for _ in range(4)]; del data
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    data = [bytes(block) for _ in range(4)]; del data
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _probe(mmap: int, trim: int, env: dict[str, str] | None = None) -> tuple[str, int]:
    clean = {k: v for k, v in os.environ.items() if k not in _malloc.OPERATOR_SETTINGS}
    result = subprocess.run([sys.executable, "-c", PROBE, str(mmap), str(trim)],
                            env={**clean, **(env or {})}, capture_output=True, text=True,
                            timeout=60, check=True)
    answer, faults = result.stdout.split()
    return answer, int(faults)


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_fixed_thresholds_stop_the_page_faults_of_large_blocks() -> None:
    answer, faults = _probe(4 * 1024 * 1024, 8 * 1024 * 1024)
    assert answer == "True"
    # Untuned, what is freed above the (dynamic, 2 MiB) trim threshold goes back to
    # the kernel and is faulted in again the next round (here about 100 per round).
    default_answer, default_faults = _probe(0, 0)
    assert default_answer == "False"
    assert default_faults >= 20 * 50
    assert faults <= 20 * 5


@pytest.mark.skipif(not GLIBC, reason="glibc only")
@pytest.mark.parametrize("env", [{"MALLOC_TRIM_THRESHOLD_": "131072"},
                                 {"MALLOC_MMAP_THRESHOLD_": "131072"},
                                 {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"}])
def test_the_operators_own_settings_win(env: dict[str, str]) -> None:
    answer, _ = _probe(4 * 1024 * 1024, 8 * 1024 * 1024, env)
    assert answer == "False"


def test_zero_leaves_malloc_alone() -> None:
    assert _malloc.tune_malloc(0, 0) is False
