from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.core.signals import setting_changed


def _keys_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in {"WARDEN_AUDIT_SIGNING_KEYS", "WARDEN_AUDIT_PUBLIC_KEYS", "DEBUG"}:
        from audit.keyring import keyring_forget

        keyring_forget()


def check_signing_key(**kwargs: Any) -> list[checks.CheckMessage]:
    if settings.WARDEN_AUDIT_SIGNING_KEYS or settings.DEBUG:
        return []
    return [
        checks.Warning(
            "WARDEN_AUDIT_SIGNING_KEYS is empty: audit entries are chained but no checkpoint "
            "is signed, so nothing proves the log was not rewritten, and chain exports "
            "cannot be made verifiable.",
            hint="Make a key with `python -m audit.signing` and set WARDEN_AUDIT_SIGNING_KEYS.",
            id="audit.W001",
        )
    ]


class AuditConfig(AppConfig):
    name = "audit"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from celery.schedules import crontab

        settings.CELERY_BEAT_SCHEDULE.setdefault(
            "audit-purge-expired",
            {"task": "audit.purge_expired", "schedule": crontab(minute=17, hour=3)},
        )
        settings.CELERY_BEAT_SCHEDULE.setdefault(
            "audit-seal",
            {"task": "audit.seal", "schedule": settings.WARDEN_AUDIT_SEAL_INTERVAL},
        )
        # The overview's roll-up (audit/insights/rollup.py).
        settings.CELERY_BEAT_SCHEDULE.setdefault(
            "insights-rollup",
            {"task": "insights.rollup", "schedule": settings.WARDEN_OVERVIEW_ROLLUP_INTERVAL},
        )
        checks.register(check_signing_key, "security")
        setting_changed.connect(_keys_changed, dispatch_uid="audit-keyring")
