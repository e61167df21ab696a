"""The check path: decide one tool call and record it (one audit row; plus the approval row
when it is held). Outcomes and SDK log lines are recorded here too.

Shared by the native API and the two compatible APIs; each renders ``CheckResult`` its way.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone

from agents import limits, runtime
from agents.models import Agent
from agents.policy import (
    ALLOW,
    BLOCK,
    REQUIRES_APPROVAL,
    Call,
    Decision,
    ShadowOutcome,
    plan_gate,
)
from agents.policy_trace import decision_trace
from agents.runtime import AgentRuntime, ApiPrincipal
from agents.selectors import organization_tz
from audit.models import AuditEntry
from audit.services import audit_entry_commit, audit_entry_insert
from wardenproject.errors import Conflict, DomainError, Forbidden, NotFound, ValidationFailed
from wardenproject.ids import public_id
from wardenproject.jsonutil import iso

STATUS_FOR_DECISION = {"allow": "allowed", "block": "blocked", "requires_approval": "pending"}
IDEMPOTENCY_CACHE_SECONDS = 24 * 3600


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
    rule_message: str = ""
    replayed: bool = False

    @classmethod
    def of(cls, entry: AuditEntry, decision: Decision, expires_at: datetime | None) -> CheckResult:
        return cls(
            action_id=entry.public_id,
            decision=decision.decision,
            status=STATUS_FOR_DECISION[decision.decision],
            reason=decision.reason,
            rule=decision.rule.name if decision.rule else None,
            environment=entry.environment,
            expires_at=expires_at,
            agent_public_id=entry.agent_public_id,
            created_at=entry.created_at,
            rule_message=decision.message,
        )

    @property
    def message(self) -> str | None:
        """What the agent is told: the deciding rule's ``message``, else the reason of a
        block or a hold."""
        if self.rule_message:
            return self.rule_message
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
    """Decide a tool call for the principal's agent and record it: the whole check.

    key -> agent -> (replay) -> the call -> budgets locked -> decision -> plan gate ->
    audit row (+ approval request, + budgets spent) -> answer.
    """
    started = started if started is not None else time.perf_counter()
    agent_rt = check_agent_resolve(principal=principal, agent_ref=agent_ref)
    request_hash = _request_hash(action, arguments, session_id) if idempotency_key else ""
    if idempotency_key and (replay := _replay(agent_rt, idempotency_key, request_hash)):
        return replay
    call = _call(
        principal.organization, action, arguments, principal.environment, session_id, metadata
    )
    record = _Record(principal, agent_rt, call, source, idempotency_key, request_hash, started)
    shadow_totals = shadow_totals_read(agent_rt, call)
    try:
        # With running totals, a decision is taken on the budgets' totals and an allowed call
        # spends them with its audit row, atomically; if racing checks spent them meanwhile,
        # the call is decided again on the new totals (so exactly what fits is allowed).
        for reservation in limits.reservations(
            organization_id=principal.organization.pk,
            agent_id=agent_rt.agent.pk,
            environment=call.environment,
            budgets=agent_rt.policy.budgets(call),
            rule_pks=agent_rt.rule_pks,
            now=call.at,
        ):
            with reservation:
                evaluated = agent_rt.policy.evaluate(call, reservation.totals)
                decision = plan_gate(evaluated, agent_rt.plan)
                decision = record.decided(evaluated, decision, shadow_totals)
                expires_at = record.write(decision, reservation)
                decision = record.answer  # allowed instead, when a grant covers a held call
    except IntegrityError:  # a concurrent request with the same Idempotency-Key won
        replay = _replay(agent_rt, idempotency_key, request_hash) if idempotency_key else None
        if replay is None:
            raise
        return replay
    result = CheckResult.of(record.entry, decision, expires_at)
    if idempotency_key:
        _idempotency_remember(agent_rt.agent.pk, idempotency_key, request_hash, result)
    return result


def _call(
    organization: Any,
    action: str,
    arguments: dict[str, Any],
    environment: str,
    session_id: str,
    metadata: dict[str, Any] | None,
) -> Call:
    """The call as rules read it, now, in the organisation's time zone."""
    return Call(
        action,
        arguments,
        environment,
        session_id=session_id,
        metadata=metadata,
        at=timezone.now(),
        timezone=organization_tz(organization),
    )


def shadow_totals_read(agent_rt: AgentRuntime, call: Call) -> dict[str, Decimal | int] | None:
    """The window totals the agent's shadow rules read for ``call``: read, never locked or
    spent (None when no shadow rule with a running total may apply)."""
    shadow = agent_rt.policy.shadow
    budgets = shadow.budgets(call) if shadow is not None else ()
    if not budgets:
        return None
    return limits.budgets_read(
        agent_id=agent_rt.agent.pk, environment=call.environment, budgets=budgets, now=call.at
    )


