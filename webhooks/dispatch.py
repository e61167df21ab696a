"""The delivery engine: take an endpoint slot, lease a due delivery, send it, record it.

PostgreSQL is the truth and the broker only a wake-up. A worker sends a delivery only after
winning a conditional UPDATE that sets ``leased_until``; the next attempt time lives in the
row. A retry gets a wake-up for its due time (a Celery ``eta``, at most
``conf.wake_ahead_seconds()`` ahead, so no task waits long in a worker): queued by the failed
attempt if it is due that soon, otherwise by ``deliveries_sweep``, which also re-queues
whatever is due and has no live wake-up or lease. So a lost task, a broker outage or a killed
worker delays a delivery but never loses it.

Per-endpoint isolation: a worker may only lease deliveries of an endpoint while it holds one
of that endpoint's ``WARDEN_WEBHOOKS_MAX_IN_FLIGHT`` slots. On PostgreSQL a slot is a
session-level advisory lock taken with ``pg_try_advisory_lock``: taking one never waits (a
wake-up that finds every slot taken leaves at once, and the slot holders drain its
delivery), and a worker that dies releases its slots with its connection. Other databases
(the embedded SQLite default) count live leases instead, a soft cap.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import DatabaseError, connection, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from wardenproject.db import insert_statement, row_insert
from wardenproject.tasks import enqueue_now
from webhooks import conf, delivery, wakeups
from webhooks.crypto import SecretUnreadable
from webhooks.formats import build_request, format_sends
from webhooks.models import Attempt, Delivery, Endpoint, Event
from webhooks.services import (
    delivery_wake_queue,
    endpoint_set_enabled,
    endpoint_signing_secrets,
    endpoint_wake_at,
)

logger = logging.getLogger(__name__)

# First key of the two-key advisory locks: "WH" plus the slot number in the low byte.
_SLOT_NAMESPACE = 0x57480000


@dataclass
class Lease:
    delivery_id: int
    token: datetime


@dataclass
class Leased:
    """A leased delivery with what sending it needs: its event and endpoint."""

    lease: Lease
    attempt_count: int
    event: Event
    endpoint: Endpoint


def _due(now: datetime) -> Q:
    return Q(status=Delivery.Status.PENDING, next_attempt_at__lte=now) & (
        Q(leased_until__isnull=True) | Q(leased_until__lt=now)
    )


def _oldest_due(endpoint_pk: int):
    """The endpoint's due, unleased deliveries, oldest first (the ORM form of _DUE_SQL)."""
    return (
        Delivery.objects.filter(endpoint_id=endpoint_pk)
        .filter(_due(timezone.now()))
        .order_by("next_attempt_at", "pk")
    )


def _endpoint_lock_key(endpoint_pk: int) -> int:
    return endpoint_pk % 2_147_483_647  # the second key is an int4


@contextmanager
def endpoint_slot(endpoint_pk: int) -> Iterator[bool]:
    """Hold one of the endpoint's in-flight slots for the block; yields False if all are taken.

    Never waits. The slot belongs to this thread's database connection, so it is released
    when the block ends, or by PostgreSQL when the connection dies with its worker.
    """
    cap = conf.max_in_flight()
    if connection.vendor != "postgresql":
        yield _leases_below_cap(endpoint_pk, cap)
        return
    key = _endpoint_lock_key(endpoint_pk)
    with connection.cursor() as cursor:
        # The LIMIT stops the scan at the first slot won, so at most one lock is taken.
        cursor.execute(
            "SELECT s FROM generate_series(0, %s) AS s "
            "WHERE pg_try_advisory_lock(%s + s, %s) LIMIT 1",
            [cap - 1, _SLOT_NAMESPACE, key],
        )
        row = cursor.fetchone()
    if row is None:
        yield False
        return
    try:
        yield True
    finally:
        _slot_release(_SLOT_NAMESPACE + row[0], key)


