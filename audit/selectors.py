"""Reading tool calls back out of the audit log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet
from django.http import Http404

from accounts.models import Organization
from agents.policy_trace import trace_explain
from audit.chain import ChainVerifier, CheckpointRecord, Report, chain_time, entry_content
from audit.keyring import signing_key, verification_keys
from audit.models import AuditCheckpoint, AuditEntry, AuditLink, AuditSealState
from audit.signing import key_id, public_key_text
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
    entries = AuditEntry.objects.filter(organization=organization).select_related("agent", "link")
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
    grant = (entry.data or {}).get("grant")
    if grant:  # the trace explains the hold; the grant, why the call was allowed anyway
        lines = [*lines, f"Allowed by grant {grant.get('id')} from {grant.get('granted_by')}."]
    return {"recorded": trace is not None, "lines": lines, "text": "; ".join(lines), "trace": trace}


def action_detail(*, entry: AuditEntry, approval: Any | None = None) -> dict[str, Any]:
    """The native JSON view of one tool call: the check, its approval and its outcome.

    ``approval``: the entry's approval request when the caller holds it already (a decision
    just taken, a page of the queue); otherwise it is read here, if there is one."""
    from approvals.models import ApprovalRequest
    from approvals.services import approval_expire_if_overdue

    if approval is None:
        approval = (
            ApprovalRequest.objects.filter(action_id=entry.public_id)
            .prefetch_related("votes")
            .first()
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
        "policy_version": entry.policy_version,
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
        # False for a few seconds after the check: not yet linked into the audit chain.
        "sealed": entry_sealed(entry=entry),
        "shadow": (entry.data or {}).get("shadow") or [],
        "log_only": (entry.data or {}).get("log_only"),
        # The remembered approval that allowed a call its rule held (approvals/grants.py).
        "grant": (entry.data or {}).get("grant"),
        "explanation": action_explanation(entry=entry),
    }


# --- The audit chain ------------------------------------------------------------------------


def entry_sealed(*, entry: AuditEntry) -> bool:
    return AuditLink.objects.filter(entry_id=entry.pk).exists()


def audit_public_keys() -> list[dict[str, Any]]:
    """The keys checkpoints of this server may be signed with (the signing one first)."""
    key = signing_key()
    signing_id = key_id(key.public_key()) if key is not None else None
    return [
        {
            "key_id": key_id(public),
            "public_key": public_key_text(public),
            "algorithm": "ed25519",
            "signing": key_id(public) == signing_id,
        }
        for public in verification_keys()
    ]


def checkpoint_json(checkpoint: AuditCheckpoint) -> dict[str, Any]:
    return {
        "kind": checkpoint.kind,
        "seq": checkpoint.seq,
        "hash": checkpoint.hash,
        "created_at": chain_time(checkpoint.created_at),
        "key_id": checkpoint.key_id or None,
        "signature": checkpoint.signature or None,
    }


def checkpoint_record(checkpoint: AuditCheckpoint) -> CheckpointRecord:
    return CheckpointRecord(
        kind=checkpoint.kind,
        seq=checkpoint.seq,
        hash=checkpoint.hash,
        created_at=chain_time(checkpoint.created_at),
        key_id=checkpoint.key_id,
        signature=checkpoint.signature,
    )


def audit_checkpoint_page(
    *, organization: Organization, after: tuple[int, int] | None, limit: int
) -> tuple[list[AuditCheckpoint], tuple[int, int] | None]:
    """A page of the organisation's checkpoints in chain order, after the keyset cursor
    ``(seq, id)``; returns them and the next cursor (None: this was the last page)."""
    checkpoints = AuditCheckpoint.objects.filter(organization=organization)
    if after is not None:
        checkpoints = checkpoints.filter(Q(seq__gt=after[0]) | Q(seq=after[0], id__gt=after[1]))
    page = list(checkpoints.order_by("seq", "id")[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    return page, ((page[-1].seq, page[-1].id) if more else None)


def audit_stream_page(*, organization: Organization, after: int, limit: int) -> list[AuditLink]:
    """Up to ``limit`` sealed entries after chain position ``after``, in chain order (links
    with their entries). Only sealed entries: a late commit never appears behind a cursor
    that already passed it, since it is sealed after the entries sealed before it."""
    return list(
        AuditLink.objects.filter(organization=organization, seq__gt=after)
        .select_related("entry")
        .order_by("seq")[:limit]
    )


def chain_start_seq(*, organization: Organization, since: datetime | None) -> int | None:
    """The first chain position to read: the first link whose entry is not older than
    ``since`` (None: the whole chain)."""
    if since is None:
        return None
    return (
        AuditLink.objects.filter(organization=organization, entry__created_at__gte=since)
        .order_by("seq")
        .values_list("seq", flat=True)
        .first()
    )


def audit_chain_verify(
    *, organization: Organization, since: datetime | None = None, chunk: int = 2000
) -> Report:
    """Recompute the organisation's chain from the database and check its checkpoints
    (``warden_audit verify``). ``report.problem`` names the first thing wrong."""
    start = chain_start_seq(organization=organization, since=since)
    checkpoints = AuditCheckpoint.objects.filter(organization=organization)
    if since is not None:
        # Nothing sealed since then: no checkpoint bears on an empty range.
        checkpoints = checkpoints.filter(seq__gte=start - 1) if start else checkpoints.none()
    verifier = ChainVerifier(
        org=organization.public_id,
        public_keys=verification_keys(),
        checkpoints=[checkpoint_record(c) for c in checkpoints.order_by("seq", "id")],
    )
    links = AuditLink.objects.filter(organization=organization).select_related("entry")
    if since is not None:
        links = links.filter(seq__gte=start if start is not None else 2**62)
    last = None
    while verifier.report.problem is None:
        page = list((links.filter(seq__gt=last) if last else links).order_by("seq")[:chunk])
        for link in page:
            entry = link.entry
            if entry.organization_id != organization.pk:
                verifier.fail(link.seq, entry.public_id, "belongs to another organisation")
                break
            verifier.feed(
                seq=link.seq,
                prev=link.prev,
                chain_hash=link.hash,
                entry=entry.public_id,
                content=entry_content(entry),
            )
        if len(page) < chunk:
            break
        last = page[-1].seq
    report = verifier.finish()
    if report.problem is None:
        stray = _entry_outside_the_chain(organization=organization, since=since)
        if stray is not None:
            verifier.fail(
                None,
                stray.public_id,
                "is not in the chain though the sealer has passed it: it was inserted behind "
                "the chain's back (or committed after the sealer's look-back)",
            )
    return report


def _entry_outside_the_chain(
    *, organization: Organization, since: datetime | None
) -> AuditEntry | None:
    state = AuditSealState.objects.filter(pk=1).first()
    if state is None:
        return None
    entries = AuditEntry.objects.filter(
        organization=organization, id__lte=state.watermark, link__isnull=True
    )
    for low, high, _ in state.gaps:
        entries = entries.exclude(id__gte=low, id__lte=high)
    if since is not None:
        entries = entries.filter(created_at__gte=since)
    return entries.order_by("id").first()
