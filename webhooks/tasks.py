"""Thin Celery tasks: they pass ids to the delivery engine (webhooks/dispatch.py)."""

from __future__ import annotations

from celery import shared_task

from webhooks import dispatch, services
from webhooks.notifications import endpoint_disabled_notify


@shared_task(name="webhooks.deliver", ignore_result=True, acks_late=True)
def deliver(delivery_id: str) -> None:
    dispatch.delivery_wake(delivery_public_id=delivery_id)


@shared_task(name="webhooks.drain", ignore_result=True, acks_late=True)
def drain(endpoint_pk: int) -> None:
    """A wake-up for a time (retries): send the endpoint's due deliveries."""
    dispatch.endpoint_drain(endpoint_pk=endpoint_pk)


@shared_task(name="webhooks.sweep", ignore_result=True)
def sweep() -> int:
    wakes = dispatch.deliveries_sweep()
    for endpoint_pk, at in wakes:
        if not services.endpoint_wake_at(endpoint_pk=endpoint_pk, due=at):
            return 0  # broker down: queued_at ages out and a later sweep queues again
    return len(wakes)


@shared_task(name="webhooks.notify_disabled", ignore_result=True, acks_late=False)
def notify_disabled(endpoint_pk: int) -> int:
    """Email about a disabled endpoint: routed to the mail queue (CELERY_TASK_ROUTES)."""
    return endpoint_disabled_notify(endpoint_pk=endpoint_pk)
