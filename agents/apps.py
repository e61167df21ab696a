from __future__ import annotations

from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings

        import agents.openapi  # noqa: F401  (registers the API-key scheme with drf-spectacular)
        from agents.shadow import TALLY_EVERY_SECONDS
        from agents.tasks import RECOUNT_EVERY_SECONDS

        # In place: Celery may already hold a reference to this dict.
        settings.CELERY_BEAT_SCHEDULE.setdefault(
            "agents-recount-pending",
            {"task": "agents.recount_pending", "schedule": RECOUNT_EVERY_SECONDS},
        )
        settings.CELERY_BEAT_SCHEDULE.setdefault(
            "agents-shadow-tally",
            {"task": "agents.shadow_tally", "schedule": TALLY_EVERY_SECONDS},
        )
