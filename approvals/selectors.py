"""Reading approval requests: the queue, history, one request, and waiting for a decision."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from accounts.models import Organization
from agents.policy import format_number
from approvals import wakeup
from approvals.models import ApprovalRequest, ApprovalVote, Grant
from approvals.services import approval_expire, approval_expire_if_overdue
from wardenproject.errors import NotFound
from wardenproject.jsonutil import iso

EXPIRED_MESSAGE = "The approval request expired without a decision."
CANCELLED_MESSAGE = "The approval request was cancelled."


def _current_status(action_id: str) -> tuple[str | None, datetime | None]:
    row = (
        ApprovalRequest.objects.filter(action_id=action_id)
        .values_list("status", "expires_at")
        .first()
    )
    return (row[0], row[1]) if row else (None, None)


def _release_connection() -> None:
    """Don't hold a database connection while a long-poll sleeps (100 waiters = 100
    connections otherwise). Inside a transaction (tests) the connection must stay."""
    if not connection.in_atomic_block:
        connection.close()


def approval_wait_for_decision(*, action_id: str, timeout: float) -> str | None:
    """Block until the request leaves ``pending`` or ``timeout`` seconds pass.

    Returns the status then (None if there is no request). Woken at once by the decision
    (see approvals.wakeup); a request whose deadline passes while waiting is expired then.
    """
    deadline = time.monotonic() + max(0.0, timeout)
    event = wakeup.register(action_id)
    try:
        while True:
            # Asked before each read: subscribed before it (no lost wake-up), or, while the
            # listener has lost Redis, the short database poll.
            slice_seconds = wakeup.wait_slice()
            status, expires_at = _current_status(action_id)
            if status == ApprovalRequest.Status.PENDING and expires_at <= timezone.now():
                request = ApprovalRequest.objects.get(action_id=action_id)
                status = approval_expire_if_overdue(request).status
            remaining = deadline - time.monotonic()
            if status != ApprovalRequest.Status.PENDING or remaining <= 0:
                return status
            until_expiry = (expires_at - timezone.now()).total_seconds()
            pause = max(0.0, min(remaining, slice_seconds, until_expiry + 0.01))
            if slice_seconds > wakeup.POLL_SECONDS:
                _release_connection()
            event.wait(pause)
            event.clear()
    finally:
        wakeup.unregister(action_id, event)
        _no_persistent_connection()


def _no_persistent_connection() -> None:
    """A long-poll thread should not then keep a persistent connection (CONN_MAX_AGE) idle:
    with many waiting agents that alone would exhaust PostgreSQL's connection slots. Django
    closes it when this request finishes."""
    if connection.connection is not None and not connection.in_atomic_block:
        connection.close_at = time.monotonic()


# --- one request ------------------------------------------------------------------------------


def approval_get_for_org(*, organization: Organization, action_id: str) -> ApprovalRequest:
    """The request ``action_id`` of ``organization`` or 404; past-deadline reads as expired."""
    try:
        request = (
            ApprovalRequest.objects.select_related("organization__plan", "agent", "check_entry")
            .prefetch_related("votes")
            .get(organization=organization, action_id=action_id)
        )
    except ApprovalRequest.DoesNotExist:
        raise NotFound("No such approval request.") from None
    return approval_expire_if_overdue(request)


# Arden's poll loop accepts exactly pending/approved/denied.
ARDEN_STATUS = {
    "pending": "pending",
    "approved": "approved",
    "allowed": "approved",
    "denied": "denied",
    "blocked": "denied",
    "expired": "denied",
    "cancelled": "denied",
}


def arden_status(native: str, notes: str | None) -> tuple[str, str | None]:
    """(status, message) as the Arden SDK, which knows only pending/approved/denied, reads a
    native status: expired and cancelled read as denied, with the reason in the message."""
    if native == ApprovalRequest.Status.EXPIRED:
        return "denied", EXPIRED_MESSAGE
    if native == ApprovalRequest.Status.CANCELLED:
        return "denied", notes or CANCELLED_MESSAGE
    return ARDEN_STATUS.get(native, "denied"), notes or None


def approval_compat_status(request: ApprovalRequest) -> tuple[str, str | None]:
    return arden_status(request.status, request.notes)


def approval_votes(request: ApprovalRequest) -> list[ApprovalVote]:
    return list(request.votes.all())


def arguments_rows(arguments: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Flatten arguments into readable (name, value) rows: nested keys join with dots."""
    rows: list[tuple[str, str]] = []
    if isinstance(arguments, dict):
        if not arguments and prefix:
            rows.append((prefix, "{}"))
        for key, value in arguments.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            rows.extend(arguments_rows(value, name))
    elif isinstance(arguments, list) and any(isinstance(v, (dict, list)) for v in arguments):
        for index, value in enumerate(arguments):
            rows.extend(arguments_rows(value, f"{prefix}[{index}]"))
    else:
        if isinstance(arguments, list):
            text = ", ".join(str(v) for v in arguments) or "[]"
        elif arguments is None:
            text = "null"
        elif isinstance(arguments, bool):
            text = "true" if arguments else "false"
        else:
            text = str(arguments)
        rows.append((prefix or "value", text))
    return rows


def arguments_summary(arguments: Any, limit: int = 6, width: int = 60) -> str:
    """A one-line human summary: ``amount=500, customer_id=cus_123, …``."""
    rows = arguments_rows(arguments)
    parts = []
    for name, value in rows[:limit]:
        value = value if len(value) <= width else value[: width - 1] + "…"
        parts.append(f"{name}={value}")
    if len(rows) > limit:
        parts.append(f"… (+{len(rows) - limit} more)")
    return ", ".join(parts)


