"""Webhook writes: endpoints, secrets, emitting events into the outbox, replay.

Delivery itself (leasing, sending, retrying, sweeping) lives in ``webhooks/dispatch.py``.
"""

from __future__ import annotations

import base64
import secrets as random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import Organization, User
from accounts.plans import Feature, plan_allows, plan_require
from audit.services import audit_record_change, model_snapshot
from wardenproject.db import row_insert
from wardenproject.errors import ValidationFailed
from webhooks import conf, wakeups
from webhooks.crypto import SecretUnreadable, secret_decrypt, secret_encrypt, secret_reencrypt
from webhooks.delivery import url_address_problem, url_problem
from webhooks.formats import subscription_refusal
from webhooks.models import Delivery, Endpoint, Event

EVENT_TYPES = (
    "log.pending_approval",
    "approval.approved",
    "approval.rejected",
    "approval.expired",
    "approval.escalated",
    "webhook.test",
)
DEFAULT_EVENTS = ["approval.approved", "approval.rejected", "approval.expired"]


@dataclass
class EndpointWithSecret:
    """An endpoint and its new plaintext secret: the only time the secret is shown."""

    endpoint: Endpoint
    secret: str


def secret_generate(fmt: str) -> str:
    if fmt == Endpoint.Format.STANDARD:
        return "whsec_" + base64.b64encode(random.token_bytes(32)).decode()
    return "whsk_" + random.token_urlsafe(32)


def endpoint_signing_secrets(endpoint: Endpoint, *, now: datetime | None = None) -> list[str]:
    """Plaintext secrets to sign with: current first, then the previous during its grace."""
    now = now or timezone.now()
    found = [secret_decrypt(endpoint.secret)]
    if (
        endpoint.previous_secret
        and endpoint.previous_secret_expires_at
        and endpoint.previous_secret_expires_at > now
    ):
        found.append(secret_decrypt(endpoint.previous_secret))
    return found


def _clean_url(url: str) -> str:
    url = (url or "").strip()
    if len(url) > 500:
        raise ValidationFailed("The URL is longer than 500 characters.", field="url")
    problem = url_problem(url) or url_address_problem(url)
    if problem:
        raise ValidationFailed(problem, field="url")
    return url


def event_types_for_format(fmt: str) -> list[str]:
    """The event types an endpoint of format ``fmt`` may subscribe to."""
    return [e for e in EVENT_TYPES if subscription_refusal(fmt, [e]) is None]


def _clean_events(events: Any, fmt: str) -> list[str]:
    if isinstance(events, str):
        events = [e.strip() for e in events.split(",") if e.strip()]
    if not isinstance(events, list | tuple) or not events:
        raise ValidationFailed("Choose at least one event.", field="events")
    unknown = [e for e in events if e not in EVENT_TYPES]
    if unknown:
        raise ValidationFailed(
            f"Unknown event type {unknown[0]!r}; known: {', '.join(EVENT_TYPES)}.",
            field="events",
        )
    refusal = subscription_refusal(fmt, events)
    if refusal:
        raise ValidationFailed(refusal, field="events")
    return sorted(set(events), key=EVENT_TYPES.index)


def _clean_format(fmt: str) -> str:
    if fmt not in Endpoint.Format.values:
        raise ValidationFailed(
            f"Unknown format {fmt!r}; use one of {', '.join(Endpoint.Format.values)}.",
            field="format",
        )
    return fmt


def _clean_agents(organization: Organization, agents: Any) -> list:
    from agents.models import Agent

    if not agents:
        return []
    if not isinstance(agents, list | tuple):
        raise ValidationFailed("agents must be a list of agent ids or names.", field="agents")
    found = []
    for ref in agents:
        agent = (
            Agent.objects.filter(organization=organization, public_id=str(ref)).first()
            or Agent.objects.filter(organization=organization, name=str(ref)).first()
        )
        if agent is None:
            raise ValidationFailed(f"No agent {ref!r} in this organisation.", field="agents")
        found.append(agent)
    return found


# What the audit log keeps of an endpoint: never its secrets (a rotation says "rotated").
_AUDITED_FIELDS = ["url", "description", "format", "events", "enabled", "disabled_reason"]


def _endpoint_snapshot(endpoint: Endpoint) -> dict[str, Any]:
    snapshot = model_snapshot(endpoint, _AUDITED_FIELDS)
    snapshot["agents"] = sorted(endpoint.agents.values_list("public_id", flat=True))
    return snapshot