def grant_may_cover(decision: Decision) -> bool:
    """Whether a remembered approval may allow this decision: a hold by a rule that allows
    grants, where no rule blocks and no other rule holds (a grant answers for its own rule
    only). Everything else (every allow and block) never looks for a grant."""
    rule = decision.rule
    if decision.decision != REQUIRES_APPROVAL or rule is None or not rule.grants:
        return False
    return all(
        matched.effect != BLOCK
        and (matched.effect != REQUIRES_APPROVAL or matched.rule.id == rule.id)
        for matched in decision.matched
    )


def log_only_answer(decision: Decision) -> Decision:
    """What a ``log_only`` agent answers: the call is allowed, and the reason says what the
    policy decided (no approval request, no hold)."""
    if decision.decision == ALLOW:
        return decision
    return Decision(
        decision=ALLOW,
        rule=decision.rule,
        reason=f"log only: would have been {decision.decision}: {decision.reason}",
    )


class _Record:
    """Writing one check: its audit row, and the approval request when it is held."""

    def __init__(
        self,
        principal: ApiPrincipal,
        agent_rt: AgentRuntime,
        call: Call,
        source: str,
        idempotency_key: str,
        request_hash: str,
        started: float,
    ) -> None:
        self.principal = principal
        self.agent_rt = agent_rt
        self.call = call
        self.source = source
        self.idempotency_key = idempotency_key
        self.request_hash = request_hash
        self.started = started
        self.entry: AuditEntry
        self.answer: Decision  # what was written: the decision, or a grant's allow
        self.grant: dict[str, Any] | None = None  # the grant that allowed a held call
        self.shadow: tuple[ShadowOutcome, ...] = ()
        self.would_have_been: Decision | None = None  # a log-only agent's overridden decision

    def decided(
        self,
        evaluated: Decision,
        decision: Decision,
        shadow_totals: dict[str, Decimal | int] | None,
    ) -> Decision:
        """The answer to write: ``decision`` (after the plan gate), turned into an allow for a
        log-only agent. Shadow rules are evaluated against the policy's decision."""
        agent_rt = self.agent_rt
        shadow = agent_rt.policy.shadow
        if shadow is not None:
            self.shadow = shadow.evaluate(self.call, evaluated, shadow_totals, agent_rt.plan)
        if agent_rt.agent.enforcement != Agent.Enforcement.LOG_ONLY:
            return decision
        answer = log_only_answer(decision)
        self.would_have_been = decision if answer is not decision else None
        return answer

    def write(self, decision: Decision, reservation: limits.Reservation) -> datetime | None:
        """Insert the audit row (and the approval request); an allowed call spends its
        budgets with it. Returns the approval's deadline when the call is held.

        A held call that a remembered approval covers is allowed instead (``self.answer``):
        the grant's use, the audit row naming it and the budgets' spend commit together."""
        self.answer, self.grant = decision, None
        if grant_may_cover(decision) and self._write_granted(decision, reservation):
            return None
        self.entry = entry = self._entry(decision, reservation)
        if reservation.held and decision.decision == ALLOW:
            reservation.spend_with(entry)  # the row and the counters, atomically
            return None
        if decision.decision == REQUIRES_APPROVAL:
            from approvals.services import approval_request_create

            with transaction.atomic():
                audit_entry_insert(entry)
                approval = approval_request_create(
                    entry=entry,
                    api_key=self.principal.api_key,
                    rule=self.agent_rt.rules_by_id.get(decision.rule.id) if decision.rule else None,
                    timeout_seconds=decision.approval_timeout,
                    approvals_required=decision.approvals_required,
                    spec=decision.rule,
                )
            return approval.expires_at
        if self.idempotency_key:
            with transaction.atomic():
                audit_entry_insert(entry)
            return None
        # The common case: one row, committed with other checks' rows (group commit;
        # asynchronous commit if the operator opted in with WARDEN_AUDIT_ASYNC_COMMIT).
        audit_entry_commit(entry)
        return None

    def _write_granted(self, held: Decision, reservation: limits.Reservation) -> bool:
        """Allow the held call if a grant covers it (True), writing it; else write nothing."""
        from approvals.services import grant_use_for_call

        assert held.rule is not None
        call = self.call
        with transaction.atomic():
            use = grant_use_for_call(
                agent_id=self.agent_rt.agent.pk,
                environment=call.environment,
                rule=held.rule,
                call=call,
                now=call.at,
                before_use=reservation.require_locks,
            )
            if use is None:
                return False
            allowed = Decision(
                decision=ALLOW, rule=held.rule, reason=use.reason(), matched=held.matched
            )
            self.grant = {**use.record(), "held": held.reason}
            self.entry = entry = self._entry(allowed, reservation, traced=held)
            if reservation.held:
                reservation.spend_with(entry)  # _Conflict rolls the grant's use back too
            else:
                audit_entry_insert(entry)
        self.answer = allowed
        return True

    def _entry(
        self,
        decision: Decision,
        reservation: limits.Reservation,
        traced: Decision | None = None,
    ) -> AuditEntry:
        """The audit row of ``decision``; ``traced``: the policy's own decision, when a grant
        allowed a call the policy held (the trace explains the hold, ``data.grant`` the
        allow)."""
        call, principal, agent = self.call, self.principal, self.agent_rt.agent
        rule = decision.rule
        data: dict[str, Any] = {}
        if call.metadata:
            data["metadata"] = call.metadata
        if self.request_hash:
            data["request_hash"] = self.request_hash
        if decision.message:
            data["message"] = decision.message
        if reservation.held and decision.decision == REQUIRES_APPROVAL:
            data["budgets"] = reservation.record()  # spent if the call is approved
        if self.shadow:
            data["shadow"] = [outcome.record() for outcome in self.shadow]
        if self.grant is not None:
            data["grant"] = self.grant
        if self.would_have_been is not None:
            data["log_only"] = {
                "decision": self.would_have_been.decision,
                "reason": self.would_have_been.reason,
            }
        # Why: the rules the call's action matched, their conditions, amounts and totals.
        data["trace"] = decision_trace(
            self.agent_rt.policy, call, reservation.totals, traced or decision, self.agent_rt.plan
        )
        entry = AuditEntry(
            public_id=public_id("act"),
            organization=principal.organization,
            kind=AuditEntry.Kind.CHECK,
            created_at=call.at,
            actor_key=principal.api_key,
            actor_label=principal.label,
            agent=agent,
            agent_public_id=agent.public_id,
            action=call.action,
            arguments=call.arguments,
            environment=call.environment,
            session_id=call.session_id,
            decision=decision.decision,
            status=STATUS_FOR_DECISION[decision.decision],
            rule_public_id=rule.id if rule else "",
            rule_name=rule.name if rule else "",
            reason=decision.reason,
            source=self.source,
            data=data,
            idempotency_key=self.idempotency_key,
            policy_version=self.agent_rt.policy_version,
        )
        entry.latency_us = int((time.perf_counter() - self.started) * 1_000_000)
        return entry


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


