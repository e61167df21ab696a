"""The check path: decide one tool call and record it (one audit row; plus the approval row
when it is held). Outcomes and SDK log lines are recorded here too.

Shared by the native API and the two compatible APIs; each renders ``CheckResult`` its way.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone

from agents import runtime
from agents.policy import REQUIRES_APPROVAL, LimitQuery, action_matches, to_decimal
from agents.runtime import AgentRuntime, ApiPrincipal
from audit.models import AuditEntry
from audit.services import audit_entry_commit, audit_entry_insert
from wardenproject.db import instance_new
from wardenproject.errors import Conflict, DomainError, Forbidden, NotFound
from wardenproject.ids import public_id
from wardenproject.jsonutil import iso

STATUS_FOR_DECISION = {"allow": "allowed", "block": "blocked", "requires_approval": "pending"}
IDEMPOTENCY_CACHE_SECONDS = 24 * 3600
_MISSING = object()


@dataclass(slots=True)
class CheckResult:
    action_id: str
    decision: str
    status: str
    reason: str
    rule: str | None
    environment: str
    expires_at: datetime | None
    agent_public_id: str
    created_at: datetime
    replayed: bool = False

    @property
    def message(self) -> str | None:
        return None if self.decision == "allow" else self.reason

    def native(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "action_id": self.action_id,
            "status": self.status,
            "reason": self.reason,
            "rule": self.rule,
            "message": self.message,
            "environment": self.environment,
            "expires_at": iso(self.expires_at),
        }


class AgentInactive(DomainError):
    status = 403
    code = "agent_inactive"


def check_agent_resolve(*, principal: ApiPrincipal, agent_ref: str | None) -> AgentRuntime:
    """The agent a check is for: an agent key's own, or the one an org key names. 404 for
    unknown agents (and for agent keys naming another agent)."""
    organization = principal.organization
    if principal.kind == "agent":
        agent_id = principal.agent_id
        if agent_ref:
            named = runtime.agent_id_for_ref(organization, agent_ref)
            if named != agent_id:
                raise NotFound(f"No agent {agent_ref!r} for this key.", field="agent")
    elif principal.kind == "org":
        if not agent_ref:
            from wardenproject.errors import ValidationFailed

            raise ValidationFailed("An organisation key must name the agent.", field="agent")
        agent_id = runtime.agent_id_for_ref(organization, agent_ref)
        if agent_id is None:
            raise NotFound(f"No agent {agent_ref!r} in this organisation.", field="agent")
    else:
        raise Forbidden("Approver keys may only decide approvals.")
    found = runtime.agent_runtime(agent_id, organization) if agent_id is not None else None
    if found is None:
        raise NotFound("No such agent.", field="agent")
    if not found.agent.is_active:
        raise AgentInactive(f"Agent {found.agent.name!r} is deactivated.", field="agent")
    return found


def _request_hash(action: str, arguments: Any, session_id: str) -> str:
    canonical = json.dumps(
        [action, arguments, session_id], sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _idempotency_cache_key(agent_id: int, key: str) -> str:
    return f"idem:{agent_id}:{hashlib.sha256(key.encode()).hexdigest()}"


def _result_from_entry(entry: AuditEntry) -> CheckResult:
    expires_at = None
    if entry.decision == REQUIRES_APPROVAL:
        from approvals.models import ApprovalRequest

        expires_at = (
            ApprovalRequest.objects.filter(action_id=entry.public_id)
            .values_list("expires_at", flat=True)
            .first()
        )
    return CheckResult(
        action_id=entry.public_id,
        decision=entry.decision,
        status=STATUS_FOR_DECISION[entry.decision],
        reason=entry.reason,
        rule=entry.rule_name or None,
        environment=entry.environment,
        expires_at=expires_at,
        agent_public_id=entry.agent_public_id,
        created_at=entry.created_at,
        replayed=True,
    )


def _idempotent_replay(agent_id: int, key: str, request_hash: str) -> CheckResult | None:
    cached = cache.get(_idempotency_cache_key(agent_id, key))
    if cached is not None:
        if cached["request_hash"] != request_hash:
            raise _idempotency_mismatch()
        return CheckResult(**{**cached["result"], "replayed": True})
    entry = AuditEntry.objects.filter(agent_id=agent_id, idempotency_key=key).first()
    if entry is None:
        return None
    if entry.data.get("request_hash") != request_hash:
        raise _idempotency_mismatch()
    return _result_from_entry(entry)


def _idempotency_mismatch() -> Conflict:
    return Conflict(
        "This Idempotency-Key was used for a different request.",
        code="idempotency_mismatch",
        field="Idempotency-Key",
    )


def _dig(arguments: Mapping[str, Any], path: str) -> Any:
    if path in arguments:
        return arguments[path]
    current: Any = arguments
    for part in path.split("."):
        if isinstance(current, Mapping):
            current = current.get(part, _MISSING)
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return _MISSING
        if current is _MISSING:
            return _MISSING
    return current


def running_totals(
    *, agent_id: int, queries: tuple[LimitQuery, ...], now: datetime
) -> dict[str, Decimal | int]:
    """Allowed checks plus approved requests of the agent in each query's sliding window."""
    from approvals.models import ApprovalRequest

    totals: dict[str, Decimal | int] = {}
    for query in queries:
        start = now - timedelta(seconds=query.per_seconds)
        checks = AuditEntry.objects.filter(
            agent_id=agent_id, kind=AuditEntry.Kind.CHECK, decision="allow", created_at__gte=start
        )
        approved = ApprovalRequest.objects.filter(
            agent_id=agent_id, status=ApprovalRequest.Status.APPROVED, requested_at__gte=start
        )
        pattern = query.action_pattern
        glob = "*" in pattern
        if glob:
            prefix = pattern.split("*", 1)[0]
            if prefix:
                checks = checks.filter(action__startswith=prefix)
                approved = approved.filter(action__startswith=prefix)
        else:
            checks = checks.filter(action=pattern)
            approved = approved.filter(action=pattern)
        if query.kind == "count" and not glob:
            totals[query.rule_id] = checks.count() + approved.count()
            continue
        rows = list(checks.values_list("action", "arguments")) + list(
            approved.values_list("action", "arguments")
        )
        if glob:
            rows = [row for row in rows if action_matches(pattern, row[0])]
        if query.kind == "count":
            totals[query.rule_id] = len(rows)
            continue
        total = Decimal(0)
        for _, arguments in rows:
            if isinstance(arguments, Mapping) and query.field:
                value = to_decimal(_dig(arguments, query.field))
                if value is not None:
                    total += value
        totals[query.rule_id] = total
    return totals