def _endpoint_audit(
    *,
    endpoint: Endpoint,
    actor: User | None,
    verb: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    source: str,
) -> None:
    audit_record_change(
        organization=endpoint.organization,
        actor_user=actor,
        target=endpoint,
        verb=verb,
        before=before,
        after=after,
        source=source,
    )


def _endpoint_lock(endpoint: Endpoint) -> Endpoint:
    """The endpoint's row, locked for the rest of the transaction (read fresh: the audit
    entry's "before" is what was stored, not what the caller loaded earlier)."""
    locked = Endpoint.objects.select_for_update(of=("self",)).get(pk=endpoint.pk)
    locked.organization = endpoint.organization
    return locked


def endpoint_create(
    *,
    organization: Organization,
    actor: User | None,
    url: str,
    events: Any = None,
    fmt: str = Endpoint.Format.STANDARD,
    description: str = "",
    agents: Any = None,
    enabled: bool = True,
    source: str = "api",
) -> EndpointWithSecret:
    plan_require(organization, Feature.WEBHOOKS)
    url = _clean_url(url)
    fmt = _clean_format(fmt)
    events = _clean_events(DEFAULT_EVENTS if events is None else events, fmt)
    agent_objs = _clean_agents(organization, agents)
    if len(description or "") > 200:
        raise ValidationFailed(
            "The description is longer than 200 characters.", field="description"
        )
    secret = secret_generate(fmt)
    with transaction.atomic():
        endpoint = Endpoint.objects.create(
            organization=organization,
            url=url,
            description=description or "",
            events=events,
            format=fmt,
            enabled=enabled,
            secret=secret_encrypt(secret),
        )
        endpoint.agents.set(agent_objs)
        _endpoint_audit(
            endpoint=endpoint,
            actor=actor,
            verb="created",
            before=None,
            after=_endpoint_snapshot(endpoint),
            source=source,
        )
    return EndpointWithSecret(endpoint=endpoint, secret=secret)


def endpoint_update(
    *,
    endpoint: Endpoint,
    actor: User | None,
    url: str | None = None,
    events: Any = None,
    description: str | None = None,
    agents: Any = None,
    enabled: bool | None = None,
    source: str = "api",
) -> Endpoint:
    """Change an endpoint. The format is fixed at creation (its secret's shape depends on it).

    Audited when something changed, with the endpoint before and after."""
    plan_require(endpoint.organization, Feature.WEBHOOKS)
    url = _clean_url(url) if url is not None else None
    if events is not None:
        events = _clean_events(events, endpoint.format)
    if description is not None and len(description) > 200:
        raise ValidationFailed(
            "The description is longer than 200 characters.", field="description"
        )
    agent_objs = _clean_agents(endpoint.organization, agents) if agents is not None else None
    with transaction.atomic():
        endpoint = _endpoint_lock(endpoint)
        before = _endpoint_snapshot(endpoint)
        if url is not None:
            endpoint.url = url
        if events is not None:
            endpoint.events = events
        if description is not None:
            endpoint.description = description
        if enabled is not None:
            _enabled_set(endpoint, enabled=enabled, reason="")
        endpoint.save()
        if agent_objs is not None:
            endpoint.agents.set(agent_objs)
        after = _endpoint_snapshot(endpoint)
        if after != before:
            _endpoint_audit(
                endpoint=endpoint,
                actor=actor,
                verb="updated",
                before=before,
                after=after,
                source=source,
            )
    return endpoint


def _enabled_set(endpoint: Endpoint, *, enabled: bool, reason: str) -> None:
    endpoint.enabled = enabled
    if enabled:
        endpoint.disabled_reason = ""
        endpoint.failing_since = None
    else:
        endpoint.disabled_reason = reason or "Disabled by a member."


def endpoint_set_enabled(
    *, endpoint: Endpoint, actor: User | None, enabled: bool, reason: str = "", source: str = "api"
) -> Endpoint:
    """Turn deliveries to the endpoint on or off. ``actor`` None: Warden itself (a receiver
    answering 410 Gone, or failing for too long), recorded as the system."""
    with transaction.atomic():
        endpoint = _endpoint_lock(endpoint)
        before = model_snapshot(endpoint, ["enabled", "disabled_reason"])
        _enabled_set(endpoint, enabled=enabled, reason=reason)
        endpoint.save(update_fields=["enabled", "disabled_reason", "failing_since", "updated_at"])
        after = model_snapshot(endpoint, ["enabled", "disabled_reason"])
        if after != before:
            _endpoint_audit(
                endpoint=endpoint,
                actor=actor,
                verb="enabled" if enabled else "disabled",
                before=before,
                after=after,
                source=source,
            )
    return endpoint


