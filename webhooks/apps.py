from __future__ import annotations

from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings

        from webhooks import conf

        # Updated in place: Celery may already hold a reference to this dict.
        settings.CELERY_BEAT_SCHEDULE.setdefault(
            "webhooks-sweep",
            {"task": "webhooks.sweep", "schedule": conf.sweep_seconds()},
        )
