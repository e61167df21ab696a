"""Approval requests: creating them (from a check), deciding, expiring, cancelling, claiming.

Every state change goes through one function here: it runs in a transaction, changes the
row with a conditional UPDATE (so racing reviewers, the expiry task and the agent end with
exactly one outcome), writes the audit entry and emits the event in that same transaction,
and wakes long-poll waiters after commit.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from accounts.permissions import Capability, roles_with
from accounts.plans import Feature, plan_require
from accounts.selectors import membership_role_get
from agents.limits import budgets_spend_approved
from approvals import wakeup
from approvals.models import ApprovalRequest, ApprovalVote
from approvals.slack_hooks import slack_post_on_commit, slack_update_on_commit
from audit.models import AuditEntry
from audit.services import actor_label, audit_record
from wardenproject.errors import Conflict, Forbidden, NotFound, ValidationFailed
from wardenproject.jsonutil import iso
from webhooks.services import event_emit

DECIDING_ROLES = roles_with(Capability.DECIDE_APPROVALS)
MAX_NOTES = 2000
EXPIRED_NOTE = "Expired: no decision before the deadline."
EVENT_FOR_STATUS = {
    ApprovalRequest.Status.APPROVED: "approval.approved",
    ApprovalRequest.Status.DENIED: "approval.rejected",
    ApprovalRequest.Status.EXPIRED: "approval.expired",
}


def arguments_hash(arguments: Any) -> str:
    """SHA-256 of the canonical JSON of the call's arguments: an approval is for that call only."""
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def approval_event_data(request: ApprovalRequest) -> dict[str, Any]:
    """The canonical data of every approval event (see the webhook formats)."""

    return {
        "action_id": request.action_id,
        "agent_id": request.agent.public_id,
        "agent_name": request.agent.name,
        "action": request.action,
        "arguments": request.arguments,
        "status": request.status,
        "environment": request.environment,
        "session_id": request.session_id or None,
        "rule": request.rule_name or None,
        "reason": request.reason,
        "requested_at": iso(request.requested_at),
        "expires_at": iso(request.expires_at),
        "decided_at": iso(request.decided_at),
        "decided_by": request.decided_by_label or None,
        "notes": request.notes or None,
    }


def approval_request_create(
    *,
    entry: AuditEntry,
    api_key: Any | None,
    rule: Any | None,
    timeout_seconds: int | None,
    approvals_required: int = 1,
) -> ApprovalRequest:
    """Hold the checked call ``entry`` for a human, in the caller's transaction.

    ``entry`` is the check's audit row (its public id is the action id). Emits
    ``log.pending_approval`` in the same transaction.
    """
    organization = entry.organization
    timeout = timeout_seconds or organization.default_approval_timeout
    with transaction.atomic():
        request = ApprovalRequest.objects.create(
            action_id=entry.public_id,
            check_entry=entry,
            organization=organization,
            agent=entry.agent,
            api_key=api_key,
            action=entry.action,
            arguments=entry.arguments or {},
            arguments_hash=arguments_hash(entry.arguments or {}),
            environment=entry.environment,
            session_id=entry.session_id,
            rule=rule,
            rule_name=entry.rule_name,
            reason=entry.reason,
            source=entry.source,
            approvals_required=max(1, approvals_required),
            requested_at=entry.created_at,
            expires_at=entry.created_at + timedelta(seconds=timeout),
        )
        event_emit(
            organization=organization,
            event_type="log.pending_approval",
            data=approval_event_data(request),
            agent=request.agent,
            action_id=request.action_id,
        )
        _notify_reviewers_on_commit(organization.pk)
        slack_post_on_commit(request_id=request.pk, organization_id=organization.pk)
    return request


def _notify_reviewers_on_commit(organization_id: int) -> None:
    from approvals.notifications import reviewers_notify_queue

    # robust: the request has committed; a failure here must not fail it (logged instead).
    transaction.on_commit(
        lambda: reviewers_notify_queue(organization_id=organization_id), robust=True
    )


