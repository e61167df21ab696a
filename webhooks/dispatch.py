"""The delivery engine: lease a due delivery, send it, record the attempt, schedule the next.

PostgreSQL is the truth and the broker only a wake-up. A worker sends a delivery only after
winning a conditional UPDATE that sets ``leased_until``; the next attempt time lives in the
row; ``deliveries_sweep`` re-queues whatever is due and has no live wake-up or lease. So a
lost task, a broker outage or a killed worker delays a delivery but never loses it.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import Membership
from accounts.permissions import Capability, roles_with
from webhooks import conf, delivery
from webhooks.crypto import SecretUnreadable
from webhooks.formats import build_request
from webhooks.models import Attempt, Delivery, Endpoint
from webhooks.services import endpoint_set_enabled, endpoint_signing_secrets

logger = logging.getLogger(__name__)


@dataclass
class Lease:
    delivery_id: int
    token: datetime


def _due(now: datetime) -> Q:
    return Q(status=Delivery.Status.PENDING, next_attempt_at__lte=now) & (
        Q(leased_until__isnull=True) | Q(leased_until__lt=now)
    )


def _in_flight(endpoint_pk: int, now: datetime) -> int:
    return Delivery.objects.filter(
        endpoint_id=endpoint_pk, status=Delivery.Status.PENDING, leased_until__gt=now
    ).count()


def delivery_lease(*, delivery_pk: int | None, endpoint_pk: int) -> Lease | None:
    """Lease a due delivery unless its endpoint already has its cap of leases in flight.

    ``delivery_pk`` names the delivery a wake-up was for; ``None`` takes the endpoint's
    oldest due delivery. The endpoint row lock serialises leasing per endpoint (PostgreSQL;
    SQLite serialises writers anyway), so the cap holds and two drainers never pick the
    same row; the conditional UPDATE makes a stale wake-up lose cleanly.
    """
    now = timezone.now()
    token = now + timedelta(seconds=conf.lease_seconds())
    # Unlocked first look: most wake-ups of a busy endpoint find its cap full or their
    # delivery already taken by a drainer; they leave without queueing for the row lock.
    if _in_flight(endpoint_pk, now) >= conf.max_in_flight():
        return None
    if (
        delivery_pk is not None
        and not Delivery.objects.filter(pk=delivery_pk).filter(_due(now)).exists()
    ):
        return None
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # A lease is a soft claim that expires by itself: losing one in a database crash
            # only means a re-lease (at worst a duplicate, which at-least-once allows). Don't
            # hold the endpoint's lock while waiting for the WAL flush of every lease.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit = off")
        # FOR NO KEY UPDATE: serialises leasing per endpoint without blocking the FOR KEY
        # SHARE locks that inserting new deliveries (their foreign key) takes on this row.
        list(
            Endpoint.objects.select_for_update(no_key=True).filter(pk=endpoint_pk).values_list("pk")
        )
        if _in_flight(endpoint_pk, now) >= conf.max_in_flight():
            return None
        if delivery_pk is None:
            delivery_pk = (
                Delivery.objects.filter(endpoint_id=endpoint_pk)
                .filter(_due(now))
                .order_by("next_attempt_at", "pk")
                .values_list("pk", flat=True)
                .first()
            )
            if delivery_pk is None:
                return None
        won = Delivery.objects.filter(pk=delivery_pk).filter(_due(now)).update(leased_until=token)
    return Lease(delivery_pk, token) if won == 1 else None


def _next_delay(attempt_count: int, result: delivery.SendResult) -> float | None:
    """Seconds until the next attempt, or None when the schedule is exhausted."""
    schedule = conf.retry_schedule()
    if attempt_count >= len(schedule):
        return None
    if result.retry_after is not None:
        return min(max(result.retry_after, 1.0), conf.max_retry_after_seconds())
    base = schedule[attempt_count]
    jitter = conf.retry_jitter()
    return base * random.uniform(1 - jitter, 1 + jitter)


def _notify_disabled(endpoint: Endpoint) -> None:
    emails = list(
        Membership.objects.filter(
            organization_id=endpoint.organization_id,
            role__in=roles_with(Capability.MANAGE_WEBHOOKS),
        ).values_list("user__email", flat=True)
    )
    if not emails:
        return
    link = f"{settings.WARDEN_BASE_URL}/webhooks/{endpoint.public_id}/"
    send_mail(
        subject=f"Warden disabled your webhook endpoint {endpoint.url}",
        message=(
            f"Deliveries to {endpoint.url} have failed continuously since "
            f"{endpoint.failing_since:%Y-%m-%d %H:%M} UTC, so Warden disabled the endpoint.\n"
            f"Reason: {endpoint.disabled_reason}\n\n"
            f"Fix the receiver, enable the endpoint again and recover the failed deliveries:\n"
            f"{link}\n"
        ),
        from_email=None,
        recipient_list=emails,
        fail_silently=True,
    )


def _endpoint_record_outcome(endpoint: Endpoint, result: delivery.SendResult) -> None:
    now = timezone.now()
    if result.ok:
        if endpoint.failing_since is not None:
            Endpoint.objects.filter(pk=endpoint.pk).update(failing_since=None)
        return
    if result.status_code == 410:
        endpoint_set_enabled(
            endpoint=endpoint,
            enabled=False,
            reason=f"The receiver answered 410 Gone at {now:%Y-%m-%d %H:%M} UTC.",
        )
        return
    Endpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=True).update(failing_since=now)
    endpoint.refresh_from_db(fields=["failing_since", "enabled"])
    failing_for = (now - endpoint.failing_since).total_seconds() if endpoint.failing_since else 0
    if endpoint.enabled and failing_for >= conf.disable_after_seconds():
        endpoint_set_enabled(
            endpoint=endpoint,
            enabled=False,
            reason=f"Every delivery failed for {failing_for / 86400:.0f} days.",
        )
        transaction.on_commit(lambda: _notify_disabled(endpoint))


def delivery_attempt(*, delivery_public_id: str) -> Attempt | None:
    """Lease, send and record one delivery; None if another worker has it or it is not due."""
    row = (
        Delivery.objects.filter(public_id=delivery_public_id)
        .values_list("pk", "endpoint_id")
        .first()
    )
    if row is None:
        return None
    lease = delivery_lease(delivery_pk=row[0], endpoint_pk=row[1])
    if lease is None:
        return None
    return _attempt_leased(lease)


def _attempt_leased(lease: Lease) -> Attempt:
    item = Delivery.objects.select_related("event", "endpoint").get(pk=lease.delivery_id)
    endpoint = item.endpoint
    now = timezone.now()
    headers: dict[str, str] = {}
    body = b""
    if not endpoint.enabled:
        result = delivery.SendResult(
            error=f"Endpoint disabled: {endpoint.disabled_reason}", permanent=True
        )
    else:
        try:
            secrets = endpoint_signing_secrets(endpoint, now=now)
        except SecretUnreadable as exc:
            # Retried on the normal schedule: restoring SECRET_KEY (or rotating the secret)
            # lets the delivery go out, and the attempt log says what is wrong meanwhile.
            result = delivery.SendResult(
                error=f"Cannot sign: {exc}. Restore SECRET_KEY or rotate this endpoint's secret."
            )
        else:
            headers, body = build_request(
                item.event, endpoint.format, secrets, int(now.timestamp())
            )
            result = delivery.post(endpoint.url, headers, body)
    attempt_count = item.attempt_count + 1
    with transaction.atomic():  # the attempt, the delivery's state and the endpoint's: one commit
        attempt = _attempt_record(lease, item, endpoint, now, headers, body, result, attempt_count)
    return attempt


def _attempt_record(
    lease: Lease,
    item: Delivery,
    endpoint: Endpoint,
    now: datetime,
    headers: dict[str, str],
    body: bytes,
    result: delivery.SendResult,
    attempt_count: int,
) -> Attempt:
    attempt = Attempt.objects.create(
        delivery=item,
        number=attempt_count,
        created_at=now,
        request_url=endpoint.url,
        request_headers=headers,
        request_body=body.decode("utf-8", errors="replace"),
        response_status=result.status_code,
        response_body=result.response_body,
        duration_ms=result.duration_ms,
        error=result.error,
    )
    finished = timezone.now()
    update: dict = {
        "attempt_count": attempt_count,
        "leased_until": None,
        "last_status_code": result.status_code,
        "last_error": result.error,
    }
    if result.ok:
        update |= {"status": Delivery.Status.SUCCEEDED, "completed_at": finished}
    else:
        delay = None if result.permanent else _next_delay(attempt_count, result)
        if delay is None:
            update |= {"status": Delivery.Status.FAILED, "completed_at": finished}
        else:
            update["next_attempt_at"] = finished + timedelta(seconds=delay)
    # Only the lease holder records the outcome (a lease that expired mid-send lost it).
    Delivery.objects.filter(pk=item.pk, leased_until=lease.token).update(**update)
    if endpoint.enabled:
        _endpoint_record_outcome(endpoint, result)
    return attempt


def endpoint_drain(*, endpoint_pk: int, limit: int = 100) -> int:
    """Send due deliveries of one endpoint, oldest first, while its cap allows; returns count.

    A worker that finishes a delivery keeps draining the endpoint's backlog, so deliveries
    refused by the in-flight cap do not wait for the sweeper.
    """
    sent = 0
    while sent < limit:
        lease = delivery_lease(delivery_pk=None, endpoint_pk=endpoint_pk)
        if lease is None:
            break
        _attempt_leased(lease)
        sent += 1
    return sent


def deliveries_sweep(*, batch: int = 1000) -> list[str]:
    """Due, unleased deliveries with no live wake-up: mark them queued and return their ids."""
    now = timezone.now()
    stale = now - timedelta(seconds=conf.requeue_after_seconds())
    with transaction.atomic():
        ids = list(
            Delivery.objects.filter(_due(now))
            .filter(
                Q(queued_at__isnull=True)
                | Q(queued_at__lt=stale)
                | Q(queued_at__lt=F("next_attempt_at"))
            )
            .order_by("next_attempt_at")
            .values_list("public_id", flat=True)[:batch]
        )
        if ids:
            Delivery.objects.filter(public_id__in=ids).update(queued_at=now)
    return ids
