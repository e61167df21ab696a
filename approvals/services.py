"""Approval requests: creating them (from a check), deciding, expiring, cancelling, claiming.

Every state change goes through one function here: it runs in a transaction, changes the
row with a conditional UPDATE (so racing reviewers, the expiry task and the agent end with
exactly one outcome), writes the audit entry and emits the event in that same transaction,
and wakes long-poll waiters after commit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import Organization, User
from accounts.permissions import Capability, roles_with
from accounts.plans import Feature, plan_require
from accounts.selectors import membership_of_active_user_get, membership_role_get
from agents.limits import budgets_spend_approved
from agents.policy import Call, RuleSpec, amount_read
from approvals import turns, wakeup
from approvals.email_links import LinkInvalid, email_link_get
from approvals.grants import (
    AMOUNT,
    IDENTICAL,
    SESSION,
    GrantSpec,
    GrantUse,
    grant_spec_check,
    grant_spec_parse,
    holding_rule,
)
from approvals.models import ApprovalRequest, ApprovalVote, EmailLink, Grant
from approvals.routing import approvers_admit, approvers_text
from approvals.slack_hooks import slack_post_on_commit, slack_update_on_commit
from audit.models import AuditEntry
from audit.services import actor_label, audit_record, audit_record_change
from wardenproject.errors import (
    Conflict,
    DomainError,
    Forbidden,
    NotFound,
    PlanRequired,
    ValidationFailed,
)
from wardenproject.ids import public_id
from wardenproject.jsonutil import iso
from webhooks.services import event_emit

DECIDING_ROLES = roles_with(Capability.DECIDE_APPROVALS)
MAX_NOTES = 2000
EXPIRED_NOTE = "Expired: no decision before the deadline."
ESCALATED_EVENT = "approval.escalated"


class NotAnApprover(Forbidden, PermissionDenied):
    """403: the member may decide approvals, but this request is routed to others."""

    code = "not_an_approver"


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
    spec: Any | None = None,
) -> ApprovalRequest:
    """Hold the checked call ``entry`` for a human, in the caller's transaction.

    ``entry`` is the check's audit row (its public id is the action id). ``spec`` is the
    deciding rule's ``RuleSpec``: its approvers, escalation and redaction are copied onto
    the request (the rule may change later). Emits ``log.pending_approval`` in the same
    transaction.
    """
    organization = entry.organization
    timeout = timeout_seconds or organization.default_approval_timeout
    escalate = spec is not None and spec.on_timeout == "escalate" and bool(spec.escalate_to)
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
            approvers=list(spec.approvers) if spec is not None else [],
            escalate_to=list(spec.escalate_to) if escalate else [],
            escalate_timeout=(spec.escalate_timeout or timeout) if escalate else None,
            reminder_due_at=entry.created_at + timedelta(seconds=timeout / 2),
            redact=list(spec.redact) if spec is not None else [],
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
    keys, viewers, and approver keys whose creator may not decide, get 403; so does a
    member (or a key's creator) the request's approvers do not admit (``NotAnApprover``,
    approvals/routing.py). Every channel decides through here.
    """
    return _deciding_person(
        request.organization_id,
        request=request,
        actor_user=actor_user,
        actor_key=actor_key,
        missing="No such approval request.",
        forbidden="Viewers can see approval requests but not decide them.",
    )


