"""The compression trade-off: ratio and CPU time per response, by codec and level.

Run from the repository root::

    python -m bench.compression            # markdown table on stdout
    python -m bench.compression --repeat 50

Compresses the ~100 KiB JSON document of bench/apps/mw_payload.py (the body the
middleware benchmark serves) once per call, as ``zzz.compress()`` does for a
buffered response, with gzip levels 1/6/9 and, when installed, brotli and zstd
at several levels. CPU time is this thread's (``time.thread_time_ns``), so other
work on a shared machine does not inflate it; the median of ``--repeat`` calls
is reported. ``zzz.compress()`` uses gzip 6, brotli 4 and zstd 3
(zzz/middleware/compress.py); the other rows show what another level would buy.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import time
import zlib
from collections.abc import Callable

from bench.apps.mw_payload import JSON_DOC

#: Levels measured per codec; the starred one is what zzz.compress() uses.
GZIP_LEVELS = (1, 6, 9)
BROTLI_QUALITIES = (1, 4, 6, 9, 11)
ZSTD_LEVELS = (1, 3, 9, 19)
ZZZ_DEFAULTS = {("gzip", 6), ("br", 4), ("zstd", 3)}


def _gzip(level: int) -> Callable[[bytes], bytes]:
    def run(data: bytes) -> bytes:
        c = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: gzip framing, as zzz.compress
        return c.compress(data) + c.flush()

    return run


def codecs() -> list[tuple[str, int, Callable[[bytes], bytes]]]:
    """(coding, level, compress) for every codec installed here."""
    found = [("gzip", level, _gzip(level)) for level in GZIP_LEVELS]
    try:
        brotli = importlib.import_module("brotli")
    except ImportError:
        pass
    else:
        found += [("br", q, lambda d, q=q: brotli.compress(d, quality=q))
                  for q in BROTLI_QUALITIES]
    try:
        zstandard = importlib.import_module("zstandard")
    except ImportError:
        pass
    else:
        found += [("zstd", lv, zstandard.ZstdCompressor(level=lv).compress)
                  for lv in ZSTD_LEVELS]
    return found


def cpu_ms(fn: Callable[[bytes], bytes], data: bytes, repeat: int) -> float:
    """Median thread CPU milliseconds of ``fn(data)`` over ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        start = time.thread_time_ns()
        fn(data)
        times.append(time.thread_time_ns() - start)
    return statistics.median(times) / 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=30, help="calls per codec and level")
    args = p.parse_args(argv)
    data = JSON_DOC
    print(f"Document: {len(data):,} bytes of JSON (bench/apps/mw_payload.py); "
          f"median of {args.repeat} calls; * = zzz.compress() default.\n")
    print("| coding | level | compressed bytes | ratio | CPU ms per response | MB/s in |")
    print("|---|---:|---:|---:|---:|---:|")
    for coding, level, fn in codecs():
        size = len(fn(data))
        ms = cpu_ms(fn, data, args.repeat)
        star = "*" if (coding, level) in ZZZ_DEFAULTS else ""
        print(f"| {coding} | {level}{star} | {size:,} | {len(data) / size:.1f}x | {ms:.2f} | "
              f"{len(data) / ms / 1e3:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
