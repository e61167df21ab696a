"""Emitting events into the transactional outbox."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import Organization
from accounts.plans import Feature, plan_allows
from webhooks.models import Delivery, Endpoint, Event

EVENT_TYPES = (
    "log.pending_approval",
    "approval.approved",
    "approval.rejected",
    "approval.expired",
    "webhook.test",
)


def event_emit(
    *,
    organization: Organization,
    event_type: str,
    data: dict[str, Any],
    agent: Any | None = None,
    action_id: str = "",
) -> Event:
    """Write an event and one delivery per subscribed endpoint, in the caller's transaction.

    Call it inside the transaction that makes the change the event describes: the event
    exists if and only if the change does. Delivery is queued after commit.
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    with transaction.atomic():
        event = Event.objects.create(
            organization=organization,
            event_type=event_type,
            agent=agent,
            action_id=action_id,
            data=data,
        )
        if not plan_allows(organization, Feature.WEBHOOKS):
            return event
        endpoints = [
            endpoint
            for endpoint in Endpoint.objects.filter(
                organization=organization, enabled=True
            ).prefetch_related("agents")
            if event_type in endpoint.events
            and (
                agent is None
                or not endpoint.agents.all()
                or any(a.pk == agent.pk for a in endpoint.agents.all())
            )
        ]
        now = timezone.now()
        deliveries = Delivery.objects.bulk_create(
            [
                Delivery(event=event, endpoint=endpoint, next_attempt_at=now)
                for endpoint in endpoints
            ]
        )
        if deliveries:
            _queue_deliveries([d.public_id for d in deliveries])
    return event


def _queue_deliveries(delivery_ids: list[str]) -> None:
    """Wake the workers after commit; the sweeper covers a lost wake-up."""
    try:
        from webhooks.tasks import deliver
    except ImportError:  # delivery worker not installed yet: the sweeper will find the rows
        return
    from wardenproject.tasks import enqueue_on_commit

    for delivery_id in delivery_ids:
        enqueue_on_commit(deliver, delivery_id)
