"""Per-thread counters and histograms, summed only when scraped.

``prometheus_client``'s metric objects take a lock on every update: a
histogram ``observe()`` costs several microseconds, a labelled ``inc()`` more,
and a hello-world request on zzz costs only a handful. Per-request figures
therefore go to a :class:`Shard` owned by the calling thread — plain ``dict``
and ``list`` updates no other thread ever writes, so nothing is lost between
the native backend's workers and no lock is taken — and a scrape sums the
shards (:meth:`ShardSet.merged`) into ordinary Prometheus families.

A shard outlives its thread (its counts stay in the totals: counters never go
down). Reading a shard while its thread updates it is safe: ``dict.copy`` and
``list`` copies are single C-level operations under the GIL; a scrape may miss
an update in progress, which the next scrape sees.

``prometheus_client``'s multiprocess mode needs its own value files, so with
``PROMETHEUS_MULTIPROC_DIR`` set callers use its metric objects instead.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Hashable, Iterator, Sequence

from prometheus_client.core import HistogramMetricFamily


class Shard:
    """One thread's counts (``key → n``) and histograms (``key → [per-bucket..., sum]``)."""

    __slots__ = ("counts", "hists")

    def __init__(self) -> None:
        self.counts: dict[Hashable, int] = {}
        self.hists: dict[Hashable, list[float]] = {}

    def observe(self, key: Hashable, bounds: Sequence[float], value: float) -> None:
        """Add ``value`` to histogram ``key`` with upper bounds ``bounds`` (``+Inf`` implied)."""
        hist = self.hists.get(key)
        if hist is None:
            hist = self.hists[key] = [0] * (len(bounds) + 2)
        hist[bisect_left(bounds, value)] += 1  # first bound >= value: Prometheus' "le"
        hist[-1] += value


class ShardSet:
    """The shards of every thread that recorded something."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._shards: list[Shard] = []
        self._lock = threading.Lock()

    def get(self) -> Shard:
        """The calling thread's shard (created on its first use)."""
        try:
            shard: Shard = self._local.shard
        except AttributeError:
            shard = self._local.shard = Shard()
            with self._lock:
                self._shards.append(shard)
        return shard

    def merged(self) -> tuple[dict[Hashable, int], dict[Hashable, list[float]]]:
        """Counts and histograms summed over all shards."""
        with self._lock:
            shards = list(self._shards)
        counts: dict[Hashable, int] = {}
        hists: dict[Hashable, list[float]] = {}
        for shard in shards:
            for key, n in shard.counts.copy().items():
                counts[key] = counts.get(key, 0) + n
            for key, hist in shard.hists.copy().items():
                snapshot = list(hist)
                total = hists.get(key)
                if total is None:
                    hists[key] = snapshot
                else:
                    for i, amount in enumerate(snapshot):
                        total[i] += amount
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


__all__ = ["Shard", "ShardSet", "histogram_family"]
