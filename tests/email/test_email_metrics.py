"""The outbox's Prometheus series: names, labels, and ``promtool check metrics``."""

from __future__ import annotations

import subprocess

from prometheus_client import CollectorRegistry, generate_latest

from mfad.mail.metrics import EmailPrometheusMetrics
from peer_tools import need_tool


def test_series_and_promtool() -> None:
    registry = CollectorRegistry()
    m = EmailPrometheusMetrics(registry)
    m.queued("signin")
    m.finished("sent", 0.02)
    m.finished("retry", None)
    m.finished("failed", None)
    m.finished("expired", None)
    m.outbox(3, 42.5)
    assert registry.get_sample_value("mfad_email_queued_total", {"purpose": "signin"}) == 1
    assert registry.get_sample_value("mfad_email_sent_total") == 1
    for reason in ("temporary", "permanent", "expired"):
        assert registry.get_sample_value("mfad_email_failed_total", {"reason": reason}) == 1
    assert registry.get_sample_value("mfad_email_failed_total", {"reason": "cancelled"}) == 0
    assert registry.get_sample_value("mfad_email_outbox_depth") == 3
    assert registry.get_sample_value("mfad_email_outbox_oldest_age_seconds") == 42.5
    assert registry.get_sample_value("mfad_email_send_duration_seconds_count") == 1
    text = generate_latest(registry)
    need_tool("promtool", "prometheus")
    run = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, timeout=30)
    assert run.returncode == 0, run.stdout + run.stderr
