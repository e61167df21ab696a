"""Backtest: replay an agent's recorded check calls against a candidate policy.

``policy_backtest`` reads the agent's check entries of a period in the order they were
recorded (streamed, never all in memory, at most ``limit``) and decides each one again with
the candidate document's rules (plus the organisation-wide rules, as ``PUT .../policy``
would leave them), then compares with what was answered. It records nothing and changes
nothing.

Running totals are recomputed in memory as the candidate would have counted them: each
candidate budget starts from the window's history before ``since`` (the allowed checks and
approved requests that ``agents.limits.limit_counters_rebuild`` would count), and then
counts every replayed call the candidate allows (and a held call that was held and approved
then too). Budgets use the same buckets and windows as the live counters.

Cost: one indexed range read of the organisation's entries of the period (plus the candidate
limits' windows before it), one evaluation per call: proportional to the calls replayed,
bounded by ``MAX_CALLS`` (docs/PERFORMANCE.md has the figure).
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_date

from agents import limits, runtime
from agents.models import Agent, Rule
from agents.policy import (
    REQUIRES_APPROVAL,
    Budget,
    Call,
    CompiledPolicy,
    RuleSpec,
    bucket_seconds,
    compile_policy,
    parse_duration,
    plan_gate,
)
from agents.policy_document import PolicyDocument, PolicyDocumentError
from agents.selectors import organization_tz, rule_spec
from agents.services import policy_document_parse, policy_error_answer
from agents.shadow import answer_of
from approvals.models import ApprovalRequest
from audit.models import AuditEntry
from wardenproject.errors import ValidationFailed
from wardenproject.timeparse import datetime_parse_utc

MAX_CALLS = 100_000  # the most calls one backtest replays (its `limit`, and the default)
MAX_SAMPLES = 50
# The most rows of history before ``since`` read to start the candidate's running totals
# (its longest window's worth); past it the totals start lower and the answer says so.
MAX_SEED_ROWS = 1_000_000
MAX_PERIOD_DAYS = 366
_ZERO = Decimal(0)


def backtest_time(text: object, *, field: str, now: datetime) -> datetime:
    """An ISO-8601 time (a date is its midnight UTC; no zone is UTC) or a duration before
    ``now`` (``7d``, ``12h``), else 400 naming ``field``."""
    if isinstance(text, str) and text.strip():
        value = text.strip()
        parsed = datetime_parse_utc(value)
        if parsed is None and (day := _date(value)) is not None:
            parsed = datetime(day.year, day.month, day.day, tzinfo=UTC)
        if parsed is not None:
            return parsed
        try:
            return now - timedelta(seconds=parse_duration(value))
        except ValueError:
            pass
    raise ValidationFailed(
        f"{field} must be an ISO-8601 time (2026-12-01T00:00:00Z) or a duration such as 7d.",
        field=field,
    )


def _date(value: str) -> Any:
    try:
        return parse_date(value)
    except ValueError:
        return None


def backtest_period(
    *, since: object, until: object = None, now: datetime | None = None
) -> tuple[datetime, datetime]:
    """The period ``[since, until)`` of a backtest (``until`` defaults to now)."""
    now = now or timezone.now()
    start = backtest_time(since, field="since", now=now)
    end = now if until in (None, "") else backtest_time(until, field="until", now=now)
    if end <= start:
        raise ValidationFailed("until must be after since.", field="until")
    if end - start > timedelta(days=MAX_PERIOD_DAYS):
        raise ValidationFailed(f"A backtest covers at most {MAX_PERIOD_DAYS} days.", field="since")
    return start, end


def backtest_limit(value: object) -> int:
    if value is None:
        return MAX_CALLS
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_CALLS:
        raise ValidationFailed(
            f"limit must be a whole number from 1 to {MAX_CALLS}.", field="limit"
        )
    return value


# --- Budgets in memory ----------------------------------------------------------------------


class _Window:
    """One budget's buckets in memory, oldest first, with the window's totals beside them
    (the live counters' arithmetic: ``agents.limits``)."""

    __slots__ = ("buckets", "count", "per", "size", "total")

    def __init__(self, per_seconds: int) -> None:
        self.per = per_seconds
        self.size = bucket_seconds(per_seconds)
        self.buckets: deque[list[Any]] = deque()
        self.count = 0
        self.total = _ZERO

    def read(self, now: datetime) -> None:
        since = int((now.timestamp() - self.per) // self.size) * self.size
        buckets = self.buckets
        while buckets and buckets[0][0] < since:
            _, count, total = buckets.popleft()
            self.count -= count
            self.total -= total

    def add(self, at: datetime, amount: Decimal) -> None:
        start = int(at.timestamp() // self.size) * self.size
        buckets = self.buckets
        if buckets and buckets[-1][0] >= start:
            # Calls arrive in time order; an equal start is the current bucket.
            buckets[-1][1] += 1
            buckets[-1][2] += amount
        else:
            buckets.append([start, 1, amount])
        self.count += 1
        self.total += amount


class _Budgets:
    def __init__(self) -> None:
        self.windows: dict[tuple[Any, ...], _Window] = {}

    def _window(self, environment: str, budget: Budget) -> _Window:
        key = (environment, *budget.series())
        window = self.windows.get(key)
        if window is None:
            window = self.windows[key] = _Window(budget.per_seconds)
        return window

    def totals(
        self, environment: str, budgets: tuple[Budget, ...], now: datetime
    ) -> dict[str, Decimal | int]:
        totals: dict[str, Decimal | int] = {}
        for budget in budgets:
            window = self._window(environment, budget)
            window.read(now)
            totals[budget.rule_id] = window.count if budget.kind == "count" else window.total
        return totals

    def spend(self, environment: str, budgets: tuple[Budget, ...], at: datetime) -> None:
        for budget in budgets:
            self._window(environment, budget).add(at, budget.amount)


# --- The candidate ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Candidate:
    policy: CompiledPolicy
    rules: tuple[RuleSpec, ...]  # enforcing rules, candidate's first, for by_rule


def _candidate(agent: Agent, document: PolicyDocument) -> _Candidate:
    """The policy the agent would have after ``PUT .../policy`` with ``document``: its rules
    (ids of their own, positions in document order) and the organisation-wide rules."""
    own = [
        replace(spec, id=f"candidate:{index}", position=index, scope="agent")
        for index, spec in enumerate(document.rules)
    ]
    org_rules = Rule.objects.filter(organization_id=agent.organization_id, agent__isnull=True)
    org_specs = [rule_spec(rule, lists=None) for rule in org_rules.order_by("position", "id")]
    specs = [*own, *org_specs]
    policy = compile_policy(specs, default=document.default)
    enforcing = tuple(s for s in specs if s.enabled and s.mode != "shadow")
    return _Candidate(policy=policy, rules=enforcing)


# --- Replaying ----------------------------------------------------------------------------------


def _seed(agent: Agent, candidate: _Candidate, budgets: _Budgets, since: datetime, tz: Any) -> bool:
    """Count the history before ``since`` that the candidate's windows reach, as a rebuild
    of the candidate's counters would: allowed checks and approved requests, in time order,
    at most ``MAX_SEED_ROWS`` of them. Returns whether it stopped there."""
    windows = [(spec, spec.limit.per_seconds) for spec in candidate.rules if spec.limit]
    if not windows:
        return False
    longest = max(per + bucket_seconds(per) for _, per in windows)
    limited = [spec for spec, _ in windows]
    checks, approved = limits.history_querysets(
        [agent.pk], since - timedelta(seconds=longest), [s.action for s in limited], until=since
    )
    fields = ("created_at", "action", "arguments", "environment", "session_id")
    check_rows = checks.order_by("created_at", "id").values_list(*fields, "data")
    approved_rows = approved.order_by("requested_at", "id").values_list(
        "requested_at", "action", "arguments", "environment", "session_id"
    )
    merged = heapq.merge(
        (row for row in check_rows.iterator(chunk_size=2000)),
        ((*row, None) for row in approved_rows.iterator(chunk_size=2000)),
        key=lambda row: row[0],
    )
    for read, (at, action, arguments, environment, session_id, data) in enumerate(merged):
        if read == MAX_SEED_ROWS:
            return True
        call = Call(
            action,
            arguments,
            environment,
            session_id=session_id,
            metadata=(data or {}).get("metadata"),
            at=at,
            timezone=tz,
        )
        found = candidate.policy.budgets(call)
        if found:
            budgets.spend(environment, found, at)
    return False


def _recorded(
    agent: Agent, since: datetime, until: datetime, limit: int
) -> Iterator[tuple[Any, ...]]:
    """The agent's check entries of the period in recorded order, streamed (``limit`` + 1,
    so the caller can tell the period held more). Filtered by organisation and time first:
    the (organization, created_at) index bounds the read to the period."""
    return (
        AuditEntry.objects.filter(
            organization_id=agent.organization_id,
            created_at__gte=since,
            created_at__lt=until,
            agent_id=agent.pk,
            kind=AuditEntry.Kind.CHECK,
        )
        .order_by("created_at", "id")
        .values_list(
            "public_id",
            "created_at",
            "action",
            "arguments",
            "environment",
            "session_id",
            "decision",
            "data",
        )[: limit + 1]
        .iterator(chunk_size=2000)
    )


def policy_backtest(
    *,
    agent: Agent,
    document: PolicyDocument,
    since: datetime,
    until: datetime,
    limit: int = MAX_CALLS,
) -> dict[str, Any]:
    """What ``document`` would have answered to the agent's recorded calls of
    ``[since, until)``, compared with what they were answered. Reads only."""
    organization = agent.organization
    tz = organization_tz(organization)
    plan = runtime.plan_features(organization)
    candidate = _candidate(agent, document)
    budgets = _Budgets()
    history_truncated = _seed(agent, candidate, budgets, since, tz)
    approved_ids = set(
        ApprovalRequest.objects.filter(
            agent_id=agent.pk,
            status=ApprovalRequest.Status.APPROVED,
            requested_at__gte=since,
            requested_at__lt=until,
        )
        .values_list("action_id", flat=True)
        .iterator(chunk_size=5000)
    )
    policy = candidate.policy
    calls = changed = 0
    transitions: Counter[str] = Counter()
    matched: Counter[str] = Counter()
    changed_by: Counter[str] = Counter()
    samples: list[dict[str, Any]] = []
    truncated = False
    for action_id, at, action, arguments, environment, session_id, decision, data in _recorded(
        agent, since, until, limit
    ):
        if calls == limit:
            truncated = True
            break
        calls += 1
        call = Call(
            action,
            arguments,
            environment,
            session_id=session_id,
            metadata=(data or {}).get("metadata"),
            at=at,
            timezone=tz,
        )
        found = policy.budgets(call)
        totals = budgets.totals(environment, found, at) if found else None
        answer = plan_gate(policy.evaluate(call, totals), plan)
        was = answer_of(decision, data)
        would_be = answer.decision
        if found and (
            would_be == "allow"
            or (
                would_be == REQUIRES_APPROVAL
                and was == REQUIRES_APPROVAL
                and action_id in approved_ids
            )
        ):
            budgets.spend(environment, found, at)
        for entry in answer.matched:
            matched[entry.rule.id] += 1
        if would_be == was:
            continue
        changed += 1
        transitions[f"{was}->{would_be}"] += 1
        if answer.rule is not None:
            changed_by[answer.rule.id] += 1
        if len(samples) < MAX_SAMPLES:
            samples.append(
                {
                    "action_id": action_id,
                    "action": action,
                    "arguments": arguments,
                    "at": at.isoformat(),
                    "was": was,
                    "would_be": would_be,
                    "rule": answer.rule.name if answer.rule is not None else None,
                    "reason": answer.reason,
                }
            )
    return {
        "agent_id": agent.public_id,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "limit": limit,
        "truncated": truncated,
        "history_truncated": history_truncated,
        "calls": calls,
        "changed": changed,
        "transitions": dict(sorted(transitions.items())),
        "by_rule": [
            {
                "rule": spec.name,
                "scope": spec.scope,
                "matched": matched[spec.id],
                "changed": changed_by[spec.id],
            }
            for spec in candidate.rules
        ],
        "samples": samples,
    }


def agent_policy_backtest(
    *,
    agent: Agent,
    policy: object,
    since: object,
    until: object = None,
    limit: object = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Validate a backtest request (the candidate as ``PUT .../policy`` validates it: a YAML
    or JSON text, or a JSON object; the same 400 when it does not) and run it."""
    if isinstance(policy, (bytes, str)):
        if not policy.strip():
            raise ValidationFailed("policy is required.", field="policy")
    elif not isinstance(policy, dict):
        raise ValidationFailed(
            "policy must be a policy document: a YAML or JSON string, or a JSON object.",
            field="policy",
        )
    start, end = backtest_period(since=since, until=until, now=now)
    count = backtest_limit(limit)
    try:
        document = policy_document_parse(organization=agent.organization, text=policy, format=None)
    except PolicyDocumentError as exc:
        raise policy_error_answer(exc) from None
    if document.agent != agent.name:
        raise ValidationFailed(
            f"The document is for agent {document.agent!r}, not {agent.name!r}.", field="agent"
        )
    return policy_backtest(agent=agent, document=document, since=start, until=end, limit=count)