# --- who may do what --------------------------------------------------------------------------


def approval_request_get(request_or_action_id: ApprovalRequest | str) -> ApprovalRequest:
    action_id = (
        request_or_action_id.action_id
        if isinstance(request_or_action_id, ApprovalRequest)
        else str(request_or_action_id)
    )
    try:
        return ApprovalRequest.objects.select_related("organization__plan", "agent").get(
            action_id=action_id
        )
    except ApprovalRequest.DoesNotExist:
        raise NotFound("No such approval request.") from None


def member_can_decide(*, user: User | None, organization_id: int) -> bool:
    """True for approver, admin and owner members; raises NotFound for non-members."""
    if user is None or not user.is_authenticated:
        raise NotFound("No such approval request.")
    role = membership_role_get(user=user, organization_id=organization_id)
    if role is None:
        raise NotFound("No such approval request.")
    return role in DECIDING_ROLES


def _authorize_decider(
    request: ApprovalRequest, *, actor_user: User | None, actor_key: Any | None
) -> User:
    """The person who votes: an approver/admin/owner member, or the member an approver key
    of the request's organisation belongs to (its creator, who must still be allowed to
    decide). A person has one vote whatever the credential.

    Anyone from another organisation gets 404 (they learn nothing); agent and organisation
    keys, viewers, and approver keys whose creator may not decide, get 403.
    """
    if actor_key is not None:
        if actor_key.organization_id != request.organization_id:
            raise NotFound("No such approval request.")
        if actor_key.kind != "approver":
            raise Forbidden("Only approver keys and reviewers can decide approval requests.")
        creator = (
            User.objects.filter(pk=actor_key.created_by_id, is_active=True).first()
            if actor_key.created_by_id is not None
            else None
        )
        role = (
            membership_role_get(user=creator, organization_id=request.organization_id)
            if creator is not None
            else None
        )
        if role not in DECIDING_ROLES:
            raise Forbidden(
                "This approver key votes as the member who created it, and that member may "
                "not decide approval requests (any more)."
            )
        return creator
    if not member_can_decide(user=actor_user, organization_id=request.organization_id):
        raise Forbidden("Viewers can see approval requests but not decide them.")
    return actor_user


def _decider_label(voter: User, actor_key: Any | None) -> str:
    """The voter's email, and the key they used if any (labels are 200 characters)."""
    if actor_key is None:
        return voter.email
    return f"{voter.email} (key {actor_key.prefix}…)"[:200]


# --- deciding ---------------------------------------------------------------------------------


def _record(
    request: ApprovalRequest,
    *,
    verb: str,
    actor_user: User | None,
    actor_key: Any | None,
    notes: str,
    source: str,
    detail: str,
    label: str | None = None,
    approvals: int | None = None,
) -> None:
    """The audit entry of one vote, decision, expiry or cancellation (``approvals``: the
    approving votes so far, when the caller has just counted them)."""
    if approvals is None:
        approvals = request.votes.filter(vote=ApprovalVote.Vote.APPROVE).count()
    audit_record(
        organization=request.organization,
        kind=AuditEntry.Kind.DECISION,
        actor_user=actor_user,
        actor_key=actor_key,
        actor_label=label,
        agent=request.agent,
        agent_public_id=request.agent.public_id,
        action=request.action,
        action_id=request.action_id,
        environment=request.environment,
        session_id=request.session_id,
        decision=verb,
        status=request.status,
        rule_name=request.rule_name,
        reason=detail,
        source=source,
        data={
            "notes": notes or None,
            "approvals": approvals,
            "approvals_required": request.approvals_required,
        },
    )


def _emit(request: ApprovalRequest) -> None:
    """The ONE place that turns a final status into its event, in the caller's transaction."""
    event_emit(
        organization=request.organization,
        event_type=EVENT_FOR_STATUS[request.status],
        data=approval_event_data(request),
        agent=request.agent,
        action_id=request.action_id,
    )
    slack_update_on_commit(request_id=request.pk)


