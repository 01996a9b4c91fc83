"""gRPC call metrics: a narrow protocol and its Prometheus implementation.

Guarantee: labels are bounded -- ``method`` is one of the server's registered
methods (the interceptor never records a name a client made up) and ``code``
is a gRPC status code name -- so a client cannot grow the series count.
"""

from __future__ import annotations

from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram

#: Seconds. A verification is a few store round trips (~1-10 ms); argon2id
#: first factors take ~50-200 ms; above 2.5 s something is wrong.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class GrpcMetrics(Protocol):
    def observe_call(self, method: str, code: str, seconds: float) -> None:
        """One finished call of ``method`` ("mfad.v1.Admin/CreateUser") with status ``code``."""
        ...


class NullGrpcMetrics:
    def observe_call(self, method: str, code: str, seconds: float) -> None:
        return None


class PrometheusGrpcMetrics:
    """``mfad_grpc_requests_total{method,code}`` and ``mfad_grpc_request_duration_seconds{method}``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._requests = Counter(
            "mfad_grpc_requests",
            "gRPC calls handled, by method and status code.",
            ["method", "code"],
            registry=registry,
        )
        self._duration = Histogram(
            "mfad_grpc_request_duration_seconds",
            "Time from a call's arrival at the interceptor to its answer, by method.",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

        #: The series of each (method, code) seen, looked up once (``labels()`` takes a lock and
        #: builds a key on every call); as bounded as the labels.
        self._series: dict[tuple[str, str], tuple[Counter, Histogram]] = {}

    def observe_call(self, method: str, code: str, seconds: float) -> None:
        series = self._series.get((method, code))
        if series is None:
            series = self._series[(method, code)] = (self._requests.labels(method=method, code=code),
                                                     self._duration.labels(method=method))
        series[0].inc()
        series[1].observe(seconds)