def _leases_below_cap(endpoint_pk: int, cap: int) -> bool:
    """The soft cap of databases without advisory locks: count the endpoint's live leases."""
    busy = Delivery.objects.filter(
        endpoint_id=endpoint_pk, status=Delivery.Status.PENDING, leased_until__gt=timezone.now()
    ).count()
    return busy < cap


def _slot_release(namespace: int, key: int) -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [namespace, key])
    except DatabaseError:
        # The connection is broken or its transaction aborted: closing it releases every
        # session lock it holds (outside a transaction; inside one, the rollback's owner
        # closes it).
        logger.warning("could not release a webhook endpoint slot; closing the connection")
        if not connection.in_atomic_block:
            connection.close()


def delivery_lease(*, delivery_pk: int) -> Lease | None:
    """Lease one delivery if it is due and not leased: a conditional UPDATE, one winner."""
    now = timezone.now()
    token = now + timedelta(seconds=conf.lease_seconds())
    won = Delivery.objects.filter(pk=delivery_pk).filter(_due(now)).update(leased_until=token)
    return Lease(delivery_pk, token) if won == 1 else None


# Lease and load in one statement (PostgreSQL): the delivery row is updated only if it is
# still due and unleased, and its event and endpoint come back with it. {target} is either a
# delivery id or the endpoint's oldest due delivery, skipping rows another drainer holds.
_LEASE_SQL = """
UPDATE webhooks_delivery AS d SET leased_until = %(token)s
FROM webhooks_event AS e, webhooks_endpoint AS p
WHERE d.id = {target} AND e.id = d.event_id AND p.id = d.endpoint_id
  AND d.status = 'pending' AND d.next_attempt_at <= %(now)s
  AND (d.leased_until IS NULL OR d.leased_until < %(now)s)
RETURNING d.id, d.attempt_count,
  e.id, e.public_id, e.event_type, e.data, e.created_at, e.organization_id,
  p.id, p.public_id, p.organization_id, p.url, p.format, p.enabled, p.disabled_reason,
  p.secret, p.previous_secret, p.previous_secret_expires_at, p.failing_since
"""
_DUE_SQL = """
  SELECT id FROM webhooks_delivery
  WHERE endpoint_id = %(endpoint)s AND status = 'pending' AND next_attempt_at <= %(now)s
    AND (leased_until IS NULL OR leased_until < %(now)s)
  ORDER BY next_attempt_at, id LIMIT 1"""
_OLDEST_DUE_SQL = f"({_DUE_SQL} FOR UPDATE SKIP LOCKED)"
_LEASE_ONE_SQL = _LEASE_SQL.format(target="%(delivery)s")
_LEASE_NEXT_SQL = _LEASE_SQL.format(target=_OLDEST_DUE_SQL)
_EVENT_COLUMNS = ("id", "public_id", "event_type", "data", "created_at", "organization_id")
_ENDPOINT_COLUMNS = (
    "id", "public_id", "organization_id", "url", "format", "enabled", "disabled_reason",
    "secret", "previous_secret", "previous_secret_expires_at", "failing_since",
)  # fmt: skip


def _lease_and_load(*, delivery_pk: int | None = None, endpoint_pk: int | None = None):
    """Lease ``delivery_pk``, or else the endpoint's oldest due delivery, and load it."""
    now = timezone.now()
    token = now + timedelta(seconds=conf.lease_seconds())
    if connection.vendor != "postgresql":
        if delivery_pk is None:
            delivery_pk = _oldest_due(endpoint_pk).values_list("pk", flat=True).first()
        lease = delivery_lease(delivery_pk=delivery_pk) if delivery_pk is not None else None
        if lease is None:
            return None
        item = Delivery.objects.select_related("event", "endpoint").get(pk=lease.delivery_id)
        return Leased(lease, item.attempt_count, item.event, item.endpoint)
    sql = _LEASE_ONE_SQL if delivery_pk is not None else _LEASE_NEXT_SQL
    with connection.cursor() as cursor:
        cursor.execute(
            sql, {"token": token, "now": now, "delivery": delivery_pk, "endpoint": endpoint_pk}
        )
        row = cursor.fetchone()
    if row is None:
        return None
    event_values = row[2:8]
    endpoint_values = row[8:]
    data = event_values[3]
    event = Event(
        **dict(zip(_EVENT_COLUMNS, event_values, strict=True))
        | {"data": json.loads(data) if isinstance(data, str) else data}
    )
    endpoint = Endpoint(**dict(zip(_ENDPOINT_COLUMNS, endpoint_values, strict=True)))
    event._state.adding = endpoint._state.adding = False
    return Leased(Lease(row[0], token), row[1], event, endpoint)