def _wake_on_commit(request: ApprovalRequest) -> None:
    action_id, status = request.action_id, request.status
    transaction.on_commit(lambda: wakeup.wake_publish(action_id, status))


def _is_overdue(request: ApprovalRequest, now: datetime) -> bool:
    return request.status == ApprovalRequest.Status.PENDING and request.expires_at <= now


def _conflict(status: str) -> Conflict:
    return Conflict(
        f"This approval request is already {status}; the decision stands.",
        extra={"status": status},
    )


def approval_decide(
    *,
    request_or_action_id: ApprovalRequest | str,
    actor_user: User | None = None,
    actor_key: Any | None = None,
    approve: bool,
    notes: str = "",
    source: str = "",
) -> ApprovalRequest:
    """Approve or deny a pending request: the one path for admin, pages and every API.

    With a quorum (``approvals_required > 1``) an approval is a vote: the request is
    approved when that many distinct people have approved; one denial denies. An approver
    key votes as the member who created it, so a person has one vote whether they use the
    session, one key or several. Raises ``Conflict`` (409, ``extra["status"]`` = the
    standing outcome) when the request is no longer pending, including when its deadline
    has passed, and ``Conflict(code="already_voted")`` when the same person votes twice.

    Quorum after a plan downgrade: a request created with a quorum keeps it. Approving it
    needs the quorum feature at decision time, so on a plan without it approvals are refused
    with the plan message (the safe side: no silent lowering to one approver); a denial is
    always accepted, and otherwise the request expires.
    """
    request = approval_request_get(request_or_action_id)
    voter = _authorize_decider(request, actor_user=actor_user, actor_key=actor_key)
    notes = (notes or "").strip()
    if len(notes) > MAX_NOTES:
        raise ValidationFailed(f"Notes are limited to {MAX_NOTES} characters.", field="notes")
    label = _decider_label(voter, actor_key)
    standing: str | None = None
    with transaction.atomic():
        # The request row only, and the lock an UPDATE of its non-key columns takes anyway:
        # its organisation, plan and agent are read, not locked (a lock on them would hold up
        # every check of the organisation and every decision on the same plan), and rows
        # that reference the request (votes) can still be inserted.
        locked = (
            ApprovalRequest.objects.select_for_update(of=("self",), no_key=True)
            .select_related("organization__plan", "agent")
            .get(pk=request.pk)
        )
        now = timezone.now()
        if _is_overdue(locked, now):
            locked = _expire_locked(locked, now=now) or locked
            standing = locked.status
        elif locked.status != ApprovalRequest.Status.PENDING:
            standing = locked.status
        else:
            locked = _vote(
                locked,
                voter=voter,
                actor_key=actor_key,
                label=label,
                approve=approve,
                notes=notes,
                source=source,
                now=now,
            )
    if standing is not None:
        raise _conflict(standing)
    return locked


