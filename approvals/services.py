"""Approval requests: creating them (from a check) and, in the approvals issue, deciding them."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from django.db import transaction

from approvals.models import ApprovalRequest
from audit.models import AuditEntry
from webhooks.services import event_emit


def arguments_hash(arguments: Any) -> str:
    """SHA-256 of the canonical JSON of the call's arguments: an approval is for that call only."""
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def approval_event_data(request: ApprovalRequest) -> dict[str, Any]:
    """The canonical data of every approval event (see the webhook formats)."""

    def iso(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

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
    return request