def _has_due(endpoint_pk: int) -> bool:
    if connection.vendor != "postgresql":
        return _oldest_due(endpoint_pk).exists()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT EXISTS ({_DUE_SQL})",
            {"endpoint": endpoint_pk, "now": timezone.now()},
        )
        return cursor.fetchone()[0]


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


def _notify_disabled_on_commit(endpoint: Endpoint) -> None:
    """The email goes from the mail queue: a slow mail server must not hold this worker."""
    from webhooks.tasks import notify_disabled

    transaction.on_commit(lambda: enqueue_now(notify_disabled, endpoint.pk))


def _endpoint_record_outcome(endpoint: Endpoint, result: delivery.SendResult) -> None:
    now = timezone.now()
    if result.ok:
        if endpoint.failing_since is not None:
            Endpoint.objects.filter(pk=endpoint.pk).update(failing_since=None)
        return
    if result.status_code == 410:
        endpoint_set_enabled(
            endpoint=endpoint,
            actor=None,
            enabled=False,
            source="delivery",
            reason=f"The receiver answered 410 Gone at {now:%Y-%m-%d %H:%M} UTC.",
        )
        return
    Endpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=True).update(failing_since=now)
    endpoint.refresh_from_db(fields=["failing_since", "enabled"])
    failing_for = (now - endpoint.failing_since).total_seconds() if endpoint.failing_since else 0
    if endpoint.enabled and failing_for >= conf.disable_after_seconds():
        endpoint_set_enabled(
            endpoint=endpoint,
            actor=None,
            enabled=False,
            source="delivery",
            reason=f"Every delivery failed for {failing_for / 86400:.0f} days.",
        )
        _notify_disabled_on_commit(endpoint)


def _delivery_keys(delivery_public_id: str) -> tuple[int, int] | None:
    """(pk, endpoint pk) of a delivery, or None."""
    return (
        Delivery.objects.filter(public_id=delivery_public_id)
        .values_list("pk", "endpoint_id")
        .first()
    )


def delivery_attempt(*, delivery_public_id: str) -> Attempt | None:
    """Send one delivery now if it is due, unleased and its endpoint has a free slot.

    Returns its attempt, or None (another worker has it, it is not due, or every slot of its
    endpoint is taken: the slot holders send it when they drain the endpoint).
    """
    row = _delivery_keys(delivery_public_id)
    if row is None:
        return None
    with endpoint_slot(row[1]) as got:
        if not got:
            return None
        leased = _lease_and_load(delivery_pk=row[0])
        return _attempt_leased(leased) if leased else None


