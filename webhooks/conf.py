"""Webhook tunables, read from Django settings with production defaults.

Tests and operators override them in settings (see the report / `.env.example`):
``WARDEN_WEBHOOKS_RETRY_SCHEDULE`` is a list of delays in seconds, one per attempt.
"""

from __future__ import annotations

from django.conf import settings

# Delay before attempt n, in seconds (the first attempt goes at once): doubling from 5 s to
# 2 h 50 min, then every 6 h until ~3 days after the event, 24 attempts (docs/API.md). A
# receiver that was down for a while gets its events about that long after it is back: a
# 60 s outage costs about a minute (attempts at 0, 5, 15, 35, 75 s), not minutes.
DEFAULT_RETRY_SCHEDULE = [0] + [5 * 2**n for n in range(12)] + [6 * 3600] * 11


def _get(name: str, default):
    return getattr(settings, name, default)


def retry_schedule() -> list[float]:
    return [float(s) for s in _get("WARDEN_WEBHOOKS_RETRY_SCHEDULE", DEFAULT_RETRY_SCHEDULE)]


def retry_jitter() -> float:
    return float(_get("WARDEN_WEBHOOKS_RETRY_JITTER", 0.2))


def lease_seconds() -> float:
    return float(_get("WARDEN_WEBHOOKS_LEASE_SECONDS", 60))


def max_in_flight() -> int:
    return int(_get("WARDEN_WEBHOOKS_MAX_IN_FLIGHT", 4))


def sweep_seconds() -> float:
    return float(_get("WARDEN_WEBHOOKS_SWEEP_SECONDS", 5))


def wake_ahead_seconds() -> float:
    """How far ahead a retry's wake-up is queued (a Celery eta waiting in a worker): two
    sweeps, so a sweep that comes late still queues it before it is due."""
    return 2 * sweep_seconds()


def requeue_after_seconds() -> float:
    """How long a queued wake-up is trusted before the sweeper queues another."""
    return float(_get("WARDEN_WEBHOOKS_REQUEUE_AFTER", 30))


def max_retry_after_seconds() -> float:
    return float(_get("WARDEN_WEBHOOKS_MAX_RETRY_AFTER", 6 * 3600))


def disable_after_seconds() -> float:
    return float(_get("WARDEN_WEBHOOKS_DISABLE_AFTER", 5 * 86400))


def rotation_grace_seconds() -> float:
    return float(_get("WARDEN_WEBHOOKS_ROTATION_GRACE", 24 * 3600))


def connect_timeout() -> float:
    return float(_get("WARDEN_WEBHOOKS_CONNECT_TIMEOUT", 3))


def total_timeout() -> float:
    return float(_get("WARDEN_WEBHOOKS_TOTAL_TIMEOUT", 15))


def allow_private() -> bool:
    return bool(_get("WARDEN_WEBHOOKS_ALLOW_PRIVATE", False))


def allow_http() -> bool:
    return bool(_get("WARDEN_WEBHOOKS_ALLOW_HTTP", False))
