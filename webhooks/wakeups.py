"""At most one queued wake-up per endpoint, when Redis is there to count them.

Every delivery used to queue its own Celery task, and a Celery task costs ~2 ms of worker
CPU on its own; at a few hundred events a second most of those tasks only found their
delivery already sent by a worker draining the endpoint. Now the code that commits a
delivery queues a task only if it wins ``wake_claim`` (SET NX with a short expiry), and the
task gives the claim back (``wake_release``) before it starts draining the endpoint:

- a delivery committed before the release is seen by that drain (it starts after);
- a delivery committed after the release finds no claim and queues a task of its own.

So no delivery is left without a drainer. The expiry covers a lost task, and the sweeper
still covers everything else. Without Redis (the embedded default) every delivery queues
its own task, as the claim could not be shared between the web and worker processes.

Retries are woken for their due time instead (``wake_time``, ``wake_at_claim``): a drain of
the endpoint with a Celery eta, at most one per endpoint per half-second of due time.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)

CLAIM_SECONDS = 2
# Wake-ups for a time (retries) run at the end of their half-second: one per endpoint and
# half-second drains every delivery due in it, at most half a second late.
WAKE_STEP_SECONDS = 0.5


def _key(endpoint_pk: int) -> str:
    return f"webhooks:wake:{endpoint_pk}"


def coalescing() -> bool:
    return bool(getattr(settings, "REDIS_URL", ""))


def wake_claim(endpoint_pk: int) -> bool:
    """True if the caller should queue a wake-up for this endpoint (none is pending)."""
    if not coalescing():
        return True
    try:
        return bool(cache.add(_key(endpoint_pk), 1, CLAIM_SECONDS))
    except Exception:  # Redis down: queue anyway (the broker is likely down too; the sweeper)
        logger.warning("could not claim a webhook wake-up; queueing one anyway")
        return True


def wake_release(endpoint_pk: int) -> None:
    """Let the next committed delivery of this endpoint queue a wake-up of its own."""
    if not coalescing():
        return
    try:
        cache.delete(_key(endpoint_pk))
    except Exception:  # the claim expires by itself
        logger.warning("could not release a webhook wake-up claim")


def wake_time(due: datetime) -> datetime:
    """When a wake-up for something due at ``due`` runs: the end of its half-second."""
    step = WAKE_STEP_SECONDS
    return datetime.fromtimestamp(math.ceil(due.timestamp() / step) * step, tz=UTC)


def _at_key(endpoint_pk: int, at: datetime) -> str:
    return f"webhooks:wake-at:{endpoint_pk}:{at.timestamp():.1f}"


def wake_at_claim(endpoint_pk: int, at: datetime) -> bool:
    """True if the caller should queue the endpoint's wake-up for ``at`` (none is queued)."""
    if not coalescing():
        return True
    ttl = max(1, math.ceil((at - datetime.now(tz=UTC)).total_seconds()) + 60)
    try:
        return bool(cache.add(_at_key(endpoint_pk, at), 1, ttl))
    except Exception:  # Redis down: queue anyway
        logger.warning("could not claim a webhook retry wake-up; queueing one anyway")
        return True


def wake_at_release(endpoint_pk: int, at: datetime) -> None:
    """Give a claim back when its wake-up could not be queued."""
    if not coalescing():
        return
    try:
        cache.delete(_at_key(endpoint_pk, at))
    except Exception:  # it expires by itself
        logger.warning("could not release a webhook retry wake-up claim")