def endpoint_delete(*, endpoint: Endpoint, actor: User | None, source: str = "api") -> None:
    with transaction.atomic():
        endpoint = _endpoint_lock(endpoint)
        _endpoint_audit(
            endpoint=endpoint,
            actor=actor,
            verb="deleted",
            before=_endpoint_snapshot(endpoint),
            after=None,
            source=source,
        )
        endpoint.delete()


def endpoint_rotate_secret(
    *,
    endpoint: Endpoint,
    actor: User | None,
    grace_seconds: float | None = None,
    source: str = "api",
) -> EndpointWithSecret:
    """New secret now; the old one keeps signing (standard format) until the grace ends.

    The audit entry says the secret was rotated and until when the old one signs; neither
    secret's value (nor its ciphertext) is ever written to the log."""
    plan_require(endpoint.organization, Feature.WEBHOOKS)
    grace = conf.rotation_grace_seconds() if grace_seconds is None else grace_seconds
    secret = secret_generate(endpoint.format)
    with transaction.atomic():
        endpoint = _endpoint_lock(endpoint)
        before = model_snapshot(endpoint, ["previous_secret_expires_at"])
        endpoint.previous_secret = endpoint.secret if grace > 0 else ""
        endpoint.previous_secret_expires_at = (
            timezone.now() + timedelta(seconds=grace) if grace > 0 else None
        )
        endpoint.secret = secret_encrypt(secret)
        endpoint.save(
            update_fields=["secret", "previous_secret", "previous_secret_expires_at", "updated_at"]
        )
        _endpoint_audit(
            endpoint=endpoint,
            actor=actor,
            verb="rotated the secret of",
            before=before,
            after={
                "secret": "rotated",
                **model_snapshot(endpoint, ["previous_secret_expires_at"]),
            },
            source=source,
        )
    return EndpointWithSecret(endpoint=endpoint, secret=secret)


@dataclass
class ReencryptResult:
    secrets: int
    endpoints: int
    unreadable: list[str]  # "we_...: secret" for each value no key could read


def endpoint_secrets_reencrypt() -> ReencryptResult:
    """Rewrite every stored endpoint secret under the current SECRET_KEY.

    After SECRET_KEY is rotated (the old value in SECRET_KEY_FALLBACKS), this lets the old
    key leave the fallbacks. Also converts values from before Fernet. Each endpoint is
    rewritten under a row lock, so a concurrent rotation is never overwritten.
    """
    result = ReencryptResult(secrets=0, endpoints=0, unreadable=[])
    for pk in Endpoint.objects.order_by("pk").values_list("pk", flat=True):
        with transaction.atomic():
            endpoint = (
                Endpoint.objects.select_for_update(of=("self",))
                .only("pk", "public_id", "secret", "previous_secret")
                .filter(pk=pk)
                .first()
            )
            if endpoint is None:
                continue
            changed = []
            for field in ("secret", "previous_secret"):
                stored = getattr(endpoint, field)
                if not stored:
                    continue
                try:
                    setattr(endpoint, field, secret_reencrypt(stored))
                except SecretUnreadable:
                    result.unreadable.append(f"{endpoint.public_id}: {field}")
                    continue
                changed.append(field)
            if changed:
                endpoint.save(update_fields=changed)
                result.secrets += len(changed)
                result.endpoints += 1
    return result


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
    # savepoint=False: inside the caller's transaction (the usual case) a savepoint would
    # only cost two round trips; the event and its deliveries stand or fall with the change.
    with transaction.atomic(savepoint=False):
        # One INSERT each (wardenproject/db.py): events are written at the rate of decisions.
        event = row_insert(
            Event(
                organization=organization,
                event_type=event_type,
                agent=agent,
                action_id=action_id,
                data=data,
            )
        )
        if not plan_allows(organization, Feature.WEBHOOKS):
            return event
        _create_deliveries(event, _subscribed_endpoint_pks(organization, event_type, agent))
    return event


