"""glibc malloc thresholds for large bodies, set once at start-up (``mallopt``).

Why: a 1 MiB upload on the event loop arrives as reads of up to 256 KiB (the
loop's buffer, each handed to ``data_received`` as a new ``bytes``), is copied
into body pieces and joined into one 1 MiB ``bytes``. glibc serves blocks that
large from the heap only while its *dynamic* mmap threshold has grown past them,
and gives the top of the heap back to the kernel whenever more than the trim
threshold (twice the mmap threshold) is free. With a few uploads in flight the
heap grows and shrinks by megabytes per request, and every regrowth page-faults
fresh zeroed pages: measured on this machine (bench/throughput.py, ``perf``),
page faults and page clearing were over half of the server's CPU time, 1,833 µs
per 1 MiB upload against 390 µs with fixed thresholds (bench/README.md, "Streamed
download and upload throughput").

What: ``mallopt(M_MMAP_THRESHOLD)`` and ``mallopt(M_TRIM_THRESHOLD)`` with
``Config.malloc_mmap_threshold`` / ``malloc_trim_threshold``. Setting either also
switches glibc's dynamic adjustment off, so both are set together. The cost is
memory: up to the trim threshold of freed heap stays with the process (per malloc
arena) instead of going back to the kernel at once; small requests allocate
nothing this large and cost the same. 0 leaves glibc's defaults alone, and so
does an operator's own ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` /
``GLIBC_TUNABLES`` (their choice wins). Other C libraries (musl, macOS) have no
``mallopt`` of this kind: nothing is done there.
"""

from __future__ import annotations

import ctypes
import logging
import os
from typing import Any

log = logging.getLogger("zzz.malloc")

#: ``mallopt`` parameter numbers from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Largest mmap threshold glibc accepts on 64-bit (HEAP_MAX_SIZE / 2); above it mallopt fails.
MAX_MMAP_THRESHOLD = 32 * 1024 * 1024
#: Environment variables through which an operator already tunes glibc malloc.
OPERATOR_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def _mallopt() -> Any:
    try:
        libc = ctypes.CDLL(None)
        func = libc.mallopt
        # gnu_get_libc_version exists only in glibc: musl also exports a (no-op) mallopt.
        libc.gnu_get_libc_version  # noqa: B018
    except (OSError, AttributeError):
        return None
    func.argtypes = (ctypes.c_int, ctypes.c_int)
    func.restype = ctypes.c_int
    return func


def tune_malloc(mmap_threshold: int, trim_threshold: int) -> bool:
    """Fix glibc's mmap and trim thresholds (bytes); True when both were set.

    Both or neither (``Config`` checks it): setting one switches the dynamic
    adjustment of the other off too. Nothing happens for ``0``/``0``, under another C library, or when the
    operator's environment already tunes malloc (see the module docstring).
    """
    if not mmap_threshold and not trim_threshold:
        return False
    chosen = [name for name in OPERATOR_SETTINGS
              if name in os.environ and (name != "GLIBC_TUNABLES"
                                         or "glibc.malloc" in os.environ[name])]
    if chosen:
        log.debug("malloc thresholds: %s set in the environment; left alone", chosen[0])
        return False
    mallopt = _mallopt()
    if mallopt is None:
        log.debug("malloc thresholds: not glibc; left alone")
        return False
    ok = True
    for name, param, value in (("malloc_mmap_threshold", M_MMAP_THRESHOLD, mmap_threshold),
                               ("malloc_trim_threshold", M_TRIM_THRESHOLD, trim_threshold)):
        if mallopt(param, value) != 1:
            log.warning("%s: glibc refused %d", name, value)
            ok = False
    return ok
