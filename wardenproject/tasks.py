"""Queueing helpers shared by the apps."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import transaction

logger = logging.getLogger(__name__)


def enqueue_on_commit(task: Any, *args: Any, **kwargs: Any) -> None:
    """Queue ``task`` after the current transaction commits.

    The broker is only a wake-up call: the database row the task works on is the truth, and a
    scheduled sweeper picks up anything whose wake-up was lost. So a broker that is down must
    not fail the request that committed the row.
    """

    transaction.on_commit(lambda: enqueue_now(task, *args, **kwargs))


def enqueue_now(task: Any, *args: Any, eta: datetime | None = None, **kwargs: Any) -> bool:
    """Queue ``task`` (to run at ``eta``, if given); False (logged, not raised) if the broker
    is unreachable."""
    options = {"eta": eta} if eta is not None else {}
    try:
        task.apply_async(args=args, kwargs=kwargs, retry=False, **options)
    except Exception:  # the sweeper will pick the work up
        logger.warning("could not queue %s; the sweeper will retry it", task.name)
        return False
    return True