# --- Idempotency-Key replays ----------------------------------------------------------------


def _request_hash(action: str, arguments: Any, session_id: str) -> str:
    canonical = json.dumps(
        [action, arguments, session_id], sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _idempotency_cache_key(agent_id: int, key: str) -> str:
    return f"idem:{agent_id}:{hashlib.sha256(key.encode()).hexdigest()}"


def _idempotency_remember(agent_id: int, key: str, request_hash: str, result: CheckResult) -> None:
    stored = {
        "request_hash": request_hash,
        "result": {
            slot: getattr(result, slot) for slot in CheckResult.__slots__ if slot != "replayed"
        },
    }
    cache.set(_idempotency_cache_key(agent_id, key), stored, IDEMPOTENCY_CACHE_SECONDS)


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
        rule_message=(entry.data or {}).get("message", ""),
        replayed=True,
    )


def _replay(agent_rt: AgentRuntime, key: str, request_hash: str) -> CheckResult | None:
    return _idempotent_replay(agent_rt.agent.pk, key, request_hash)


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


# --- Simulation -----------------------------------------------------------------------------


def simulate(
    *,
    agent_rt: AgentRuntime,
    action: str,
    arguments: dict[str, Any],
    environment: str,
    session_id: str = "",
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What a check would answer now, with the matched rules; records and spends nothing."""
    call = _call(agent_rt.agent.organization, action, arguments, environment, session_id, metadata)
    now = call.at
    policy = agent_rt.policy
    budgets = policy.budgets(call)
    totals = (
        limits.budgets_read(
            agent_id=agent_rt.agent.pk, environment=environment, budgets=budgets, now=now
        )
        if budgets
        else None
    )
    evaluated = policy.evaluate(call, totals)
    decision = plan_gate(evaluated, agent_rt.plan)
    shadow = (
        policy.shadow.evaluate(call, evaluated, shadow_totals_read(agent_rt, call), agent_rt.plan)
        if policy.shadow is not None
        else ()
    )
    result = CheckResult(
        action_id="",
        decision=decision.decision,
        status=STATUS_FOR_DECISION[decision.decision],
        reason=decision.reason,
        rule=decision.rule.name if decision.rule else None,
        environment=environment,
        expires_at=None,
        agent_public_id=agent_rt.agent.public_id,
        created_at=now,
        rule_message=decision.message,
    )
    return {
        "decision": decision.decision,
        "status": result.status,
        "reason": decision.reason,
        "rule": result.rule,
        "message": result.message,
        "environment": environment,
        "matched": [
            {"rule": m.rule.name, "rule_id": m.rule.id, "effect": m.effect, "reason": m.reason}
            for m in decision.matched
        ],
        "totals": {key: str(value) for key, value in (totals or {}).items()},
        "approvals_required": decision.approvals_required if decision.rule else None,
        "approval_timeout": decision.approval_timeout,
        "shadow": [outcome.record() for outcome in shadow],
        "enforcement": agent_rt.agent.enforcement,
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
