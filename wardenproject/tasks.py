"""Queueing helpers shared by the apps."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import Any

from django.db import transaction

logger = logging.getLogger(__name__)

# After an enqueue failed, the process queues nothing on that broker for this long: on a
# broker that hangs, each attempt costs its socket timeouts, and every held check and every
# decision queues a task after commit.
BROKER_RETRY_SECONDS = 1.0
_broker_down_until: dict[str, float] = {}
_broker_lock = threading.Lock()


def enqueue_on_commit(task: Any, *args: Any, **kwargs: Any) -> None:
    """Queue ``task`` after the current transaction commits.

    The broker is only a wake-up call: the database row the task works on is the truth, and a
    scheduled sweeper picks up anything whose wake-up was lost. So a broker that is down must
    not fail the request that committed the row.
    """

    transaction.on_commit(lambda: enqueue_now(task, *args, **kwargs))


def enqueue_now(task: Any, *args: Any, eta: datetime | None = None, **kwargs: Any) -> bool:
    """Queue ``task`` (to run at ``eta``, if given); False (logged, not raised) if the broker
    is unreachable, or failed less than ``BROKER_RETRY_SECONDS`` ago."""
    broker = str(task.app.conf.broker_url)
    if _broker_down_until.get(broker, 0.0) > time.monotonic():
        return False
    options = {"eta": eta} if eta is not None else {}
    try:
        task.apply_async(args=args, kwargs=kwargs, retry=False, **options)
    except Exception as exc:  # the sweeper will pick the work up
        with _broker_lock:
            _broker_down_until[broker] = time.monotonic() + BROKER_RETRY_SECONDS
        logger.warning(
            "could not queue %s (%s); queueing nothing for %.0f s, the sweepers will retry it",
            task.name,
            exc,
            BROKER_RETRY_SECONDS,
        )
        return False
    return True
