"""Every input in ``tests/fuzz/corpus/`` replayed through the fuzz checks.

The corpus holds the seeds the coverage-guided fuzzer starts from and every
input it ever found a bug with (named ``crash-*``, kept as regression tests),
so these run on every ``make test`` even where atheris is not installed.
"""

from __future__ import annotations

from pathlib import Path

import harness
import pytest

CORPUS = Path(__file__).resolve().parent / "corpus"
CHECKS = {"engine": harness.check_engine, "ws": harness.check_ws}
INPUTS = sorted((target, path) for target in CHECKS for path in (CORPUS / target).iterdir())


@pytest.mark.parametrize(("target", "path"), INPUTS, ids=[f"{t}/{p.name}" for t, p in INPUTS])
def test_corpus_input(target: str, path: Path) -> None:
    CHECKS[target](path.read_bytes())
