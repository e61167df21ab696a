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
from approvals import wakeup
from approvals.email_links import LinkInvalid, email_link_get
from approvals.models import ApprovalRequest, ApprovalVote
from approvals.services import (
    approval_decider_problem,
    approval_expire,
    approval_expire_if_overdue,
)
from wardenproject.errors import NotFound

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


@dataclass(frozen=True)
class LinkReview:
    """What an email link's page shows: the request (unless the link is invalid), and why
    it cannot be used (``problem`` empty: it can), with the page's HTTP status."""

    request: ApprovalRequest | None
    reviewer_email: str = ""
    problem: str = ""
    status: int = 200


def email_link_review(*, token: str) -> LinkReview:
    """The state of an email link, read without changing anything but an overdue request's
    expiry (or escalation), as every reader does."""
    try:
        link = email_link_get(token)
    except LinkInvalid as exc:
        return LinkReview(request=None, problem=exc.detail, status=404)
    if not link.user.is_active:
        return LinkReview(request=None, problem="This link is not valid.", status=404)
    request = approval_expire_if_overdue(link.request)
    review = {"request": request, "reviewer_email": link.user.email}
    if link.used_at is not None:
        return LinkReview(
            **review,
            problem="This link was already used: a decision was taken with it.",
            status=410,
        )
    if request.status == ApprovalRequest.Status.EXPIRED:
        return LinkReview(**review, problem="This request expired without a decision.", status=410)
    if request.status != ApprovalRequest.Status.PENDING:
        return LinkReview(
            **review,
            problem=f"This request was already decided elsewhere: it is {request.status}.",
            status=409,
        )
    problem = approval_decider_problem(request=request, user=link.user)
    if problem is not None:  # no longer a member (404) or no longer an approver (403)
        return LinkReview(request=None, problem=problem.detail, status=problem.status)
    return LinkReview(**review)


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


REDACTED = "[redacted]"


def _redact_path(value: Any, parts: list[str]) -> Any:
    if not parts:
        return REDACTED
    head, rest = parts[0], parts[1:]
    if isinstance(value, dict):
        if head == "*":
            return {k: _redact_path(v, rest) for k, v in value.items()}
        if head in value:
            return {**value, head: _redact_path(value[head], rest)}
        return value
    if isinstance(value, list):
        if head == "*":
            return [_redact_path(v, rest) for v in value]
        if head.isdigit() and int(head) < len(value):
            index = int(head)
            return [_redact_path(v, rest) if i == index else v for i, v in enumerate(value)]
    return value


def arguments_redacted(arguments: Any, paths: Any) -> Any:
    """``arguments`` with the value at each of the rule's ``redact`` paths (``card_number``,
    ``customer.email``, ``items.*.iban``) replaced by ``[redacted]``; a copy."""
    for path in paths or ():
        arguments = _redact_path(arguments, str(path).split("."))
    return arguments


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
