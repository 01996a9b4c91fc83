"""Metrics, health endpoints, logging and systemd notification for the daemon."""
