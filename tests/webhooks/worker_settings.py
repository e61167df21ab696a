"""Settings of the Celery worker the live webhook tests start: fast retries and sweeps."""

from __future__ import annotations

from wardenproject.settings.test import *  # noqa: F403

WARDEN_WEBHOOKS_RETRY_SCHEDULE = [0, 0.5, 0.5, 0.5, 0.5, 0.5]
WARDEN_WEBHOOKS_SWEEP_SECONDS = 0.5
WARDEN_WEBHOOKS_LEASE_SECONDS = 4
WARDEN_WEBHOOKS_REQUEUE_AFTER = 2
