from __future__ import annotations

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

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
