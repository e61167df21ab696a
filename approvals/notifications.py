"""Emailing reviewers about new approval requests: at most one email per reviewer per window.

After a request commits, ``reviewers_notify_queue`` makes sure one ``approvals.notify`` task
is queued for its organisation: due at once if the organisation's reviewers were not emailed
within ``DIGEST_WINDOW``, otherwise when that window ends. The task
(``approval_notify_reviewers``) emails each reviewer once about every pending request not
emailed yet: one request gets an email of its own, several get one digest. So a burst of N
held calls costs each reviewer one email at once and then one digest per window, and queues
one task per window, not one per request.

The organisation's ``NotificationWindow`` row is the claim: a request queues a task only if
its conditional UPDATE finds no task queued, and the task gives the claim back before it
reads what to send, so a request committed before that goes into this email and one
committed after queues a task of its own (the hand-off of webhooks/wakeups.py). A claim whose
task never ran (a lost message) lapses after ``LOST_TASK_AFTER``, and ``notifications_sweep``
(every minute) queues a task for requests left without one. Concurrent tasks of one
organisation take turns on the row's lock, so two of them never both send in one window.

Each reviewer is emailed only about the requests they are an approver of (the request's
current ``approvers``, approvals/routing.py; none: every reviewer), with an Approve and a
Reject link of their own for each (approvals/email_links.py). A reminder at half time and an
escalation put a request back in this path (``notified_at`` cleared, ``notice`` saying why),
so they reach its current approvers the same way.

The task runs on the ``mail`` queue with workers of its own (``CELERY_TASK_ROUTES``): a slow
mail server never holds up a webhook delivery or an expiry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.db.models import Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from accounts.models import Organization, User
from approvals.email_links import LinkUrls, email_links_create
from approvals.models import ApprovalRequest, NotificationWindow
from approvals.routing import routed_user_ids
from approvals.selectors import arguments_redacted, arguments_summary
from approvals.services import DECIDING_ROLES
from wardenproject.tasks import enqueue_now

DIGEST_WINDOW = timedelta(seconds=60)
LOST_TASK_AFTER = timedelta(minutes=5)
DIGEST_LIST_MAX = 50  # requests listed one by one in a digest; the rest are counted


@dataclass(frozen=True)
class NotifyResult:
    sent: int  # emails sent
    notified: list[str] = field(default_factory=list)  # action ids covered
    next_at: datetime | None = None  # too early: the window opens then


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


def _unnotified(organization_id: int) -> QuerySet[ApprovalRequest]:
    return ApprovalRequest.objects.filter(
        organization_id=organization_id,
        status=ApprovalRequest.Status.PENDING,
        notified_at__isnull=True,
    )


def _claim(organization_id: int, now: datetime) -> list[ApprovalRequest]:
    """Mark the pending requests not emailed yet as emailed now (under the window's lock)."""
    ids = list(_unnotified(organization_id).values_list("pk", flat=True))
    if not ids:
        return []
    ApprovalRequest.objects.filter(pk__in=ids, notified_at__isnull=True).update(notified_at=now)
    return list(
        ApprovalRequest.objects.filter(pk__in=ids, notified_at=now)
        .select_related("agent")
        .order_by("requested_at")
    )


def _opens_at(window: NotificationWindow, now: datetime) -> datetime:
    """When the organisation's reviewers may next be emailed."""
    if window.last_sent_at is None:
        return now
    return max(now, window.last_sent_at + DIGEST_WINDOW)


def _task_queue(organization_id: int, *, due: datetime, now: datetime) -> bool:
    """Queue the organisation's notify task for ``due`` unless one is queued; True if queued."""
    from approvals.tasks import approvals_notify

    won = NotificationWindow.objects.filter(
        Q(task_due_at__isnull=True) | Q(task_due_at__lte=now - LOST_TASK_AFTER),
        organization_id=organization_id,
    ).update(task_due_at=due)
    if not won:
        return False

    def queue() -> None:
        if not enqueue_now(approvals_notify, organization_id, eta=due if due > now else None):
            NotificationWindow.objects.filter(
                organization_id=organization_id, task_due_at=due
            ).update(task_due_at=None)

    transaction.on_commit(queue)
    return True


def reviewers_notify_queue(*, organization_id: int, now: datetime | None = None) -> bool:
    """After a request commits: make sure a notify task is queued for its organisation.

    One query when a task is already queued (the common case in a burst). True if this call
    queued the task.
    """
    now = now or timezone.now()
    window, _ = NotificationWindow.objects.get_or_create(organization_id=organization_id)
    if window.task_due_at is not None and window.task_due_at > now - LOST_TASK_AFTER:
        return False  # that task will find the request
    return _task_queue(organization_id, due=_opens_at(window, now), now=now)


def notifications_sweep(*, now: datetime | None = None) -> list[int]:
    """Organisations with a request still not emailed ``2 * DIGEST_WINDOW`` after it arrived
    and no live task (its task was lost): queue one. Returns those organisations."""
    now = now or timezone.now()
    organization_ids = sorted(
        set(
            ApprovalRequest.objects.filter(
                status=ApprovalRequest.Status.PENDING,
                notified_at__isnull=True,
                requested_at__lt=now - 2 * DIGEST_WINDOW,
            ).values_list("organization_id", flat=True)
        )
    )
    return [
        organization_id
        for organization_id in organization_ids
        if reviewers_notify_queue(organization_id=organization_id, now=now)
    ]


NOTICE_PREFIX = {
    ApprovalRequest.Notice.NEW: "",
    ApprovalRequest.Notice.REMINDER: "Reminder: ",
    ApprovalRequest.Notice.ESCALATED: "Escalated: ",
}
NOTICE_LINE = {
    ApprovalRequest.Notice.NEW: "",
    ApprovalRequest.Notice.REMINDER: "Reminder: half of the time to decide has passed.",
    ApprovalRequest.Notice.ESCALATED: (
        "Escalated: nobody decided before the first deadline, so it is now yours to decide."
    ),
}


def _shown_arguments(request: ApprovalRequest, limit: int = 6) -> str:
    return arguments_summary(arguments_redacted(request.arguments, request.redact), limit=limit)


def _single_body(request: ApprovalRequest, links: LinkUrls) -> str:
    lines = [f"{request.agent.name} wants to run {request.action} ({request.environment})."]
    if NOTICE_LINE[request.notice]:
        lines.append(NOTICE_LINE[request.notice])
    lines += [
        "",
        f"Arguments: {_shown_arguments(request) or '(none)'}",
        f"Why it needs approval: {request.reason or request.rule_name or 'a rule requires it'}",
        f"Expires: {request.expires_at:%Y-%m-%d %H:%M} UTC",
        "",
        f"Approve: {links.approve}",
        f"Reject: {links.reject}",
        "(Each link opens a page that asks you to confirm; it works once.)",
        "",
        f"Review it: {detail_url(request.action_id)}",
    ]
    return "\n".join(lines)


def _digest_body(requests: list[ApprovalRequest], links: dict[int, LinkUrls]) -> str:
    lines = [f"{len(requests)} tool calls are waiting for a decision:", ""]
    for request in requests[:DIGEST_LIST_MAX]:
        prefix = NOTICE_PREFIX[request.notice]
        lines.append(f"- {prefix}{request.action} by {request.agent.name} ({request.environment})")
        lines.append(f"  {_shown_arguments(request, limit=4) or '(no arguments)'}")
        lines.append(f"  Approve: {links[request.pk].approve}")
        lines.append(f"  Reject: {links[request.pk].reject}")
        lines.append(f"  Review: {detail_url(request.action_id)}")
    if len(requests) > DIGEST_LIST_MAX:
        lines.append(f"- and {len(requests) - DIGEST_LIST_MAX} more")
    lines += ["", f"The whole queue: {queue_url()}"]
    return "\n".join(lines)


def _per_reviewer(
    organization: Organization, requests: list[ApprovalRequest]
) -> list[tuple[User, list[ApprovalRequest]]]:
    """Each reviewer with the requests they are an approver of (routing), in order."""
    routed: dict[tuple[str, ...], set[int] | None] = {}
    out = []
    for user in reviewers_to_notify(organization):
        mine = []
        for request in requests:
            key = tuple(request.approvers)
            if key not in routed:
                routed[key] = routed_user_ids(
                    organization_id=organization.pk, approvers=request.approvers
                )
            ids = routed[key]
            if ids is None or user.pk in ids:
                mine.append(request)
        if mine:
            out.append((user, mine))
    return out


def _messages(organization: Organization, requests: list[ApprovalRequest]) -> list[EmailMessage]:
    footer = "\n\nYou get these because you review approvals. Turn them off in your profile."
    recipients = _per_reviewer(organization, requests)
    links = email_links_create(
        (user, request) for user, mine in recipients for request in mine[:DIGEST_LIST_MAX]
    )
    messages = []
    for user, mine in recipients:
        if len(mine) == 1:
            request = mine[0]
            subject = (
                f"{NOTICE_PREFIX[request.notice]}Approval needed: {request.action} "
                f"({organization.name})"
            )
            body = _single_body(request, links[(user.pk, request.pk)])
        else:
            subject = f"{len(mine)} approval requests need a decision ({organization.name})"
            body = _digest_body(
                mine, {r.pk: links[(user.pk, r.pk)] for r in mine[:DIGEST_LIST_MAX]}
            )
        messages.append(EmailMessage(subject=subject, body=body + footer, to=[user.email]))
    return messages


def _send(messages: list[EmailMessage]) -> int:
    if not messages:
        return 0
    return get_connection().send_messages(messages) or 0


def approval_notify_reviewers(*, organization_id: int, now: datetime | None = None) -> NotifyResult:
    """Email each reviewer once about the organisation's pending requests not emailed yet
    that they are an approver of.

    Within ``DIGEST_WINDOW`` of the last email it sends nothing and makes sure a task is
    queued for the window's end.
    """
    now = now or timezone.now()
    # Give the claim back before reading what to send (see the module docstring).
    NotificationWindow.objects.filter(organization_id=organization_id).update(task_due_at=None)
    organization = Organization.objects.filter(pk=organization_id).first()
    if organization is None:
        return NotifyResult(sent=0)
    claimed: list[ApprovalRequest] = []
    with transaction.atomic():
        window, _ = NotificationWindow.objects.select_for_update().get_or_create(
            organization_id=organization_id
        )
        opens_at = _opens_at(window, now)
        if opens_at <= now:
            claimed = _claim(organization_id, now)
            if claimed:
                window.last_sent_at = now
                window.save(update_fields=["last_sent_at"])
    if opens_at > now:
        if _unnotified(organization_id).exists():
            _task_queue(organization_id, due=opens_at, now=now)
        return NotifyResult(sent=0, next_at=opens_at)
    if not claimed:
        return NotifyResult(sent=0)
    sent = _send(_messages(organization, claimed))
    return NotifyResult(sent=sent, notified=[r.action_id for r in claimed])
