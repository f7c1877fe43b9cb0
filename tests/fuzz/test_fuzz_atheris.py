"""A short coverage-guided pass with atheris on each target (skipped without atheris).

The long form is ``make fuzz``. Each pass runs in a subprocess (libFuzzer owns
the process) on a copy of the checked-in corpus, bounded in runs and in time;
a crash fails the test with libFuzzer's report and the path of the input.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris", reason="atheris is in the fuzz extra (make fuzz installs it)")

HERE = Path(__file__).resolve().parent
#: Inputs per target in the short pass, and the time bound that caps it on a busy machine.
SHORT_RUNS = 3000
SHORT_MAX_S = 4
#: Wall-clock bound of the subprocess (start-up and instrumentation included).
PROCESS_TIMEOUT_S = 60


@pytest.mark.parametrize("target", ["engine", "ws"])
def test_short_atheris_pass(target: str, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(HERE / "corpus" / target, corpus)
    result = subprocess.run(
        [sys.executable, str(HERE / "atheris_fuzz.py"), target, f"-runs={SHORT_RUNS}",
         f"-max_total_time={SHORT_MAX_S}", f"-artifact_prefix={tmp_path}/", str(corpus)],
        capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S,
        cwd=HERE.parents[1],
    )
    crashes = sorted(tmp_path.glob("crash-*"))
    assert result.returncode == 0 and not crashes, (
        f"atheris {target}: exit {result.returncode}, inputs {crashes}\n{result.stderr[-4000:]}")