def _deciding_person(
    organization_id: int,
    *,
    request: ApprovalRequest | None = None,
    actor_user: User | None,
    actor_key: Any | None,
    missing: str,
    forbidden: str,
) -> User:
    """The member who acts as a reviewer in ``organization_id`` (see ``_authorize_decider``);
    ``missing`` is the 404's detail for outsiders, ``forbidden`` the 403's for viewers; with
    ``request``, the person must also be one of its approvers (routing)."""
    if actor_key is not None:
        if actor_key.organization_id != organization_id:
            raise NotFound(missing)
        if actor_key.kind != "approver":
            raise Forbidden("Only approver keys and reviewers can decide approval requests.")
        membership = (
            membership_of_active_user_get(
                user_id=actor_key.created_by_id, organization_id=organization_id
            )
            if actor_key.created_by_id is not None
            else None
        )
        creator, role = (membership.user, membership.role) if membership else (None, None)
        if creator is None or role not in DECIDING_ROLES:
            raise Forbidden(
                "This approver key votes as the member who created it, and that member may "
                "not decide approval requests (any more)."
            )
        if request is not None:
            _require_approver(request, voter=creator, role=role, actor_key=actor_key)
        return creator
    if actor_user is None or not actor_user.is_authenticated:
        raise NotFound(missing)
    role = membership_role_get(user=actor_user, organization_id=organization_id)
    if role is None:
        raise NotFound(missing)
    if role not in DECIDING_ROLES:
        raise Forbidden(forbidden)
    if request is not None:
        _require_approver(request, voter=actor_user, role=role, actor_key=None)
    return actor_user


def _not_an_approver(
    request: ApprovalRequest, *, voter: User, actor_key: Any | None
) -> NotAnApprover:
    who = (
        f"This approver key votes as {voter.email}, who is" if actor_key is not None else "You are"
    )
    return NotAnApprover(
        f"{who} not one of this request's approvers: its rule routes it to "
        f"{approvers_text(request.approvers)}.",
        extra={"approvers": list(request.approvers)},
    )


def _require_approver(
    request: ApprovalRequest, *, voter: User, role: str | None, actor_key: Any | None
) -> None:
    """Routing: the voter must be one of the request's current approvers (approvals/routing.py)."""
    if not approvers_admit(
        approvers=request.approvers,
        organization_id=request.organization_id,
        user=voter,
        role=role,
    ):
        raise _not_an_approver(request, voter=voter, actor_key=actor_key)


def approval_decider_problem(*, request: ApprovalRequest, user: User) -> DomainError | None:
    """Why ``user`` may not decide ``request`` now (None: they may): the checks a decision
    makes, for pages that show them before the decision is taken."""
    try:
        _authorize_decider(request, actor_user=user, actor_key=None)
    except (NotFound, Forbidden) as exc:
        return exc
    return None


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
    grant: GrantSpec | dict[str, Any] | None = None,
) -> ApprovalRequest:
    """Approve or deny a pending request: the one path for admin, pages and every API.

    ``grant`` (an approval only): remember this approval (``approvals/grants.py``), within
    the kinds the holding rule allows. It is validated before anything is written: a grant
    the rule does not allow, or a malformed one, is a ``ValidationFailed`` naming the field
    (``grant.kind``, ``grant.ttl`` ...) and nothing is decided. The grant is created in the
    decision's transaction when the request is approved; with a quorum, each approving
    reviewer's offer is kept with their vote and created only when the last approval
    needed arrives (a denial or an expiry creates none).

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

    On PostgreSQL one organisation's decisions run one at a time (approvals/turns.py):
    ``DecisionsBusy`` (503, nothing written) when its turn does not come within
    ``WARDEN_DECISION_LOCK_TIMEOUT`` seconds.
    """
    request = approval_request_get(request_or_action_id)
    voter = _authorize_decider(request, actor_user=actor_user, actor_key=actor_key)
    notes = (notes or "").strip()
    if len(notes) > MAX_NOTES:
        raise ValidationFailed(f"Notes are limited to {MAX_NOTES} characters.", field="notes")
    offer = _grant_offer(request, grant, approve=approve)
    label = _decider_label(voter, actor_key)
    standing: str | None = None
    refused: DomainError | None = None
    with transaction.atomic():
        # One decision of the organisation at a time, deployment-wide (approvals/turns.py):
        # before the row lock, always; checks and other organisations never take it.
        turns.decision_turn_take(organization_id=request.organization_id)
        # The request row only, and the lock an UPDATE of its non-key columns takes anyway:
        # its organisation, plan and agent are not locked (a lock on them would hold up
        # every check of the organisation and every decision on the same plan), and rows
        # that reference the request (votes) can still be inserted. The check entry comes
        # with it (an approval spends its budgets, the API answers with it), unlocked.
        locked = (
            ApprovalRequest.objects.select_for_update(of=("self",), no_key=True)
            .select_related("check_entry")
            .get(pk=request.pk)
        )
        # A decision changes neither: the instances read above, not a second read.
        locked.organization, locked.agent = request.organization, request.agent
        now = timezone.now()
        if _is_overdue(locked, now):
            locked = _settle_overdue_locked(locked, now=now) or locked
        if locked.status != ApprovalRequest.Status.PENDING:
            standing = locked.status
        else:
            if locked.approvers != request.approvers:  # escalated since it was authorized
                refused = _routing_problem(locked, voter=voter, actor_key=actor_key)
            if refused is None:
                locked = _vote(
                    locked,
                    voter=voter,
                    actor_key=actor_key,
                    label=label,
                    approve=approve,
                    notes=notes,
                    source=source,
                    now=now,
                    offer=offer,
                )
    if refused is not None:
        raise refused
    if standing is not None:
        raise _conflict(standing)
    return locked