# --- lists ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApprovalFilters:
    status: str = ""
    agent: str = ""  # public id or name
    environment: str = ""
    since: date | None = None
    until: date | None = None


def approval_list(
    *, organization: Organization, filters: ApprovalFilters | None = None
) -> QuerySet[ApprovalRequest]:
    """The organisation's requests, newest first, narrowed by ``filters``.

    Overdue pending requests are shown as expired: they are expired first (the beat task
    does the same within seconds; this only closes its lag).
    """
    filters = filters or ApprovalFilters()
    now = timezone.now()
    for request in ApprovalRequest.objects.filter(
        organization=organization, status=ApprovalRequest.Status.PENDING, expires_at__lte=now
    ).select_related("organization", "agent")[:200]:
        approval_expire(request=request, now=now)
    qs = (
        ApprovalRequest.objects.filter(organization=organization)
        .select_related("agent")
        .annotate(approvals_count=Count("votes", filter=Q(votes__vote=ApprovalVote.Vote.APPROVE)))
    )
    if filters.status:
        qs = qs.filter(status=filters.status)
    if filters.agent:
        qs = qs.filter(Q(agent__public_id=filters.agent) | Q(agent__name=filters.agent))
    if filters.environment:
        qs = qs.filter(environment=filters.environment)
    if filters.since:
        qs = qs.filter(requested_at__date__gte=filters.since)
    if filters.until:
        qs = qs.filter(requested_at__date__lte=filters.until)
    return qs.order_by("-requested_at", "-id")


def approval_pending_count(*, organization: Organization) -> int:
    return ApprovalRequest.objects.filter(
        organization=organization,
        status=ApprovalRequest.Status.PENDING,
        expires_at__gt=timezone.now(),
    ).count()


AGE_BUCKETS: dict[str, tuple[timedelta | None, timedelta | None]] = {
    "lt5m": (None, timedelta(minutes=5)),
    "5m-1h": (timedelta(minutes=5), timedelta(hours=1)),
    "1h-1d": (timedelta(hours=1), timedelta(days=1)),
    "gt1d": (timedelta(days=1), None),
}


def age_bucket_filter(bucket: str, now: datetime | None = None) -> Q:
    """Requests whose age (now - requested_at) is inside ``bucket``."""
    now = now or timezone.now()
    low, high = AGE_BUCKETS[bucket]
    q = Q()
    if low is not None:
        q &= Q(requested_at__lte=now - low)
    if high is not None:
        q &= Q(requested_at__gt=now - high)
    return q


# --- remembered approvals (grants) -----------------------------------------------------------


def _active_q(now: datetime) -> Q:
    return Q(revoked_at__isnull=True, expires_at__gt=now) & (
        Q(uses_left__isnull=True) | Q(uses_left__gt=0)
    )


def grant_list(
    *,
    organization: Organization,
    agent: str = "",
    for_agent: Any | None = None,
    active: bool | None = None,
    request: ApprovalRequest | None = None,
    now: datetime | None = None,
) -> QuerySet[Grant]:
    """The organisation's grants, newest first; ``agent``: a public id or name; ``active``:
    only those still usable (True) or only those revoked, expired or used up (False)."""
    now = now or timezone.now()
    qs = Grant.objects.filter(organization=organization).select_related("agent", "request")
    if agent:
        qs = qs.filter(Q(agent__public_id=agent) | Q(agent__name=agent))
    if for_agent is not None:
        qs = qs.filter(agent=for_agent)
    if request is not None:
        qs = qs.filter(request=request)
    if active is True:
        qs = qs.filter(_active_q(now))
    elif active is False:
        qs = qs.exclude(_active_q(now))
    return qs.order_by("-created_at", "-id")


def grant_get_for_org(*, organization: Organization | None, public_id: str) -> Grant:
    """The grant ``public_id`` of ``organization``, or 404 (another organisation's too)."""
    if organization is None:
        raise NotFound("No such grant.")
    try:
        return Grant.objects.select_related("agent", "request", "organization").get(
            organization=organization, public_id=public_id
        )
    except Grant.DoesNotExist:
        raise NotFound("No such grant.") from None


def grant_json(grant: Grant, now: datetime | None = None) -> dict[str, Any]:
    """A grant as the API shows it."""
    now = now or timezone.now()
    return {
        "id": grant.public_id,
        "kind": grant.kind,
        "active": grant.is_active(now),
        "agent_id": grant.agent.public_id,
        "agent_name": grant.agent.name,
        "environment": grant.environment,
        "action": grant.action,
        "rule": grant.rule_name or None,
        "rule_id": grant.rule_public_id or None,
        "arguments_hash": grant.arguments_hash or None,
        "session_id": grant.session_id or None,
        "max_amount": _amount_text(grant),
        "amount_field": grant.amount_field or None,
        "uses": grant.uses,
        "uses_left": grant.uses_left,
        "use_count": grant.use_count,
        "last_used_at": iso(grant.last_used_at),
        "expires_at": iso(grant.expires_at),
        "created_at": iso(grant.created_at),
        "created_by": grant.created_by_label,
        "action_id": grant.request.action_id if grant.request_id else None,
        "revoked_at": iso(grant.revoked_at),
        "revoked_by": grant.revoked_by_label or None,
    }


def _amount_text(grant: Grant) -> str | None:
    return format_number(grant.max_amount) if grant.max_amount is not None else None
