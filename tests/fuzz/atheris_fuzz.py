"""Coverage-guided fuzzing of the HTTP engine and the WebSocket frame path with atheris.

Usage: ``python tests/fuzz/atheris_fuzz.py engine|ws [libFuzzer options] [corpus dirs]``
(``make fuzz`` runs both for ``FUZZ_S`` seconds each; ``test_fuzz_atheris.py``
runs a short, bounded pass inside ``make test``). zzz and the parsers under it
are instrumented, so libFuzzer steers towards new branches of the engine, the
chunk-line checker and the WebSocket session. Each input goes through the same
invariant checks as the hypothesis properties (:mod:`harness`); a failed
check is an uncaught ``AssertionError``, which libFuzzer reports as a crash and
saves as ``crash-<sha1>``: copy that file into ``tests/fuzz/corpus/<target>/``
and it becomes a regression test (``test_fuzz_corpus.py`` replays the corpus).
"""

from __future__ import annotations

import os
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

with atheris.instrument_imports(include=["zzz", "harness"]):
    import harness

TARGETS = {"engine": harness.check_engine, "ws": harness.check_ws}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        raise SystemExit(f"usage: {sys.argv[0]} {'|'.join(TARGETS)} [libFuzzer options]")
    check = TARGETS[sys.argv[1]]

    def one_input(data: bytes) -> None:
        check(data)

    atheris.Setup([sys.argv[0], *sys.argv[2:]], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
