"""Prometheus implementations of the core's and the store's metrics ports.

Names follow ``mfad_<subsystem>_<name>_<unit>``; labels are few and bounded
(protocol, method, result, store operation) — never a username or an address.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Info

import mfad
from mfad.observability.lean import LeanCounter, LeanHistogram

#: Seconds: a verification is one to a few store round trips (≈0.2–10 ms); a
#: password check adds argon2id (≈50–200 ms); beyond 2.5 s something is wrong.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
STORE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5)


class CorePrometheusMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        # Lean families for the two that every verification changes (see mfad.observability.lean).
        self._verifications = LeanCounter("mfad_verifications", "Second-factor and sign-in verifications by outcome.",
                                      ["protocol", "method", "result"], registry=registry)
        self._latency = LeanHistogram("mfad_verification_duration_seconds", "Time to decide a verification.",
                                  ["protocol", "method"], buckets=LATENCY_BUCKETS, registry=registry)
        self._lockouts = Counter("mfad_lockouts", "Users locked out after repeated failures.", registry=registry)
        self._verification_children: dict[tuple[str, str, str], Any] = {}
        self._latency_children: dict[tuple[str, str], Any] = {}
        self._rate_limited = Counter("mfad_rate_limited", "Attempts refused by a rate limit before verification.",
                                     ["scope"], registry=registry)
        self._clone_warnings = Counter("mfad_webauthn_clone_warnings",
                                       "WebAuthn assertions refused because the signature counter went back "
                                       "(possible cloned authenticator).", ["method"], registry=registry)
        self._registrations = Counter("mfad_webauthn_registrations", "Passkey registrations, U2F upgrades and "
                                      "imports by result.", ["kind", "result"], registry=registry)

        self._approvals = Counter("mfad_approvals", "Out-of-band sign-in approvals by step and result "
                                  "(requested, approved, wrong_number, denied, reported, used, refused, "
                                  "expired: a hold ran out).",
                                  ["result"], registry=registry)

        self._emergency = Counter("mfad_emergency_signins", "Sign-ins completed with the security email in place "
                                  "of the usual device (the lost-device path).", registry=registry)

    def emergency_signin(self) -> None:
        self._emergency.inc()

    def approval(self, result: str) -> None:
        self._approvals.labels(result).inc()

    def verification(self, protocol: str, method: str, result: str, seconds: float) -> None:
        # Label children looked up once per label set (bounded): this runs per request.
        counter = self._verification_children.get((protocol, method, result))
        if counter is None:
            counter = self._verification_children[(protocol, method, result)] = \
                self._verifications.labels(protocol, method, result)
        counter.inc()
        latency = self._latency_children.get((protocol, method))
        if latency is None:
            latency = self._latency_children[(protocol, method)] = self._latency.labels(protocol, method)
        latency.observe(seconds)

    def clone_warning(self, method: str) -> None:
        self._clone_warnings.labels(method).inc()

    def registration(self, kind: str, result: str) -> None:
        self._registrations.labels(kind, result).inc()

    def lockout(self) -> None:
        self._lockouts.inc()

    def rate_limited(self, scope: str) -> None:
        self._rate_limited.labels(scope).inc()


class StorePrometheusMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._latency = LeanHistogram("mfad_store_operation_duration_seconds", "Store operations by name.",
                                  ["operation"], buckets=STORE_BUCKETS, registry=registry)
        self._errors = LeanCounter("mfad_store_errors", "Store operations that failed.", ["operation"],
                               registry=registry)
        self._children: dict[str, Any] = {}

    def store_operation(self, op: str, seconds: float, ok: bool) -> None:
        latency = self._children.get(op)
        if latency is None:  # operation names are the store's method names: a bounded set
            latency = self._children[op] = self._latency.labels(op)
        latency.observe(seconds)
        if not ok:
            self._errors.labels(op).inc()


class DaemonGauges:
    """Gauges refreshed by the daemon's housekeeping task."""

    def __init__(self, registry: CollectorRegistry, engine: str) -> None:
        Info("mfad_build", "Build information.", registry=registry).info(
            {"version": mfad.__version__, "store": engine})
        self.challenges_open = Gauge("mfad_challenges_open", "Sign-in challenges waiting for a second factor.",
                                     registry=registry)
        self.approvals_pending = Gauge("mfad_approvals_pending", "Sign-ins waiting for their user's approval.",
                                       registry=registry)
        self.store_up = Gauge("mfad_store_up", "1 when the store answered the last health probe.", registry=registry)