MAX_BULK = 100


@dataclass(frozen=True)
class BulkOutcome:
    """What became of one request of a bulk decision.

    ``result``: ``decided`` (the vote was recorded: ``status`` says whether it decided the
    request or, with a quorum, more approvals are needed), ``already_decided`` (someone or
    the clock was first: ``status`` is the standing outcome), ``already_voted``,
    ``not_allowed`` (role or plan; ``detail`` says which), ``not_found`` or ``busy`` (the
    organisation's turn to decide did not come in time: that request and every one after
    it are left undecided, to be tried again).
    """

    action_id: str
    result: str
    status: str
    detail: str
    action: str = ""


def approval_decide_bulk(
    *,
    organization: Organization,
    action_ids: list[str],
    actor_user: User,
    approve: bool,
    notes: str = "",
    source: str = "web",
) -> list[BulkOutcome]:
    """Approve or reject several requests of ``organization`` with one note.

    Each request goes through ``approval_decide`` in its own transaction, so roles,
    quorum, plan and the audit entry apply exactly as for a single decision, and one
    request decided meanwhile does not undo the others. Ids of other organisations (or no
    request at all) are ``not_found`` and untouched. Outcomes come back in the order asked.
    """
    wanted = list(dict.fromkeys(a for a in action_ids if a))
    if not wanted:
        raise ValidationFailed("Select at least one request.", field="action_ids")
    if len(wanted) > MAX_BULK:
        raise ValidationFailed(f"Decide at most {MAX_BULK} requests at once.", field="action_ids")
    found = {
        r.action_id: r
        for r in ApprovalRequest.objects.filter(
            organization=organization, action_id__in=wanted
        ).select_related("organization__plan", "agent")
    }
    outcomes: list[BulkOutcome] = []
    busy: turns.DecisionsBusy | None = None
    for action_id in wanted:
        request = found.get(action_id)
        if request is None:
            outcomes.append(BulkOutcome(action_id, "not_found", "", "No such approval request."))
            continue
        if busy is not None:  # each would wait as long again: the rest are not tried
            outcomes.append(
                BulkOutcome(action_id, "busy", request.status, busy.detail, request.action)
            )
            continue
        try:
            decided = approval_decide(
                request_or_action_id=request,
                actor_user=actor_user,
                approve=approve,
                notes=notes,
                source=source,
            )
        except Conflict as error:
            result = "already_voted" if error.code == "already_voted" else "already_decided"
            outcomes.append(
                BulkOutcome(
                    action_id,
                    result,
                    str(error.extra.get("status", "")),
                    error.detail,
                    request.action,
                )
            )
        except (Forbidden, PlanRequired, NotFound) as error:
            outcomes.append(
                BulkOutcome(action_id, "not_allowed", request.status, error.detail, request.action)
            )
        except turns.DecisionsBusy as error:
            busy = error
            outcomes.append(
                BulkOutcome(action_id, "busy", request.status, error.detail, request.action)
            )
        else:
            outcomes.append(BulkOutcome(action_id, "decided", decided.status, "", decided.action))
    return outcomes