def _vote(
    request: ApprovalRequest,
    *,
    voter: User,
    actor_key: Any | None,
    label: str,
    approve: bool,
    notes: str,
    source: str,
    now: datetime,
) -> ApprovalRequest:
    """Record one vote on a locked pending request; finalise it if the vote decides.

    The vote's ``user`` is the person (a key's creator), unique per request in the database.
    """
    if approve and request.approvals_required > 1:
        plan_require(request.organization, Feature.APPROVAL_QUORUM)
    if ApprovalVote.objects.filter(request=request, user=voter).exists():
        raise Conflict(
            "You have already voted on this request (in person or with one of your approver "
            "keys); another reviewer must decide.",
            code="already_voted",
            extra={"status": request.status},
        )
    ApprovalVote.objects.create(
        request=request,
        user=voter,
        api_key=actor_key,
        voter_label=label,
        vote=ApprovalVote.Vote.APPROVE if approve else ApprovalVote.Vote.DENY,
        notes=notes,
        created_at=now,
    )
    if request.approvals_required == 1:
        # One vote decides: no approving vote can precede this one on a pending request.
        approvals = int(approve)
    else:
        approvals = request.votes.filter(vote=ApprovalVote.Vote.APPROVE).count()
    final = not approve or approvals >= request.approvals_required
    if not final:
        _record(
            request,
            verb="approve",
            actor_user=voter,
            actor_key=actor_key,
            notes=notes,
            source=source,
            detail=f"Approval {approvals} of {request.approvals_required} by {label}",
            label=label,
            approvals=approvals,
        )
        return request
    status = ApprovalRequest.Status.APPROVED if approve else ApprovalRequest.Status.DENIED
    changed = ApprovalRequest.objects.filter(
        pk=request.pk, status=ApprovalRequest.Status.PENDING
    ).update(
        status=status,
        decided_at=now,
        decided_by=voter,
        decided_by_key=actor_key,
        decided_by_label=label,
        notes=notes,
    )
    if changed != 1:  # cannot happen under the row lock; refuse rather than guess
        current = ApprovalRequest.objects.get(pk=request.pk).status
        raise _conflict(current)
    # What the UPDATE wrote, on the locked instance (a reload would also drop the
    # organisation, plan and agent it holds, and read them again).
    request.status, request.decided_at, request.notes = status, now, notes
    request.decided_by, request.decided_by_key, request.decided_by_label = voter, actor_key, label
    if approve:
        _budgets_spend(request)
    verb = "approve" if approve else "deny"
    _record(
        request,
        verb=verb,
        actor_user=voter,
        actor_key=actor_key,
        notes=notes,
        source=source,
        detail=f"{'Approved' if approve else 'Denied'} by {label}",
        label=label,
        approvals=approvals,
    )
    _emit(request)
    _wake_on_commit(request)
    return request


def _budgets_spend(request: ApprovalRequest) -> None:
    """An approved call counts in the running totals it was held against."""
    entry = request.check_entry
    budgets = (entry.data or {}).get("budgets") if entry is not None else None
    if budgets:
        budgets_spend_approved(budgets=budgets, requested_at=request.requested_at)


# --- expiry -----------------------------------------------------------------------------------


def _expire_locked(request: ApprovalRequest, *, now: datetime) -> ApprovalRequest | None:
    """Expire ``request`` if it is still pending and overdue; None if it was not."""
    changed = ApprovalRequest.objects.filter(
        pk=request.pk, status=ApprovalRequest.Status.PENDING, expires_at__lte=now
    ).update(status=ApprovalRequest.Status.EXPIRED, decided_at=now, notes=EXPIRED_NOTE)
    if changed != 1:
        return None
    request.refresh_from_db()
    _record(
        request,
        verb="expire",
        actor_user=None,
        actor_key=None,
        notes=EXPIRED_NOTE,
        source="system",
        detail=f"Expired at {request.expires_at.isoformat()} without a decision",
    )
    _emit(request)
    _wake_on_commit(request)
    return request


def approval_expire(*, request: ApprovalRequest, now: datetime | None = None) -> bool:
    """Expire one overdue pending request; False if it was decided (or not yet due)."""
    now = now or timezone.now()
    with transaction.atomic():
        return _expire_locked(request, now=now) is not None


def approval_expire_overdue(*, now: datetime | None = None, batch: int = 500) -> int:
    """Expire every overdue pending request (the beat task). Returns how many it expired."""
    now = now or timezone.now()
    due = (
        ApprovalRequest.objects.filter(status=ApprovalRequest.Status.PENDING, expires_at__lte=now)
        .select_related("organization", "agent")
        .order_by("expires_at")[:batch]
    )
    return sum(approval_expire(request=request, now=now) for request in due)


