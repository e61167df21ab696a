from __future__ import annotations

from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "approvals"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings

        from approvals.tasks import (
            EXPIRE_EVERY_SECONDS,
            NOTIFY_SWEEP_EVERY_SECONDS,
            SLACK_SWEEP_EVERY_SECONDS,
        )

        # In place: Celery may already hold a reference to this dict.
        settings.CELERY_BEAT_SCHEDULE.setdefault(
            "approvals-expire-overdue",
            {"task": "approvals.expire_overdue", "schedule": EXPIRE_EVERY_SECONDS},
        )
        settings.CELERY_BEAT_SCHEDULE.setdefault(
            "approvals-notify-sweep",
            {"task": "approvals.notify_sweep", "schedule": NOTIFY_SWEEP_EVERY_SECONDS},
        )
        settings.CELERY_BEAT_SCHEDULE.setdefault(
            "approvals-slack-sweep",
            {"task": "approvals.slack_sweep", "schedule": SLACK_SWEEP_EVERY_SECONDS},
        )