class LinkUsed(Conflict):
    code = "link_used"


def approval_decide_by_email_link(
    *,
    token: str,
    approve: bool,
    notes: str = "",
    grant: GrantSpec | dict[str, Any] | None = None,
) -> ApprovalRequest:
    """The POST of an email link's confirmation page: decide as the reviewer the link was
    sent to, through ``approval_decide`` (role and routing checked now, source ``email``).
    ``grant``: remember this approval, as on the dashboard (within what the rule allows; a
    grant it does not allow is refused and nothing is decided nor used up).

    The link is used up in the decision's transaction: a refused decision (no longer an
    approver, decided elsewhere, expired) leaves it unused, and a second use is
    ``LinkUsed`` (409) and changes nothing.
    """
    link = email_link_get(token)
    if not link.user.is_active:
        raise LinkInvalid("This link is not valid.")
    with transaction.atomic():
        used = EmailLink.objects.filter(pk=link.pk, used_at__isnull=True).update(
            used_at=timezone.now()
        )
        if not used:
            raise LinkUsed(
                "This link was already used: a decision was taken with it.",
                extra={"status": link.request.status},
            )
        return approval_decide(
            request_or_action_id=link.request,
            actor_user=link.user,
            approve=approve,
            notes=notes,
            source="email",
            grant=grant,
        )


def _routing_problem(
    request: ApprovalRequest, *, voter: User, actor_key: Any | None
) -> NotAnApprover | None:
    role = membership_role_get(user=voter, organization_id=request.organization_id)
    try:
        _require_approver(request, voter=voter, role=role, actor_key=actor_key)
    except NotAnApprover as exc:
        return exc
    return None


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
    offer: GrantSpec | None = None,
) -> ApprovalRequest:
    """Record one vote on a locked pending request; finalise it if the vote decides.

    The vote's ``user`` is the person (a key's creator), unique per request in the database.
    """
    if approve and request.approvals_required > 1:
        plan_require(request.organization, Feature.APPROVAL_QUORUM)
    # A pending one-approver request has no votes (its first vote decides it); the
    # database's one-vote-per-person constraint stands behind this either way.
    if (
        request.approvals_required > 1
        and ApprovalVote.objects.filter(request=request, user=voter).exists()
    ):
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
        grant=offer.record() if offer is not None else None,
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
        if offer is not None or request.approvals_required > 1:  # else none was offered
            _grants_create(request, source=source, now=now)
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


# --- remembered approvals (grants) -----------------------------------------------------------


def _grant_offer(
    request: ApprovalRequest, grant: GrantSpec | dict[str, Any] | None, *, approve: bool
) -> GrantSpec | None:
    """The grant offered with a decision, validated against the holding rule (400 if not)."""
    offer = grant_spec_parse(grant)
    if offer is None:
        return None
    if not approve:
        raise ValidationFailed("A grant goes with an approval, not a denial.", field="grant")
    rule = holding_rule(request)
    grant_spec_check(
        offer,
        allowed=rule.grants if rule is not None else (),
        rule_name=rule.name if rule is not None else "",
        session_id=request.session_id,
    )
    return offer


def _grant_snapshot(grant: Grant) -> dict[str, Any]:
    """What a grant's audit entries record of it."""
    return {
        "id": grant.public_id,
        "kind": grant.kind,
        "agent": grant.agent.public_id,
        "environment": grant.environment,
        "action": grant.action,
        "rule": grant.rule_name,
        "rule_id": grant.rule_public_id,
        "session_id": grant.session_id or None,
        "max_amount": str(grant.max_amount) if grant.max_amount is not None else None,
        "uses": grant.uses,
        "expires_at": iso(grant.expires_at),
        "action_id": grant.request.action_id if grant.request_id else None,
        "revoked_at": iso(grant.revoked_at),
    }


