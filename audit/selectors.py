"""Reading tool calls back out of the audit log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.http import Http404

from accounts.models import Organization
from agents.policy_trace import trace_explain
from audit.models import AuditEntry
from wardenproject.jsonutil import iso

_STATUS_FOR_DECISION = {"allow": "allowed", "block": "blocked", "requires_approval": "pending"}


@dataclass(frozen=True, slots=True)
class AuditFilters:
    kind: str | None = None
    agent_public_id: str | None = None
    action: str | None = None  # exact action, e.g. stripe.refund
    decision: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def audit_entry_list(
    *, organization: Organization, filters: AuditFilters | None = None
) -> QuerySet[AuditEntry]:
    """The organisation's audit log, newest first, narrowed by ``filters``."""
    filters = filters or AuditFilters()
    entries = AuditEntry.objects.filter(organization=organization).select_related("agent")
    if filters.kind:
        entries = entries.filter(kind=filters.kind)
    if filters.agent_public_id:
        entries = entries.filter(agent_public_id=filters.agent_public_id)
    if filters.action:
        entries = entries.filter(action=filters.action)
    if filters.decision:
        entries = entries.filter(decision=filters.decision)
    if filters.since is not None:
        entries = entries.filter(created_at__gte=filters.since)
    if filters.until is not None:
        entries = entries.filter(created_at__lt=filters.until)
    return entries.order_by("-created_at", "-id")


def check_entry_get(*, organization: Organization, action_id: str) -> AuditEntry:
    """The check entry of ``action_id`` in ``organization``, or 404 (other tenants: 404 too)."""
    try:
        return AuditEntry.objects.select_related("agent").get(
            organization=organization, public_id=action_id, kind=AuditEntry.Kind.CHECK
        )
    except AuditEntry.DoesNotExist:
        raise Http404("No such action.") from None


def action_explanation(*, entry: AuditEntry) -> dict[str, Any]:
    """Why a check was decided as it was: its recorded evaluation trace and the same in plain
    words (checks recorded before traces were kept say so)."""
    trace = (entry.data or {}).get("trace") or None
    lines = trace_explain(trace)
    return {"recorded": trace is not None, "lines": lines, "text": "; ".join(lines), "trace": trace}


def action_detail(*, entry: AuditEntry) -> dict[str, Any]:
    """The native JSON view of one tool call: the check, its approval and its outcome."""
    from approvals.models import ApprovalRequest
    from approvals.services import approval_expire_if_overdue

    approval = (
        ApprovalRequest.objects.filter(action_id=entry.public_id).prefetch_related("votes").first()
    )
    if approval is not None:
        # Every reader sees an overdue request as expired, whatever the beat task's lag.
        approval = approval_expire_if_overdue(approval)
    outcome_entry = (
        AuditEntry.objects.filter(
            organization_id=entry.organization_id,
            action_id=entry.public_id,
            kind=AuditEntry.Kind.OUTCOME,
        )
        .order_by("-created_at", "-id")
        .first()
    )
    status = approval.status if approval else _STATUS_FOR_DECISION.get(entry.decision, "")
    return {
        "action_id": entry.public_id,
        "agent_id": entry.agent_public_id,
        "action": entry.action,
        "arguments": entry.arguments or {},
        "decision": entry.decision,
        "status": status,
        "reason": entry.reason,
        "rule": entry.rule_name or None,
        "environment": entry.environment,
        "session_id": entry.session_id or None,
        "created_at": iso(entry.created_at),
        "expires_at": iso(approval.expires_at) if approval else None,
        "decided_at": iso(approval.decided_at) if approval else None,
        "decided_by": (approval.decided_by_label or None) if approval else None,
        "notes": (approval.notes or None) if approval else None,
        "approvals": [
            {"by": vote.voter_label, "at": iso(vote.created_at), "notes": vote.notes or None}
            for vote in (approval.votes.all() if approval else [])
            if vote.vote == vote.Vote.APPROVE
        ],
        "approvals_required": approval.approvals_required if approval else None,
        "claimed_at": iso(approval.claimed_at) if approval else None,
        "outcome": (
            {
                "status": outcome_entry.status,
                "error": outcome_entry.data.get("error"),
                "at": iso(outcome_entry.created_at),
            }
            if outcome_entry
            else None
        ),
        "explanation": action_explanation(entry=entry),
    }
