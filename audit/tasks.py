from __future__ import annotations

from celery import shared_task

from audit.services import audit_purge_expired


@shared_task(name="audit.purge_expired")
def audit_purge_expired_task() -> int:
    """Delete audit entries older than each organisation's plan retention (daily)."""
    return audit_purge_expired()