def _grants_create(request: ApprovalRequest, *, source: str, now: datetime) -> list[Grant]:
    """The grants offered with the approving votes of a request just approved, created in the
    decision's transaction, each audited as made by the reviewer who offered it."""
    votes = request.votes.filter(
        vote=ApprovalVote.Vote.APPROVE, grant__isnull=False
    ).select_related("user", "api_key")
    rule = holding_rule(request) if votes else None
    created = []
    for vote in votes:
        offer = grant_spec_parse(vote.grant)
        if offer is None or rule is None or offer.kind not in rule.grants:
            continue  # the rule changed since the vote: it no longer allows this grant
        grant = Grant.objects.create(
            public_id=public_id("grt"),
            organization=request.organization,
            agent=request.agent,
            environment=request.environment,
            action=request.action.lower(),
            rule=request.rule,
            rule_public_id=rule.id,
            rule_name=rule.name,
            kind=offer.kind,
            arguments_hash=request.arguments_hash if offer.kind == IDENTICAL else "",
            session_id=request.session_id if offer.kind == SESSION else "",
            max_amount=offer.max_amount,
            amount_field=rule.amount_field if offer.kind == AMOUNT else "",
            uses=offer.uses,
            uses_left=offer.uses,
            expires_at=now + timedelta(seconds=offer.ttl_seconds),
            request=request,
            created_at=now,
            created_by=vote.user,
            created_by_label=vote.voter_label,
        )
        audit_record_change(
            organization=request.organization,
            actor_user=vote.user,
            actor_key=vote.api_key,
            target=grant,
            verb="create",
            before=None,
            after=_grant_snapshot(grant),
            source=source,
        )
        created.append(grant)
    return created


def grant_use_for_call(
    *,
    agent_id: int,
    environment: str,
    rule: RuleSpec,
    call: Call,
    now: datetime,
    before_use: Callable[[], None] | None = None,
) -> GrantUse | None:
    """Use a grant that covers ``call``, held by ``rule``, in the caller's transaction (which
    writes the call's audit row naming it): None if none does.

    The caller asks only for a call that ``rule`` holds and no rule blocks. One indexed
    query finds the candidates (agent, environment, action, not revoked, not expired: the
    partial index ``grant_lookup``), then a conditional UPDATE takes a use (``uses_left >
    0`` for amount grants), so racing checks spend exactly the uses there are, and a grant
    revoked meanwhile is not used. The grant's kind must still be allowed by the rule.
    ``before_use`` runs once when a grant may be used, before any row is locked (the check
    path locks its running totals' counters there: counters first, then the grant).
    """
    kinds = rule.grants
    if not kinds or not rule.id:
        return None
    covers = Q()
    if IDENTICAL in kinds:
        covers |= Q(kind=IDENTICAL, arguments_hash=arguments_hash(call.arguments or {}))
    if SESSION in kinds and call.session_id:
        covers |= Q(kind=SESSION, session_id=call.session_id)
    if AMOUNT in kinds:
        amount = amount_read(call, rule.amount_field)
        if amount is not None:  # a missing, non-numeric or negative amount uses no grant
            covers |= Q(kind=AMOUNT, max_amount__gte=amount, uses_left__gt=0)
    if not covers:
        return None
    candidates = list(
        Grant.objects.filter(
            covers,
            agent_id=agent_id,
            environment=environment,
            action=call.action_key,
            revoked_at__isnull=True,
            expires_at__gt=now,
            rule_public_id=rule.id,
        )
        # Grants without a use count first: they cost nothing to use.
        .order_by(F("uses_left").asc(nulls_first=True), "expires_at")
        .values_list("pk", "public_id", "kind", "created_by_label", "expires_at", "uses")[:3]
    )
    if candidates and before_use is not None:
        before_use()
    for pk, grant_id, kind, granted_by, expires_at, uses in candidates:
        taken = (
            Grant.objects.filter(pk=pk, revoked_at__isnull=True, expires_at__gt=now)
            .filter(Q(uses_left__isnull=True) | Q(uses_left__gt=0))
            .update(use_count=F("use_count") + 1, last_used_at=now, uses_left=F("uses_left") - 1)
        )
        if taken != 1:
            continue  # used up or revoked by a racing transaction
        # The row is locked by the UPDATE until the caller commits: this is exact.
        uses_left = (
            Grant.objects.filter(pk=pk).values_list("uses_left", flat=True).get()
            if uses is not None
            else None
        )
        return GrantUse(
            public_id=grant_id,
            kind=kind,
            granted_by=granted_by,
            expires_at=expires_at,
            uses=uses,
            uses_left=uses_left,
        )
    return None


