"""Counters and histograms for the per-request path, exposed as Prometheus series.

``prometheus_client``'s metrics take a lock for every increment and walk the buckets
in Python for every observation: on the RADIUS hot path (four counters and four
histograms per accepted code) that measured about 8 µs a request. These keep plain
numbers, changed only on the event loop's thread, and build the metric families when
the registry is scraped. The exposition is the same: ``<name>_total`` and
``<name>_created`` for a counter; ``_bucket{le}``, ``_count``, ``_sum`` and ``_created``
for a histogram.

A scrape from another thread reads numbers that the loop may be changing; each number
is read whole (the GIL), and a histogram's buckets, count and sum are copied together
in one step, so a scrape never sees a count that disagrees with its buckets.
"""

from __future__ import annotations

import abc
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar, cast

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

#: How prometheus_client writes a bucket bound (its function is not typed).
_bound_text = cast(Callable[[float], str], floatToGoString)


C = TypeVar("C")


class LeanCounterChild:
    __slots__ = ("value", "created")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class LeanHistogramChild:
    __slots__ = ("_bounds", "_counts", "_sum", "created")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self._counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self._sum = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bound's bucket (le is "≤").
        self._counts[bisect_left(self._bounds, amount)] += 1
        self._sum += amount

    def snapshot(self) -> tuple[list[int], float]:
        return list(self._counts), self._sum


class _LeanFamily(Collector, Generic[C]):
    """The children by label values (one without labels: made at once), and registration."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 registry: CollectorRegistry | None) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], C] = {}
        if not self.labelnames:
            self._children[()] = self._new_child()
        if registry is not None:
            registry.register(self)

    @abc.abstractmethod
    def _new_child(self) -> C:
        """A child at zero (each family says what its children are)."""

    def labels(self, *values: str) -> C:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name}: {len(self.labelnames)} label values expected")
        key = tuple(str(v) for v in values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._new_child()
        return child

    def describe(self) -> list[Metric]:
        return list(self.collect())  # the names, so that the registry refuses a duplicate


class LeanCounter(_LeanFamily[LeanCounterChild]):
    """A counter family: ``labels(*values).inc()``, or ``inc()`` without labels."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = (), *,
                 registry: CollectorRegistry | None = None) -> None:
        super().__init__(name, documentation, labelnames, registry)

    def _new_child(self) -> LeanCounterChild:
        return LeanCounterChild()

    def inc(self, amount: float = 1.0) -> None:
        self._children[()].inc(amount)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for key, child in list(self._children.items()):
            family.add_metric(key, child.value, created=child.created)
        yield family


class LeanHistogram(_LeanFamily[LeanHistogramChild]):
    """A histogram family with fixed ``buckets``: ``labels(*values).observe(x)``, or
    ``observe(x)`` without labels."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = (), *,
                 buckets: Sequence[float], registry: CollectorRegistry | None = None) -> None:
        bounds = tuple(float(b) for b in buckets if b != float("inf"))
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError(f"{name}: buckets must be increasing")
        self._bounds = bounds  # before the base makes a child or registers
        super().__init__(name, documentation, labelnames, registry)

    def _new_child(self) -> LeanHistogramChild:
        return LeanHistogramChild(self._bounds)

    def observe(self, amount: float) -> None:
        self._children[()].observe(amount)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        edges = [_bound_text(b) for b in self._bounds] + ["+Inf"]
        for key, child in list(self._children.items()):
            counts, total = child.snapshot()
            cumulative, buckets = 0, []
            for edge, count in zip(edges, counts):
                cumulative += count
                buckets.append((edge, float(cumulative)))
            family.add_metric(key, buckets, total)
            family.samples.append(Sample(f"{self.name}_created", dict(zip(self.labelnames, key)), child.created))
        yield family
