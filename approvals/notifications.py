"""Emailing reviewers about new approval requests, one by one or grouped into a digest.

The Celery task ``approvals_notify`` calls ``approval_notify_reviewers`` after each request
is created. It re-reads what is pending and not yet notified, so several tasks racing for
the same requests send each request once (rows are claimed with a conditional UPDATE).
A burst (more than ``DIGEST_THRESHOLD`` requests in ``DIGEST_WINDOW``) turns into at most
one digest per window instead of a flood.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db.models import Max
from django.urls import reverse
from django.utils import timezone

from accounts.models import Organization, User
from approvals.models import ApprovalRequest
from approvals.selectors import arguments_summary
from approvals.services import DECIDING_ROLES

DIGEST_THRESHOLD = 3
DIGEST_WINDOW = timedelta(seconds=60)


@dataclass(frozen=True)
class NotifyResult:
    sent: int  # emails sent
    notified: list[str]  # action ids covered
    retry_in: float | None = None  # seconds until a deferred digest is due


def reviewers_to_notify(organization: Organization) -> list[User]:
    return list(
        User.objects.filter(
            memberships__organization=organization,
            memberships__role__in=DECIDING_ROLES,
            notify_approvals=True,
            is_active=True,
        )
        .distinct()
        .order_by("email")
    )


def detail_url(action_id: str) -> str:
    return settings.WARDEN_BASE_URL + reverse("approvals:detail", args=[action_id])


def queue_url() -> str:
    return settings.WARDEN_BASE_URL + reverse("approvals:queue")


def _claim(request_ids: list[int], now: datetime) -> list[ApprovalRequest]:
    claimed = [
        pk
        for pk in request_ids
        if ApprovalRequest.objects.filter(pk=pk, notified_at__isnull=True).update(notified_at=now)
    ]
    return list(
        ApprovalRequest.objects.filter(pk__in=claimed)
        .select_related("agent")
        .order_by("requested_at")
    )


def _single_body(request: ApprovalRequest) -> str:
    lines = [
        f"{request.agent.name} wants to run {request.action} ({request.environment}).",
        "",
        f"Arguments: {arguments_summary(request.arguments) or '(none)'}",
        f"Why it needs approval: {request.reason or request.rule_name or 'a rule requires it'}",
        f"Expires: {request.expires_at:%Y-%m-%d %H:%M} UTC",
        "",
        f"Review it: {detail_url(request.action_id)}",
    ]
    return "\n".join(lines)


def _digest_body(requests: list[ApprovalRequest]) -> str:
    lines = [f"{len(requests)} tool calls are waiting for a decision:", ""]
    for request in requests:
        lines.append(f"- {request.action} by {request.agent.name} ({request.environment})")
        lines.append(f"  {arguments_summary(request.arguments, limit=4) or '(no arguments)'}")
        lines.append(f"  {detail_url(request.action_id)}")
    lines += ["", f"The whole queue: {queue_url()}"]
    return "\n".join(lines)


def _send(subject: str, body: str, recipients: list[User]) -> int:
    footer = "\n\nYou get these because you review approvals. Turn them off in your profile."
    messages = [
        EmailMessage(subject=subject, body=body + footer, to=[user.email]) for user in recipients
    ]
    if not messages:
        return 0
    return get_connection().send_messages(messages) or 0


def approval_notify_reviewers(*, organization_id: int, now: datetime | None = None) -> NotifyResult:
    now = now or timezone.now()
    organization = Organization.objects.get(pk=organization_id)
    unnotified = list(
        ApprovalRequest.objects.filter(
            organization=organization,
            status=ApprovalRequest.Status.PENDING,
            notified_at__isnull=True,
        )
        .order_by("requested_at")
        .values_list("pk", flat=True)
    )
    if not unnotified:
        return NotifyResult(sent=0, notified=[])
    recent = ApprovalRequest.objects.filter(
        organization=organization, requested_at__gte=now - DIGEST_WINDOW
    ).count()
    if recent > DIGEST_THRESHOLD:
        # A burst: at most one email per window; what arrives meanwhile waits for the digest.
        last = ApprovalRequest.objects.filter(organization=organization).aggregate(
            last=Max("notified_at")
        )["last"]
        if last is not None and last > now - DIGEST_WINDOW:
            return NotifyResult(
                sent=0, notified=[], retry_in=(last + DIGEST_WINDOW - now).total_seconds()
            )
    claimed = _claim(unnotified, now)
    if not claimed:
        return NotifyResult(sent=0, notified=[])
    if len(claimed) == 1:
        subject = f"Approval needed: {claimed[0].action} ({organization.name})"
        body = _single_body(claimed[0])
    else:
        subject = f"{len(claimed)} approval requests need a decision ({organization.name})"
        body = _digest_body(claimed)
    sent = _send(subject, body, reviewers_to_notify(organization))
    return NotifyResult(sent=sent, notified=[r.action_id for r in claimed])
