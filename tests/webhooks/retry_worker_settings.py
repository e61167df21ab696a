"""A worker whose sweeper never runs during a test: a retry can only come from its own
scheduled wake-up."""

from __future__ import annotations

from tests.webhooks.worker_settings import *  # noqa: F403

WARDEN_WEBHOOKS_RETRY_SCHEDULE = [0, 300, 300]
WARDEN_WEBHOOKS_SWEEP_SECONDS = 3600