def check_perform(
    *,
    principal: ApiPrincipal,
    agent_ref: str | None,
    action: str,
    arguments: dict[str, Any],
    session_id: str = "",
    metadata: dict[str, Any] | None = None,
    source: str = "native",
    idempotency_key: str = "",
    started: float | None = None,
) -> CheckResult:
    """Decide a tool call for the principal's agent and write its audit row."""
    started = started if started is not None else time.perf_counter()
    agent_rt = check_agent_resolve(principal=principal, agent_ref=agent_ref)
    agent = agent_rt.agent
    request_hash = ""
    if idempotency_key:
        request_hash = _request_hash(action, arguments, session_id)
        replay = _idempotent_replay(agent.pk, idempotency_key, request_hash)
        if replay is not None:
            return replay

    environment = principal.environment
    policy = agent_rt.policy
    now = timezone.now()
    queries = policy.limit_queries(action, environment)
    totals = running_totals(agent_id=agent.pk, queries=queries, now=now) if queries else None
    decision = policy.evaluate(action, arguments, environment, totals)
    rule = decision.rule

    data: dict[str, Any] = {}
    if metadata:
        data["metadata"] = metadata
    if request_hash:
        data["request_hash"] = request_hash
    entry = instance_new(
        AuditEntry,
        public_id=public_id("act"),
        organization=principal.organization,
        kind=AuditEntry.Kind.CHECK,
        created_at=now,
        actor_key=principal.api_key,
        actor_label=principal.label,
        agent=agent,
        agent_public_id=agent.public_id,
        action=action,
        arguments=arguments,
        environment=environment,
        session_id=session_id,
        decision=decision.decision,
        status=STATUS_FOR_DECISION[decision.decision],
        rule_public_id=rule.id if rule else "",
        rule_name=rule.name if rule else "",
        reason=decision.reason,
        source=source,
        data=data,
        idempotency_key=idempotency_key,
    )
    entry.latency_us = int((time.perf_counter() - started) * 1_000_000)
    expires_at = None
    try:
        if decision.decision == REQUIRES_APPROVAL:
            from approvals.services import approval_request_create

            with transaction.atomic():
                audit_entry_insert(entry)
                approval = approval_request_create(
                    entry=entry,
                    api_key=principal.api_key,
                    rule=agent_rt.rules_by_id.get(rule.id) if rule else None,
                    timeout_seconds=decision.approval_timeout,
                    approvals_required=decision.approvals_required,
                )
            expires_at = approval.expires_at
        elif idempotency_key:
            with transaction.atomic():
                audit_entry_insert(entry)
        else:
            # The common case: one row, committed with other checks' rows (group commit;
            # asynchronous commit if the operator opted in with WARDEN_AUDIT_ASYNC_COMMIT).
            audit_entry_commit(entry)
    except IntegrityError:
        if not idempotency_key:
            raise
        replay = _idempotent_replay(agent.pk, idempotency_key, request_hash)
        if replay is None:
            raise
        return replay

    result = CheckResult(
        action_id=entry.public_id,
        decision=decision.decision,
        status=entry.status,
        reason=decision.reason,
        rule=rule.name if rule else None,
        environment=environment,
        expires_at=expires_at,
        agent_public_id=agent.public_id,
        created_at=now,
    )
    if idempotency_key:
        stored = {
            "request_hash": request_hash,
            "result": {
                slot: getattr(result, slot) for slot in CheckResult.__slots__ if slot != "replayed"
            },
        }
        cache.set(
            _idempotency_cache_key(agent.pk, idempotency_key), stored, IDEMPOTENCY_CACHE_SECONDS
        )
    return result


