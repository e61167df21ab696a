"""Thin Celery tasks: they pass ids to the delivery engine (webhooks/dispatch.py)."""

from __future__ import annotations

from celery import shared_task

from webhooks import dispatch
from webhooks.notifications import endpoint_disabled_notify


@shared_task(name="webhooks.deliver", ignore_result=True, acks_late=True)
def deliver(delivery_id: str) -> None:
    dispatch.delivery_wake(delivery_public_id=delivery_id)


@shared_task(name="webhooks.sweep", ignore_result=True)
def sweep() -> int:
    ids = dispatch.deliveries_sweep()
    for delivery_id in ids:
        try:
            deliver.apply_async(args=[delivery_id], retry=False)
        except Exception:  # broker down: queued_at ages out and the next sweep retries
            return 0
    return len(ids)


@shared_task(name="webhooks.notify_disabled", ignore_result=True, acks_late=False)
def notify_disabled(endpoint_pk: int) -> int:
    """Email about a disabled endpoint: routed to the mail queue (CELERY_TASK_ROUTES)."""
    return endpoint_disabled_notify(endpoint_pk=endpoint_pk)
