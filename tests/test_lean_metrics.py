"""The lean counters and histograms expose what prometheus_client's would, sample for sample."""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from mfad.observability.lean import LeanCounter, LeanHistogram

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _exposition(counter: type, histogram: type) -> str:
    registry = CollectorRegistry()
    by_code = counter("mfad_x", "X things.", ["code"], registry=registry)
    by_code.labels("a").inc()
    by_code.labels("a").inc(2)
    by_code.labels("b")  # a series at 0 from the start
    counter("mfad_y", "Y.", registry=registry).inc(3)
    timed = histogram("mfad_h_seconds", "H.", ["op"], buckets=BUCKETS, registry=registry)
    for value in (0.0001, 0.0005, 0.0007, 0.003, 5.0, 7.0):  # on a bound, between, above all
        timed.labels("load").observe(value)
    histogram("mfad_h0_seconds", "H0.", buckets=BUCKETS, registry=registry).observe(0.01)
    # The creation times differ between the two runs, nothing else may.
    return re.sub(r"_created(\{[^}]*\})? \S+", r"_created\1 T", generate_latest(registry).decode())


def test_the_exposition_is_prometheus_clients() -> None:
    assert _exposition(LeanCounter, LeanHistogram) == _exposition(Counter, Histogram)


def test_a_family_registered_twice_is_refused_and_label_counts_are_checked() -> None:
    registry = CollectorRegistry()
    family = LeanCounter("mfad_z", "Z.", ["code"], registry=registry)
    with pytest.raises(ValueError):
        LeanCounter("mfad_z", "Z again.", ["code"], registry=registry)
    with pytest.raises(ValueError):
        family.labels("a", "b")
    with pytest.raises(ValueError):
        LeanHistogram("mfad_w_seconds", "W.", buckets=(1.0, 0.5), registry=registry)