def grant_revoke(
    *,
    grant: Grant,
    actor_user: User | None = None,
    actor_key: Any | None = None,
    source: str = "",
) -> Grant:
    """Revoke a grant at once: from the commit on, no check uses it (a check using it now
    holds its row and commits first). Reviewers (approver, admin, owner) and approver keys
    may revoke; anyone from another organisation gets 404. Revoking a revoked grant changes
    nothing."""
    voter = _deciding_person(
        grant.organization_id,
        actor_user=actor_user,
        actor_key=actor_key,
        missing="No such grant.",
        forbidden="Viewers can see grants but not revoke them.",
    )
    label = _decider_label(voter, actor_key)
    with transaction.atomic():
        now = timezone.now()
        changed = Grant.objects.filter(pk=grant.pk, revoked_at__isnull=True).update(
            revoked_at=now, revoked_by=voter, revoked_by_label=label
        )
        grant.refresh_from_db()
        if changed == 1:
            before = {**_grant_snapshot(grant), "revoked_at": None}
            audit_record_change(
                organization=grant.organization,
                actor_user=voter,
                actor_key=actor_key,
                target=grant,
                verb="revoke",
                before=before,
                after=_grant_snapshot(grant),
                source=source,
            )
    return grant


# --- expiry -----------------------------------------------------------------------------------
# --- expiry, escalation and reminders ----------------------------------------------------------


def _expire_locked(request: ApprovalRequest, *, now: datetime) -> ApprovalRequest | None:
    """Expire ``request`` if it is still pending and overdue; None if it was not."""
    changed = ApprovalRequest.objects.filter(
        pk=request.pk, status=ApprovalRequest.Status.PENDING, expires_at__lte=now
    ).update(
        status=ApprovalRequest.Status.EXPIRED,
        decided_at=now,
        notes=EXPIRED_NOTE,
        reminder_due_at=None,
    )
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


def _escalate_locked(request: ApprovalRequest, *, now: datetime) -> ApprovalRequest | None:
    """Hand an overdue pending request to its ``escalate_to`` approvers: they become its
    approvers, its deadline becomes ``now + escalate_timeout``, and they are emailed.

    A conditional UPDATE on the escalation count: of two workers (or a worker and a reader)
    that see the same overdue request, one escalates it and the other changes nothing.
    None if it was not escalated.
    """
    seconds = request.escalate_timeout or request.organization.default_approval_timeout
    deadline = now + timedelta(seconds=seconds)
    changed = ApprovalRequest.objects.filter(
        pk=request.pk,
        status=ApprovalRequest.Status.PENDING,
        expires_at__lte=now,
        escalations=request.escalations,
    ).update(
        approvers=list(request.escalate_to),
        escalate_to=[],
        escalations=F("escalations") + 1,
        expires_at=deadline,
        reminder_due_at=now + timedelta(seconds=seconds / 2),
        notified_at=None,
        notice=ApprovalRequest.Notice.ESCALATED,
    )
    if changed != 1:
        return None
    previous_deadline = request.expires_at
    request.refresh_from_db()
    _record(
        request,
        verb="escalate",
        actor_user=None,
        actor_key=None,
        notes="",
        source="system",
        detail=(
            f"Escalated to {approvers_text(request.approvers)}: no decision before "
            f"{previous_deadline.isoformat()}; the new deadline is {deadline.isoformat()}"
        ),
    )
    event_emit(
        organization=request.organization,
        event_type=ESCALATED_EVENT,
        data={**approval_event_data(request), "approvers": list(request.approvers)},
        agent=request.agent,
        action_id=request.action_id,
    )
    _notify_reviewers_on_commit(request.organization_id)
    slack_update_on_commit(request_id=request.pk)  # the new approvers and deadline
    return request