def _attempt_leased(leased: Leased) -> Attempt:
    endpoint = leased.endpoint
    now = timezone.now()
    headers: dict[str, str] = {}
    body = b""
    # Queued before its format refused it (an Arden endpoint's pending notice): never sent,
    # and no mark against the endpoint, whose receiver did nothing wrong.
    unsendable = not format_sends(endpoint.format, leased.event.event_type)
    if not endpoint.enabled:
        result = delivery.SendResult(
            error=f"Endpoint disabled: {endpoint.disabled_reason}", permanent=True
        )
    elif unsendable:
        result = delivery.SendResult(
            error="Not sent: Arden-format endpoints carry decision events only, "
            f"not {leased.event.event_type}.",
            permanent=True,
        )
    else:
        try:
            secrets = endpoint_signing_secrets(endpoint, now=now)
        except SecretUnreadable as exc:
            # Retried on the normal schedule: putting the old key back in SECRET_KEY_FALLBACKS
            # (or rotating the secret) lets the delivery go out, and the attempt log says what
            # is wrong meanwhile.
            result = delivery.SendResult(
                error=f"Cannot sign: {exc}. Put the key it was stored under back in "
                "SECRET_KEY_FALLBACKS, or rotate this endpoint's secret."
            )
        else:
            headers, body = build_request(
                leased.event, endpoint.format, secrets, int(now.timestamp())
            )
            result = delivery.post(endpoint.url, headers, body)
    attempt = Attempt(
        delivery_id=leased.lease.delivery_id,
        number=leased.attempt_count + 1,
        created_at=now,
        request_url=endpoint.url,
        request_headers=headers,
        request_body=body.decode("utf-8", errors="replace"),
        response_status=result.status_code,
        response_body=result.response_body,
        duration_ms=result.duration_ms,
        error=result.error,
    )
    update = _delivery_state_after(attempt.number, result)
    due = update["next_attempt_at"]
    wake = due is not None and (due - timezone.now()).total_seconds() <= conf.wake_ahead_seconds()
    if wake:
        # A retry due soon gets a wake-up of its own for its due time (queued_at tells the
        # sweeper so); later ones are queued by the sweeper once they come this near.
        update["queued_at"] = due
    if result.ok and not endpoint.failing_since:
        # The common case, in one statement and one commit: nothing about the endpoint changes.
        _attempt_record(leased.lease, attempt, update)
    else:
        with transaction.atomic():  # the attempt, the delivery's and the endpoint's state
            _attempt_record(leased.lease, attempt, update)
            if endpoint.enabled and not unsendable:
                _endpoint_record_outcome(endpoint, result)
    if wake:
        transaction.on_commit(lambda: endpoint_wake_at(endpoint_pk=endpoint.pk, due=due))
    return attempt


def _delivery_state_after(attempt_count: int, result: delivery.SendResult) -> dict:
    finished = timezone.now()
    update: dict = {
        "attempt_count": attempt_count,
        "last_status_code": result.status_code,
        "last_error": result.error,
        "status": Delivery.Status.PENDING.value,
        "completed_at": None,
        "next_attempt_at": None,  # None keeps the column as it is
        "queued_at": None,  # likewise
    }
    if result.ok:
        update |= {"status": Delivery.Status.SUCCEEDED.value, "completed_at": finished}
    else:
        delay = None if result.permanent else _next_delay(attempt_count, result)
        if delay is None:
            update |= {"status": Delivery.Status.FAILED.value, "completed_at": finished}
        else:
            update["next_attempt_at"] = finished + timedelta(seconds=delay)
    return update


# Only the lease holder records the delivery's new state (a lease that expired mid-send lost
# it); the attempt is logged either way. One statement: one round trip, one commit.
_RECORD_SQL = """
WITH attempt AS (INSERT INTO {table} ({columns}) VALUES ({placeholders}) RETURNING {pk}),
delivery AS (
  UPDATE webhooks_delivery SET
    attempt_count = %s, leased_until = NULL, last_status_code = %s, last_error = %s,
    status = %s, completed_at = %s, next_attempt_at = COALESCE(%s, next_attempt_at),
    queued_at = COALESCE(%s, queued_at)
  WHERE id = %s AND leased_until = %s
)
SELECT {pk} FROM attempt
"""


