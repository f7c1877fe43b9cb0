"""``prometheus_client`` multiprocess mode, for a supervisor running N workers.

``prometheus_client`` decides *when it is imported* whether values live in
memory or in per-process files under ``PROMETHEUS_MULTIPROC_DIR``. So the
supervisor calls :func:`prepare_multiprocess_dir` before anything imports
``prometheus_client`` and before forking (this module never imports it at
top level), and :func:`mark_worker_dead` with the pid of each worker that
exits. A scrape of any worker then reports the sum over all workers
(``ServerMetrics.exposition``).
"""

from __future__ import annotations

import os
import shutil

#: Environment variable that turns on ``prometheus_client``'s multiprocess mode.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir(path: str | None = None) -> str:
    """Make ``path`` (default ``$PROMETHEUS_MULTIPROC_DIR``) an empty directory and export it.

    Files left by an earlier run would otherwise be added to this run's
    counters. Returns the path; raises ``ValueError`` when there is none.
    """
    target = path or os.environ.get(MULTIPROC_ENV)
    if not target:
        raise ValueError(f"prepare_multiprocess_dir: no path given and {MULTIPROC_ENV} unset")
    if os.path.isdir(target):
        for entry in os.listdir(target):
            full = os.path.join(target, entry)
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full)
            else:
                os.unlink(full)
    else:
        os.makedirs(target, exist_ok=True)
    os.environ[MULTIPROC_ENV] = target
    return target


def mark_worker_dead(pid: int, path: str | None = None) -> None:
    """Worker ``pid`` exited: its ``live*`` gauges (in flight, WebSockets open) stop
    counting; its counters and histograms stay in the totals, as Prometheus expects."""
    target = path or os.environ.get(MULTIPROC_ENV)
    if not target:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, target)  # type: ignore[no-untyped-call]