def approval_expire_if_overdue(request: ApprovalRequest) -> ApprovalRequest:
    """Readers call this so correctness never depends on the beat task's lag."""
    if _is_overdue(request, timezone.now()):
        approval_expire(request=request)
        request.refresh_from_db()
    return request


# --- cancel and claim -------------------------------------------------------------------------


def _authorize_agent_side(request: ApprovalRequest, *, actor_key: Any | None) -> None:
    """The request's own agent key, or an organisation key of its organisation."""
    if actor_key is None or actor_key.organization_id != request.organization_id:
        raise NotFound("No such action.")
    if actor_key.kind == "agent":
        if actor_key.agent_id != request.agent_id:
            raise NotFound("No such action.")
        return
    if actor_key.kind != "org":
        raise Forbidden("Only the agent's key or an organisation key can do this.")


def approval_cancel(
    *,
    request_or_action_id: ApprovalRequest | str,
    actor_user: User | None = None,
    actor_key: Any | None = None,
    reason: str = "",
    source: str = "",
) -> ApprovalRequest:
    """Withdraw a pending request (the agent gave up on the call). Final, like a decision.

    Allowed for the request's agent key, an organisation key, and reviewer members. There
    is no webhook event type for cancellation; waiters are woken and the audit log has it.
    """
    request = approval_request_get(request_or_action_id)
    if actor_key is not None:
        _authorize_agent_side(request, actor_key=actor_key)
    elif not member_can_decide(user=actor_user, organization_id=request.organization_id):
        raise Forbidden("Viewers cannot cancel approval requests.")
    label = actor_label(user=actor_user, api_key=actor_key)
    reason = (reason or "").strip()[:MAX_NOTES]
    standing: str | None = None
    with transaction.atomic():
        now = timezone.now()
        if _is_overdue(request, now) and _expire_locked(request, now=now) is not None:
            standing = ApprovalRequest.Status.EXPIRED
        else:
            changed = ApprovalRequest.objects.filter(
                pk=request.pk, status=ApprovalRequest.Status.PENDING, expires_at__gt=now
            ).update(
                status=ApprovalRequest.Status.CANCELLED,
                decided_at=now,
                decided_by=actor_user,
                decided_by_key=actor_key,
                decided_by_label=label,
                notes=reason or "Cancelled by the agent.",
            )
            request.refresh_from_db()
            if changed != 1:
                standing = request.status
            else:
                _record(
                    request,
                    verb="cancel",
                    actor_user=actor_user,
                    actor_key=actor_key,
                    notes=reason,
                    source=source,
                    detail=f"Cancelled by {label}",
                )
                _wake_on_commit(request)
                slack_update_on_commit(request_id=request.pk)
    if standing is not None:
        raise _conflict(standing)
    return request


def approval_claim(
    *,
    request_or_action_id: ApprovalRequest | str,
    actor_key: Any | None,
    arguments: Any | None = None,
) -> ApprovalRequest:
    """Claim an approved action just before running it: the first claim wins, once.

    With ``arguments``, they must hash to the approved call's arguments (an approval is
    for that call and no other).
    """
    request = approval_request_get(request_or_action_id)
    _authorize_agent_side(request, actor_key=actor_key)
    if arguments is not None and arguments_hash(arguments) != request.arguments_hash:
        raise Conflict(
            "These arguments differ from the approved call's; the approval does not cover them.",
            code="arguments_mismatch",
            extra={"status": request.status},
        )
    changed = ApprovalRequest.objects.filter(
        pk=request.pk, status=ApprovalRequest.Status.APPROVED, claimed_at__isnull=True
    ).update(claimed_at=timezone.now())
    request.refresh_from_db()
    if changed == 1:
        return request
    if request.status != ApprovalRequest.Status.APPROVED:
        raise Conflict(
            f"Only approved actions can be claimed; this one is {request.status}.",
            code="not_approved",
            extra={"status": request.status},
        )
    raise Conflict(
        "This approved action was already claimed; it runs once.",
        code="already_claimed",
        extra={"status": request.status},
    )