def _attempt_record(lease: Lease, attempt: Attempt, update: dict) -> None:
    if connection.vendor != "postgresql":  # no data-modifying WITH: two statements
        keep = ("next_attempt_at", "queued_at")  # None keeps the column as it is
        changes = {k: v for k, v in update.items() if k not in keep or v is not None}
        with transaction.atomic():
            row_insert(attempt)
            Delivery.objects.filter(pk=lease.delivery_id, leased_until=lease.token).update(
                leased_until=None, **changes
            )
        return
    statement = insert_statement(Attempt)
    sql = _RECORD_SQL.format(
        table=statement.table,
        columns=statement.columns,
        placeholders=statement.placeholders,
        pk=statement.pk_column,
    )
    params = [
        *statement.params(attempt, connection),
        update["attempt_count"],
        update["last_status_code"],
        update["last_error"],
        update["status"],
        update["completed_at"],
        update["next_attempt_at"],
        update["queued_at"],
        lease.delivery_id,
        lease.token,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        attempt.pk = cursor.fetchone()[0]
    attempt._state.adding = False


def endpoint_drain(*, endpoint_pk: int, first: int | None = None, limit: int = 1000) -> int:
    """Send the endpoint's due deliveries, oldest first, while holding a slot; returns count.

    ``first`` (a delivery pk) is sent before the backlog; if another worker already has it,
    that worker is draining the endpoint and this call leaves. A worker that wins a slot
    keeps draining the backlog, so wake-ups turned away because every slot was taken (or
    never queued, see webhooks/wakeups.py) do not wait for the sweeper; after letting its
    slot go it looks once more, since a wake-up turned away just before the release would
    otherwise wait for the sweeper. After ``limit`` sends it hands the rest of the backlog
    to a fresh wake-up, so one task does not hold a worker thread indefinitely.
    """
    sent = 0
    while True:
        with endpoint_slot(endpoint_pk) as got:
            if not got:
                return sent
            if first is not None:
                leased = _lease_and_load(delivery_pk=first)
                if leased is None:
                    return sent
                _attempt_leased(leased)
                sent += 1
                first = None
            while sent < limit and (leased := _lease_and_load(endpoint_pk=endpoint_pk)):
                _attempt_leased(leased)
                sent += 1
        if not _has_due(endpoint_pk):
            return sent
        if sent >= limit:
            _wake_requeue(endpoint_pk)
            return sent


def _wake_requeue(endpoint_pk: int) -> None:
    oldest = _oldest_due(endpoint_pk).only("public_id", "endpoint_id").first()
    if oldest is not None:
        delivery_wake_queue(oldest)


def delivery_wake(*, delivery_public_id: str) -> int:
    """A wake-up: send this delivery, then its endpoint's backlog; returns how many were sent."""
    row = _delivery_keys(delivery_public_id)
    if row is None:
        return 0
    # Before draining: a delivery committed from now on queues a wake-up of its own.
    wakeups.wake_release(row[1])
    return endpoint_drain(endpoint_pk=row[1], first=row[0])


def deliveries_sweep(*, batch: int = 1000) -> list[tuple[int, datetime]]:
    """Deliveries due now or within the look-ahead, unleased, with no wake-up queued for
    their due time: mark them queued and return the wake-ups to queue, (endpoint pk, time),
    one per endpoint and time (a woken drain sends every due delivery of its endpoint)."""
    now = timezone.now()
    stale = now - timedelta(seconds=conf.requeue_after_seconds())
    ahead = now + timedelta(seconds=conf.wake_ahead_seconds())
    with transaction.atomic():
        rows = list(
            Delivery.objects.filter(
                status=Delivery.Status.PENDING,
                next_attempt_at__lte=ahead,
            )
            .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
            .filter(
                Q(queued_at__isnull=True)
                | Q(queued_at__lt=stale)
                | Q(queued_at__lt=F("next_attempt_at"))
            )
            .order_by("next_attempt_at")
            .values_list("pk", "endpoint_id", "next_attempt_at")[:batch]
        )
        if rows:
            # A wake-up is queued for the due time (or now, for one already due): the
            # sweeper looks again only if it is still undelivered REQUEUE_AFTER after that.
            Delivery.objects.filter(pk__in=[pk for pk, _, _ in rows]).update(
                queued_at=Greatest(F("next_attempt_at"), Value(now))
            )
    return sorted({(endpoint, wakeups.wake_time(max(due, now))) for _, endpoint, due in rows})
