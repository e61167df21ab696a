from __future__ import annotations

from django.apps import AppConfig
from django.conf import settings


class AuditConfig(AppConfig):
    name = "audit"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from celery.schedules import crontab

        settings.CELERY_BEAT_SCHEDULE.setdefault(
            "audit-purge-expired",
            {"task": "audit.purge_expired", "schedule": crontab(minute=17, hour=3)},
        )