def _subscribed_endpoint_pks(
    organization: Organization, event_type: str, agent: Any | None
) -> list[int]:
    """Enabled endpoints that take ``event_type`` (and ``agent``, if they name agents).

    One query: a row per (endpoint, agent it is limited to), ``None`` for "every agent".
    A subscription the endpoint's format refuses (an Arden endpoint stored with a pending
    notice before they were refused, or edited in the admin) is never served.
    """
    agents: dict[int, set[int | None]] = {}
    for pk, subscribed, fmt, agent_pk in Endpoint.objects.filter(
        organization=organization, enabled=True
    ).values_list("pk", "events", "format", "agents"):
        if event_type in subscribed and subscription_refusal(fmt, [event_type]) is None:
            agents.setdefault(pk, set()).add(agent_pk)
    return [
        pk
        for pk, limited_to in agents.items()
        if agent is None or limited_to == {None} or agent.pk in limited_to
    ]


def _create_deliveries(event: Event, endpoint_pks: list[int]) -> list[Delivery]:
    if not endpoint_pks:
        return []
    now = timezone.now()
    deliveries = [
        row_insert(Delivery(event=event, endpoint_id=pk, next_attempt_at=now, queued_at=now))
        for pk in endpoint_pks
    ]
    _queue_deliveries(deliveries)
    return deliveries


def _queue_deliveries(deliveries: list[Delivery]) -> None:
    """Wake the workers after commit, one pending wake-up per endpoint (webhooks/wakeups.py);
    the sweeper covers a lost one."""
    for item in deliveries:
        transaction.on_commit(lambda item=item: delivery_wake_queue(item))


def delivery_wake_queue(item: Delivery) -> None:
    """Queue a wake-up for ``item`` now, unless one is already pending for its endpoint."""
    from wardenproject.tasks import enqueue_now
    from webhooks.tasks import deliver

    if wakeups.wake_claim(item.endpoint_id) and not enqueue_now(deliver, item.public_id):
        wakeups.wake_release(item.endpoint_id)


def endpoint_wake_at(*, endpoint_pk: int, due: datetime) -> bool:
    """Queue a drain of the endpoint for when ``due`` comes (a retry), unless one is queued
    for the same half-second (webhooks/wakeups.py). False if the broker is unreachable."""
    from wardenproject.tasks import enqueue_now
    from webhooks.tasks import drain

    at = wakeups.wake_time(due)
    if not wakeups.wake_at_claim(endpoint_pk, at):
        return True
    if enqueue_now(drain, endpoint_pk, eta=at):
        return True
    wakeups.wake_at_release(endpoint_pk, at)
    return False


def test_event_data(endpoint: Endpoint) -> dict[str, Any]:
    now = timezone.now().isoformat()
    return {
        "action_id": "act_test_" + random.token_hex(6),
        "agent_id": None,
        "agent_name": None,
        "action": "warden.webhook_test",
        "arguments": {"message": "This is a test event from Warden."},
        "status": "test",
        "environment": "test",
        "session_id": None,
        "rule": None,
        "reason": "Test event sent by a member.",
        "requested_at": now,
        "expires_at": None,
        "decided_at": None,
        "decided_by": None,
        "notes": None,
        "endpoint_id": endpoint.public_id,
    }


def endpoint_send_test(*, endpoint: Endpoint) -> Delivery:
    """Send a ``webhook.test`` event to this endpoint only, subscribed or not."""
    plan_require(endpoint.organization, Feature.WEBHOOKS)
    with transaction.atomic():
        event = Event.objects.create(
            organization=endpoint.organization,
            event_type="webhook.test",
            data=test_event_data(endpoint),
        )
        (delivery,) = _create_deliveries(event, [endpoint.pk])
    return delivery


def _requeue(queryset) -> int:
    now = timezone.now()
    deliveries = list(queryset.only("public_id", "endpoint_id"))
    with transaction.atomic():
        Delivery.objects.filter(pk__in=[d.pk for d in deliveries]).update(
            status=Delivery.Status.PENDING,
            attempt_count=0,
            next_attempt_at=now,
            queued_at=now,
            leased_until=None,
            completed_at=None,
        )
        _queue_deliveries(deliveries)
    return len(deliveries)


def delivery_resend(*, delivery: Delivery) -> Delivery:
    """Deliver again now, with a fresh retry schedule (same event id)."""
    plan_require(delivery.endpoint.organization, Feature.WEBHOOKS)
    _requeue(Delivery.objects.filter(pk=delivery.pk))
    delivery.refresh_from_db()
    return delivery


def deliveries_recover(*, endpoint: Endpoint, since: datetime) -> int:
    """Re-send every failed delivery of ``endpoint`` created since ``since``; returns how many."""
    plan_require(endpoint.organization, Feature.WEBHOOKS)
    return _requeue(
        Delivery.objects.filter(
            endpoint=endpoint, status=Delivery.Status.FAILED, created_at__gte=since
        )
    )
