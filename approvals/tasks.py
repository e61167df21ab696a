"""Thin Celery tasks: expiry sweep and reviewer notifications."""

from __future__ import annotations

from celery import shared_task

from approvals.notifications import approval_notify_reviewers, notifications_sweep
from approvals.services import approval_expire_overdue

EXPIRE_EVERY_SECONDS = 2.0
NOTIFY_SWEEP_EVERY_SECONDS = 60.0


@shared_task(name="approvals.expire_overdue", ignore_result=True)
def approvals_expire_overdue() -> int:
    return approval_expire_overdue()


@shared_task(name="approvals.notify", ignore_result=True, acks_late=False)
def approvals_notify(organization_id: int) -> list[str]:
    """Reviewer email: routed to the mail queue (CELERY_TASK_ROUTES)."""
    return approval_notify_reviewers(organization_id=organization_id).notified


@shared_task(name="approvals.notify_sweep", ignore_result=True)
def approvals_notify_sweep() -> list[int]:
    """Queues the notify tasks that were lost; sends nothing itself (default queue)."""
    return notifications_sweep()
