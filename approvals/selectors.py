"""Reading approval requests: the queue, history, one request, and waiting for a decision."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import Count, DecimalField, F, Q, QuerySet
from django.db.models.expressions import Func
from django.utils import timezone

from accounts.models import Organization, User
from accounts.selectors import membership_role_get
from agents.policy import format_number
from approvals import wakeup
from approvals.email_links import LinkInvalid, email_link_get
from approvals.models import ApprovalRequest, ApprovalVote, Grant
from approvals.services import (
    DECIDING_ROLES,
    approval_decider_problem,
    approval_expire,
    approval_expire_if_overdue,
)
from audit.models import AuditEntry
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


def _expire_overdue_of(organization: Organization, now: datetime) -> None:
    """Overdue pending requests are shown as expired: they are expired first (the beat task
    does the same within seconds; this only closes its lag)."""
    for request in ApprovalRequest.objects.filter(
        organization=organization, status=ApprovalRequest.Status.PENDING, expires_at__lte=now
    ).select_related("organization", "agent")[:200]:
        approval_expire(request=request, now=now)


def approval_list(
    *, organization: Organization, filters: ApprovalFilters | None = None
) -> QuerySet[ApprovalRequest]:
    """The organisation's requests, newest first, narrowed by ``filters`` (overdue pending
    ones expired first)."""
    filters = filters or ApprovalFilters()
    _expire_overdue_of(organization, timezone.now())
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


# --- the queue --------------------------------------------------------------------------------

AMOUNT_KEY = "amount"
QUEUE_LIMIT = 100


class ArgumentNumber(Func):
    """A top-level argument as a number when the call sent a JSON number, else NULL.

    A string, a boolean or a missing key is not an amount: such a request never falls
    inside an amount range (the range narrows the queue; it must not guess). ``key`` is a
    constant of this module, never user input.
    """

    output_field = DecimalField()

    def __init__(self, column: str, key: str) -> None:
        super().__init__(F(column))
        self.key = key

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        column, params = compiler.compile(self.get_source_expressions()[0])
        if connection.vendor == "postgresql":
            sql = (
                f"(CASE WHEN jsonb_typeof({column} -> '{self.key}') = 'number' "
                f"THEN ({column} ->> '{self.key}')::numeric END)"
            )
            return sql, [*params, *params]
        # SQLite: the CAST gives the expression REAL affinity, so a bound Decimal (sent
        # as text) compares as a number.
        path = f'$."{self.key}"'
        sql = (
            f"CAST(CASE WHEN json_type({column}, '{path}') IN ('integer', 'real') "
            f"THEN json_extract({column}, '{path}') END AS REAL)"
        )
        return sql, [*params, *params]


@dataclass(frozen=True)
class QueueFilters:
    agent: str = ""  # public id
    action: str = ""  # exact, ignoring case (actions are matched ignoring case)
    environment: str = ""
    amount_min: Decimal | None = None
    amount_max: Decimal | None = None
    newest_first: bool = False


def approval_queue(
    *, organization: Organization, filters: QueueFilters | None = None
) -> QuerySet[ApprovalRequest]:
    """The organisation's pending requests, oldest first (the one waiting longest on top),
    narrowed by ``filters``. An amount range keeps only calls whose ``amount`` argument is
    a number inside it."""
    filters = filters or QueueFilters()
    now = timezone.now()
    _expire_overdue_of(organization, now)
    qs = (
        ApprovalRequest.objects.filter(
            organization=organization,
            status=ApprovalRequest.Status.PENDING,
            expires_at__gt=now,
        )
        .select_related("agent")
        .annotate(approvals_count=Count("votes", filter=Q(votes__vote=ApprovalVote.Vote.APPROVE)))
    )
    if filters.agent:
        qs = qs.filter(agent__public_id=filters.agent)
    if filters.action:
        qs = qs.filter(action__iexact=filters.action)
    if filters.environment:
        qs = qs.filter(environment=filters.environment)
    if filters.amount_min is not None or filters.amount_max is not None:
        qs = qs.alias(amount_number=ArgumentNumber("arguments", AMOUNT_KEY))
        if filters.amount_min is not None:
            qs = qs.filter(amount_number__gte=filters.amount_min)
        if filters.amount_max is not None:
            qs = qs.filter(amount_number__lte=filters.amount_max)
    if filters.newest_first:
        return qs.order_by("-requested_at", "-id")
    return qs.order_by("requested_at", "id")


def approval_queue_actions(*, organization: Organization) -> list[str]:
    """The distinct actions waiting now (the queue's action filter offers them)."""
    return sorted(
        set(
            ApprovalRequest.objects.filter(
                organization=organization, status=ApprovalRequest.Status.PENDING
            ).values_list("action", flat=True)[:500]
        )
    )


@dataclass(frozen=True)
class AmountView:
    """How the queue shows a call's amount: ``420``, "amount missing" or the odd value."""

    text: str
    missing: bool = False
    not_a_number: bool = False


def argument_amount(arguments: Any) -> AmountView:
    if not isinstance(arguments, dict) or AMOUNT_KEY not in arguments:
        return AmountView(text="amount missing", missing=True)
    value = arguments[AMOUNT_KEY]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        shown = "null" if value is None else str(value)
        shown = shown if len(shown) <= 24 else shown[:23] + "…"
        return AmountView(text=shown, not_a_number=True)
    return AmountView(text=f"{value:,}" if isinstance(value, int) else f"{value:,.2f}")


def arguments_brief(arguments: Any, *, limit: int = 3, width: int = 32) -> str:
    """The first few arguments other than the amount, each value cut to ``width``."""
    if isinstance(arguments, dict):
        arguments = {k: v for k, v in arguments.items() if k != AMOUNT_KEY}
        if not arguments:
            return ""
    return arguments_summary(arguments, limit=limit, width=width)


# --- the detail page: neighbours and comparable calls ----------------------------------------

RECENT_CALLS = 10
SIMILAR_DECISIONS = 5


def approval_pending_neighbours(
    *, organization: Organization, approval: ApprovalRequest
) -> tuple[str | None, str | None]:
    """(previous, next) pending request around ``approval`` in the queue's order (oldest
    first): the action ids ``k`` and ``j`` go to. Two indexed single-row reads."""
    pending = ApprovalRequest.objects.filter(
        organization=organization,
        status=ApprovalRequest.Status.PENDING,
        expires_at__gt=timezone.now(),
    ).exclude(pk=approval.pk)
    at = approval.requested_at
    previous = (
        pending.filter(Q(requested_at__lt=at) | Q(requested_at=at, id__lt=approval.pk))
        .order_by("-requested_at", "-id")
        .values_list("action_id", flat=True)
        .first()
    )
    following = (
        pending.filter(Q(requested_at__gt=at) | Q(requested_at=at, id__gt=approval.pk))
        .order_by("requested_at", "id")
        .values_list("action_id", flat=True)
        .first()
    )
    return previous, following


def agent_recent_calls(*, approval: ApprovalRequest, limit: int = RECENT_CALLS) -> list[AuditEntry]:
    """The agent's latest checks of the same action before this one (the audit log's
    (agent, action, created_at) index; at most ``limit`` rows)."""
    return list(
        AuditEntry.objects.filter(
            organization_id=approval.organization_id,
            agent_id=approval.agent_id,
            action=approval.action,
            kind=AuditEntry.Kind.CHECK,
        )
        .exclude(public_id=approval.action_id)
        .only(
            "public_id", "created_at", "decision", "status", "arguments", "environment", "rule_name"
        )
        .order_by("-created_at", "-id")[:limit]
    )


DECIDED_STATUSES = (
    ApprovalRequest.Status.APPROVED,
    ApprovalRequest.Status.DENIED,
    ApprovalRequest.Status.EXPIRED,
    ApprovalRequest.Status.CANCELLED,
)


def approval_similar_decisions(
    *, approval: ApprovalRequest, limit: int = SIMILAR_DECISIONS
) -> list[ApprovalRequest]:
    """The last decided requests of the same agent and action, newest decision first.

    One read per final status, each an index range of the approvals' (agent, action,
    status, decided_at) index read backwards for at most ``limit`` rows: a single
    ``status IN (...)`` read cannot use that index's order and sorts every decided request
    of the agent and action instead (96 ms at 50,000 of them, measured on PostgreSQL).
    """
    found: list[ApprovalRequest] = []
    for status in DECIDED_STATUSES:
        found.extend(
            ApprovalRequest.objects.filter(
                agent_id=approval.agent_id,
                action=approval.action,
                status=status,
                decided_at__isnull=False,
            )
            .exclude(pk=approval.pk)
            .order_by("-decided_at", "-id")[:limit]
        )
    found.sort(key=lambda r: (r.decided_at, r.pk), reverse=True)
    return found[:limit]


def approval_decide_refusal(*, user: User, request: ApprovalRequest) -> str | None:
    """Why ``user`` cannot decide ``request`` (None: they can), in words for the Django admin,
    which lists every organisation's requests to a superuser: deciding is for the
    organisation's owners, admins and approvers, whoever runs the server."""
    role = membership_role_get(user=user, organization_id=request.organization_id)
    organization = request.organization.name
    if role is None:
        return (
            f"you are not a member of {organization}; only its owners, admins and approvers "
            "can decide its requests (a superuser sees every organisation's requests here "
            "but decides none of them)."
        )
    if role not in DECIDING_ROLES:
        return f"your role in {organization} ({role}) cannot decide approval requests."
    return None


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
