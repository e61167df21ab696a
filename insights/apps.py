from __future__ import annotations

from django.apps import AppConfig


class InsightsConfig(AppConfig):
    name = "insights"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings

        # In place: Celery may already hold a reference to this dict.
        settings.CELERY_BEAT_SCHEDULE.setdefault(
            "insights-rollup",
            {"task": "insights.rollup", "schedule": settings.WARDEN_OVERVIEW_ROLLUP_INTERVAL},
        )
