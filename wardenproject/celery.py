from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery
from celery.signals import after_setup_logger, task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wardenproject.settings.base")

app = Celery("warden")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def close_old_connections(**kwargs: object) -> None:
    """Treat a task like a request: drop connections that broke or outlived CONN_MAX_AGE.

    Celery's Django fixup would close every connection before and after each task (a new
    PostgreSQL backend per task) unless CELERY_DB_REUSE_MAX is set; settings set it high and
    leave the decision to Django's own rule, the one web requests follow.
    """
    from django.db import close_old_connections as django_close_old_connections

    django_close_old_connections()


# Scheduled housekeeping that runs every few seconds; at INFO its log lines (beat's "Sending
# due task", a worker's "received" and "succeeded") bury everything else, such as the console
# emails of `make run`.
HOUSEKEEPING_TASKS = frozenset({"approvals.expire_overdue", "webhooks.sweep", "audit.seal"})


class QuietHousekeeping(logging.Filter):
    """Drop a worker's INFO lines about the housekeeping tasks (Celery attaches the task's
    name to them as ``record.data``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        data = getattr(record, "data", None)
        return not (
            record.levelno <= logging.INFO
            and isinstance(data, dict)
            and data.get("name") in HOUSEKEEPING_TASKS
        )


@after_setup_logger.connect
def quiet_housekeeping(loglevel: int | str | None = None, **kwargs: Any) -> None:
    """In worker and beat processes, unless they log at DEBUG: beat's scheduler at WARNING,
    and a worker's lines about the housekeeping tasks dropped."""
    if isinstance(loglevel, str):
        loglevel = logging.getLevelName(loglevel.upper())
    if isinstance(loglevel, int) and loglevel <= logging.DEBUG:
        return
    logging.getLogger("celery.beat").setLevel(logging.WARNING)
    for name in ("celery.worker.strategy", "celery.app.trace"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, QuietHousekeeping) for f in logger.filters):
            logger.addFilter(QuietHousekeeping())