def simulate(
    *, agent_rt: AgentRuntime, action: str, arguments: dict[str, Any], environment: str
) -> dict[str, Any]:
    """What a check would answer now, with the matched rules; records nothing."""
    policy = agent_rt.policy
    queries = policy.limit_queries(action, environment)
    totals = (
        running_totals(agent_id=agent_rt.agent.pk, queries=queries, now=timezone.now())
        if queries
        else None
    )
    decision = policy.evaluate(action, arguments, environment, totals)
    return {
        "decision": decision.decision,
        "status": STATUS_FOR_DECISION[decision.decision],
        "reason": decision.reason,
        "rule": decision.rule.name if decision.rule else None,
        "environment": environment,
        "matched": [
            {"rule": m.rule.name, "rule_id": m.rule.id, "effect": m.effect, "reason": m.reason}
            for m in decision.matched
        ],
        "totals": {key: str(value) for key, value in (totals or {}).items()},
        "approvals_required": decision.approvals_required if decision.rule else None,
        "approval_timeout": decision.approval_timeout,
    }


# --- Outcomes and SDK log lines -------------------------------------------------------------


def action_outcome_record(
    *,
    principal: ApiPrincipal,
    check: AuditEntry,
    status: str,
    error: str | None,
    result: Any,
) -> tuple[AuditEntry, bool]:
    """The one outcome of a tool call, and whether this call recorded it. A repeat of the
    recorded outcome (a retried report) answers it; a different one is a 409 ``conflict``
    naming the recorded ``status``."""
    data: dict[str, Any] = {}
    if error is not None:
        data["error"] = error
    if result is not None:
        data["result"] = result
    with transaction.atomic():
        # The check's row is locked so that two reports cannot both find no outcome.
        list(AuditEntry.objects.select_for_update().filter(pk=check.pk).values_list("pk"))
        recorded = (
            AuditEntry.objects.filter(kind=AuditEntry.Kind.OUTCOME, action_id=check.public_id)
            .order_by("id")
            .first()
        )
        if recorded is not None:
            if recorded.status == status and recorded.data == data:
                return recorded, False
            raise Conflict(
                f"This action's outcome is already recorded ({recorded.status}).",
                extra={"status": recorded.status},
            )
        return _outcome_insert(principal, check, status, data), True


def _outcome_insert(
    principal: ApiPrincipal, check: AuditEntry, status: str, data: dict[str, Any]
) -> AuditEntry:
    entry = AuditEntry(
        public_id=public_id("out"),
        organization=principal.organization,
        kind=AuditEntry.Kind.OUTCOME,
        actor_key=principal.api_key,
        actor_label=principal.label,
        agent_id=check.agent_id,
        agent_public_id=check.agent_public_id,
        action=check.action,
        action_id=check.public_id,
        environment=check.environment,
        session_id=check.session_id,
        status=status,
        source="native",
        data=data,
    )
    audit_entry_insert(entry)
    return entry


def sdk_log_record(
    *, principal: ApiPrincipal, agent_ref: str, action: str, status: str, context: Any
) -> AuditEntry:
    """An AgentWarden ``/sdk/log`` line: what the agent reports it did."""
    agent_rt = check_agent_resolve(principal=principal, agent_ref=agent_ref)
    agent = agent_rt.agent
    entry = AuditEntry(
        public_id=public_id("log"),
        organization=principal.organization,
        kind=AuditEntry.Kind.LOG,
        actor_key=principal.api_key,
        actor_label=principal.label,
        agent=agent,
        agent_public_id=agent.public_id,
        action=action,
        arguments=context,
        environment=principal.environment,
        status=status,
        source="agentwarden",
    )
    audit_entry_commit(entry)  # committed with concurrent checks' rows (group commit)
    return entry
