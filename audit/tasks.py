from __future__ import annotations

from celery import shared_task

from audit.insights.tasks import insights_rollup  # noqa: F401  (registers insights.rollup)
from audit.services import audit_purge_expired, audit_seal


@shared_task(name="audit.purge_expired")
def audit_purge_expired_task() -> int:
    """Delete audit entries older than each organisation's plan retention (daily)."""
    return audit_purge_expired()


@shared_task(name="audit.seal")
def audit_seal_task() -> int:
    """Link new entries into their organisation's chain and sign the heads that are due
    (every WARDEN_AUDIT_SEAL_INTERVAL seconds)."""
    return audit_seal().sealed
