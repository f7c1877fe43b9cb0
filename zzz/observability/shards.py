"""Per-thread counters and histograms: one tuple appended per request, folded in batches.

``prometheus_client``'s metric objects take a lock on every update: a histogram
``observe()`` costs several microseconds, a labelled ``inc()`` more, and a hello-world
request on zzz costs only a handful. Even plain ``dict``/``bisect`` updates per
request cost a few thousand instructions in the interpreter. So a request only appends
one tuple of its figures to a list owned by the calling thread (a :class:`Shard`; no
other thread ever appends to it, so nothing is lost between the native backend's
workers and no lock is taken per request). Every :data:`FOLD_BATCH` records the
owner folds the list into its totals with C-level loops (``collections.Counter``
over ``map``/``zip``, ``bisect`` through ``functools.partial``), and a scrape reads
the totals plus the records not folded yet (:meth:`ShardSet.merged`).

Consistency: the owner swaps and folds its list under the shard's lock (once per
batch); a scrape takes the same lock and copies the totals and the list (each copy a
single C-level operation under the GIL) without changing them. A scrape therefore
sees every record exactly once or not yet; counters never go down. A shard outlives
its thread: its counts stay in the totals.

Histogram sums are kept in integer nanoseconds (exact) and converted to seconds at
scrape. ``prometheus_client``'s multiprocess mode needs its own value files, so with
``PROMETHEUS_MULTIPROC_DIR`` set callers use its metric objects instead.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Hashable, Iterator, Sequence
from functools import partial
from operator import itemgetter
from typing import Any

from prometheus_client.core import HistogramMetricFamily

#: Records a shard collects before its owner folds them: large enough that the fold's
#: fixed cost (a lock, a few Counter objects) is shared by hundreds of requests, small
#: enough that the pending list stays a few KiB per thread.
FOLD_BATCH = 256

_LAST = itemgetter(-1)
_LABELS = itemgetter(slice(0, -1))


def bounds_ns(bounds_s: Sequence[float]) -> tuple[int, ...]:
    """Histogram upper bounds in seconds as integer nanoseconds (``le`` unchanged)."""
    return tuple(round(bound * 1e9) for bound in bounds_s)


def bucketer(bounds: Sequence[float | int]) -> Callable[[Any], int]:
    """``value → bucket index`` (first bound >= value, Prometheus' ``le``), in C."""
    return partial(bisect_left, tuple(bounds))


def fold_histogram(hist: list[Any], bucket: Callable[[Any], int], values: list[Any]) -> None:
    """Add ``values`` to ``hist`` (per-bucket counts, ``+Inf`` bucket, then the sum)."""
    for index, n in Counter(map(bucket, values)).items():
        hist[index] += n
    hist[-1] += sum(values)


class Shard:
    """One thread's records ``(*labels, value_ns)``: counts by labels, histograms of
    ``value_ns`` by the label at ``hist_label`` (see the module docstring)."""

    __slots__ = ("_bucket", "_hist_label", "_lock", "_size", "counts", "hists", "pending")

    def __init__(self, bounds_ns: Sequence[int], hist_label: int) -> None:
        self.pending: list[tuple[Any, ...]] = []
        self.counts: dict[Hashable, int] = {}
        #: label → per-bucket counts, the ``+Inf`` bucket, then the sum in nanoseconds.
        self.hists: dict[Hashable, list[int]] = {}
        self._bucket = bucketer(bounds_ns)
        self._size = len(bounds_ns) + 2
        self._hist_label = hist_label
        self._lock = threading.Lock()

    def record(self, record: tuple[Any, ...]) -> None:
        """One request's ``(*labels, value_ns)``; only the owning thread calls this."""
        pending = self.pending
        pending.append(record)
        if len(pending) >= FOLD_BATCH:
            with self._lock:
                self.pending = []
                self._fold(pending, self.counts, self.hists)

    def _fold(self, batch: list[tuple[Any, ...]], counts: dict[Hashable, int],
              hists: dict[Hashable, list[int]]) -> None:
        for labels, n in Counter(map(_LABELS, batch)).items():
            counts[labels] = counts.get(labels, 0) + n
        keys = list(map(itemgetter(self._hist_label), batch))
        values = list(map(_LAST, batch))
        for (key, index), n in Counter(zip(keys, map(self._bucket, values), strict=True)).items():
            hist = hists.get(key)
            if hist is None:
                hist = hists[key] = [0] * self._size
            hist[index] += n
        for key, value in zip(keys, values, strict=True):
            hists[key][-1] += value

    def snapshot(self) -> tuple[dict[Hashable, int], dict[Hashable, list[int]]]:
        """Totals including the records not folded yet, without changing anything."""
        with self._lock:
            counts = self.counts.copy()
            hists = {key: list(hist) for key, hist in self.hists.items()}
            self._fold(list(self.pending), counts, hists)
        return counts, hists


class ShardSet:
    """The shards of every thread that recorded something."""

    def __init__(self, bounds_ns: Sequence[int], hist_label: int) -> None:
        self._local = threading.local()
        self._shards: list[Shard] = []
        self._lock = threading.Lock()
        self._bounds_ns = tuple(bounds_ns)
        self._hist_label = hist_label

    def get(self) -> Shard:
        """The calling thread's shard (created on its first use)."""
        try:
            shard: Shard = self._local.shard
        except AttributeError:
            shard = self._local.shard = Shard(self._bounds_ns, self._hist_label)
            with self._lock:
                self._shards.append(shard)
        return shard

    def merged(self) -> tuple[dict[Hashable, int], dict[Hashable, list[float]]]:
        """Counts and histograms summed over all shards (sums in seconds)."""
        with self._lock:
            shards = list(self._shards)
        counts: dict[Hashable, int] = {}
        hists: dict[Hashable, list[float]] = {}
        for shard in shards:
            shard_counts, shard_hists = shard.snapshot()
            for key, n in shard_counts.items():
                counts[key] = counts.get(key, 0) + n
            for key, hist in shard_hists.items():
                total = hists.get(key)
                if total is None:
                    total = hists[key] = [0.0] * len(hist)
                for i, amount in enumerate(hist):
                    total[i] += amount
        for total in hists.values():
            total[-1] /= 1e9  # the sum, kept in nanoseconds
        return counts, hists


def histogram_family(name: str, documentation: str, labelnames: Sequence[str],
                     series: Iterator[tuple[Sequence[str], list[float]]],
                     bounds: Sequence[float]) -> HistogramMetricFamily:
    """A Prometheus histogram family from per-bucket counts (made cumulative here)."""
    family = HistogramMetricFamily(name, documentation, labels=list(labelnames))
    for labels, hist in series:
        cumulative: list[tuple[str, float]] = []
        running = 0.0
        for bound, n in zip((*bounds, float("inf")), hist[:-1], strict=True):
            running += n
            cumulative.append((_format_bound(bound), running))
        family.add_metric(list(labels), cumulative, hist[-1])
    return family


def _format_bound(bound: float) -> str:
    if bound == float("inf"):
        return "+Inf"
    return repr(float(bound))


__all__ = ["FOLD_BATCH", "Shard", "ShardSet", "bounds_ns", "bucketer", "fold_histogram",
           "histogram_family"]