def _settle_overdue_locked(request: ApprovalRequest, *, now: datetime) -> ApprovalRequest | None:
    """An overdue pending request escalates if it still may, and expires otherwise."""
    if request.escalate_to:
        return _escalate_locked(request, now=now)
    return _expire_locked(request, now=now)


def approval_expire(*, request: ApprovalRequest, now: datetime | None = None) -> bool:
    """Settle one overdue pending request: escalate it (its rule says ``on_timeout:
    escalate`` and it has not escalated yet) or expire it. False if it was decided (or not
    yet due)."""
    now = now or timezone.now()
    with transaction.atomic():
        return _settle_overdue_locked(request, now=now) is not None


def approval_expire_overdue(*, now: datetime | None = None, batch: int = 500) -> int:
    """The beat task: settle every overdue pending request (escalate or expire) and queue the
    half-time reminders that are due. Returns how many requests it escalated or expired."""
    now = now or timezone.now()
    approval_remind_due(now=now, batch=batch)
    due = (
        ApprovalRequest.objects.filter(status=ApprovalRequest.Status.PENDING, expires_at__lte=now)
        .select_related("organization", "agent")
        .order_by("expires_at")[:batch]
    )
    return sum(approval_expire(request=request, now=now) for request in due)


def approval_remind_due(*, now: datetime | None = None, batch: int = 500) -> int:
    """Half-way to a stage's deadline its approvers get a reminder, once per stage.

    The claim is a conditional UPDATE (``reminder_due_at`` cleared), so two workers never
    remind twice; the email goes out through the organisation's notify task (mail queue),
    which sends it to the request's current approvers. A request whose first email has not
    gone out yet needs no reminder. Returns how many reminders it queued.
    """
    now = now or timezone.now()
    due = list(
        ApprovalRequest.objects.filter(
            status=ApprovalRequest.Status.PENDING,
            reminder_due_at__lte=now,
            expires_at__gt=now,
        ).values_list("pk", "organization_id")[:batch]
    )
    reminded = 0
    organizations: set[int] = set()
    for pk, organization_id in due:
        claim = ApprovalRequest.objects.filter(
            pk=pk, status=ApprovalRequest.Status.PENDING, reminder_due_at__lte=now
        )
        if claim.filter(notified_at__isnull=False).update(
            reminder_due_at=None, notified_at=None, notice=ApprovalRequest.Notice.REMINDER
        ):
            reminded += 1
            organizations.add(organization_id)
        else:
            claim.update(reminder_due_at=None)
    for organization_id in sorted(organizations):
        _notify_reviewers_on_commit(organization_id)
    return reminded


def approval_expire_if_overdue(request: ApprovalRequest) -> ApprovalRequest:
    """Readers call this so correctness never depends on the beat task's lag (an overdue
    request that escalates reads as pending, with its new deadline)."""
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
        if _is_overdue(request, now):
            _settle_overdue_locked(request, now=now)
            request.refresh_from_db()
        if request.status != ApprovalRequest.Status.PENDING:
            standing = request.status
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
