"""Prometheus implementation of the core's ``EmailMetrics`` port (on the daemon's registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: Seconds for one SMTP delivery: connect, TLS, (auth), send. Loopback relays take
#: milliseconds; a remote server with TLS a few hundred; beyond 10 s it times out.
SEND_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class EmailPrometheusMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._queued = Counter("mfad_email_queued", "Email codes queued in the outbox, by purpose.",
                               ["purpose"], registry=registry)
        self._sent = Counter("mfad_email_sent", "Messages the mail server accepted.", registry=registry)
        self._failed = Counter("mfad_email_failed",
                               "Delivery attempts that did not send, by reason (temporary: will be retried; "
                               "permanent, expired, cancelled: dropped).", ["reason"], registry=registry)
        self._latency = Histogram("mfad_email_send_duration_seconds", "Time to hand one message to the mail server.",
                                  buckets=SEND_BUCKETS, registry=registry)
        self._depth = Gauge("mfad_email_outbox_depth", "Messages waiting in the outbox (all instances).",
                            registry=registry)
        self._oldest = Gauge("mfad_email_outbox_oldest_age_seconds",
                             "Age of the oldest message waiting in the outbox (0 when empty).", registry=registry)
        for reason in ("temporary", "permanent", "expired", "cancelled"):
            self._failed.labels(reason)

    def queued(self, purpose: str) -> None:
        self._queued.labels(purpose).inc()

    def finished(self, delivery: str, seconds: float | None) -> None:
        if delivery == "sent":
            self._sent.inc()
            if seconds is not None:
                self._latency.observe(seconds)
            return
        reason = {"retry": "temporary", "failed": "permanent"}.get(delivery, delivery)
        self._failed.labels(reason).inc()

    def outbox(self, depth: int, oldest_age_seconds: float) -> None:
        self._depth.set(depth)
        self._oldest.set(oldest_age_seconds)
