"""Running totals: one counter row per budget, locked, read and spent by a check in the
transaction that records it.

A limited rule (``limit: {sum: amount, over: 2000, per: 1d, by: customer_id}``) has one
budget per agent, environment and value of its ``by`` key. Each budget is a ``LimitCounter``
row holding up to 61 buckets of ``per / 60`` seconds, so a check's cost does not depend on
the history behind it, and a window's total is exact to one bucket (it may include calls up
to ``per / 60`` older than the window: the conservative side).

A check with budgets (``CompiledPolicy.budgets``) runs ``budgets_reserved``:

1. one statement creates the missing counters and locks all of them, in key order
   (``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``), so racing checks queue on the
   counter and never deadlock; the window totals are read from the returned buckets;
2. the policy decides with those totals;
3. an allowed call's audit row is inserted and the call added to every counter
   (``Reservation.spend_with``) and the transaction commits; a blocked or held call lets
   the budgets go (``release``) and is recorded as any other. Nothing is counted that was
   not recorded, nothing recorded is missing from the count, and N racing checks for the
   last slots of a budget allow exactly as many as fit.

On PostgreSQL outside a caller's transaction (the check endpoints), that transaction is two
round trips, each one simple query of several statements (``BEGIN; lock`` and ``update;
insert; COMMIT``): the budgets are locked for two round trips instead of five, which is
what one budget that every call spends can sustain (docs/PERFORMANCE.md).

A held call's budgets are kept on its audit row (``data["budgets"]``) and spent when it is
approved (``budgets_spend_approved``), in the bucket of the time it was requested.
``limit_counters_rebuild`` recomputes counters from the audit log (``warden_policy
rebuild-counters``, and the rule services when a change starts a new series of budgets:
inline for a short history, else through the ``agents.recount_pending`` task, the rule's
limit applying meanwhile).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import DatabaseError, connections, transaction
from django.db.models import Q
from django.utils import timezone

from agents.models import Agent, LimitCounter, Rule
from agents.policy import (
    METADATA_PREFIX,
    Budget,
    Call,
    RuleSpec,
    bucket_seconds,
    compile_policy,
    expr_conditions,
)
from agents.selectors import organization_tz, rule_spec
from approvals.models import ApprovalRequest
from audit.models import AuditEntry
from audit.services import audit_entry_insert
from wardenproject.db import rows_insert_sql, rows_inserted, server_cursor

_COUNTER_TABLE = LimitCounter._meta.db_table


def budget_key(*, agent_id: int, environment: str, budget: Budget) -> str:
    """The counter's identity (the rule services recount a new series from the audit log)."""
    return hashlib.sha256(
        json.dumps([agent_id, environment, *budget.series()]).encode()
    ).hexdigest()


def _window_start(now: datetime, per_seconds: int) -> int:
    """The first bucket start still counted in a window that ends ``now``."""
    size = bucket_seconds(per_seconds)
    return int((now.timestamp() - per_seconds) // size) * size


def _bucket_start(at: datetime, per_seconds: int) -> int:
    size = bucket_seconds(per_seconds)
    return int(at.timestamp() // size) * size


def _load(buckets: Any) -> dict[str, list[Any]]:
    if isinstance(buckets, str):  # SQLite hands JSON back as text
        buckets = json.loads(buckets)
    return dict(buckets or {})


def _window(buckets: dict[str, list[Any]], start: int) -> dict[str, list[Any]]:
    return {key: value for key, value in buckets.items() if int(key) >= start}


def _total(buckets: dict[str, list[Any]], kind: str) -> Decimal | int:
    if kind == "count":
        return sum(int(count) for count, _ in buckets.values())
    return sum((Decimal(total) for _, total in buckets.values()), Decimal(0))


def _add(buckets: dict[str, list[Any]], start: int, amount: Decimal) -> None:
    count, total = buckets.get(str(start), (0, "0"))
    buckets[str(start)] = [int(count) + 1, str(Decimal(total) + amount)]


@dataclass(slots=True)
class _Held:
    budget: Budget
    key: str
    buckets: dict[str, list[Any]]


class Reservation:
    """The locked budgets of one check, until it spends them (allowed) or lets them go.

    PostgreSQL, outside any transaction (the check endpoints): the transaction is run by
    hand on a server-binding cursor (``wardenproject.db.server_cursor``: values sent apart
    from the statements, which become prepared statements), as ``BEGIN``, the lock, one
    statement that updates the counters and inserts the audit row, and ``COMMIT``. Elsewhere
    (SQLite, or inside a caller's transaction): a ``transaction.atomic()``.
    """

    def __init__(self, held: list[_Held], now: datetime, cursor: Any = None) -> None:
        self.held = held
        self.now = now
        self.cursor = cursor  # the raw transaction's, while it is open
        self.totals: dict[str, Decimal | int] = {
            item.budget.rule_id: _total(item.buckets, item.budget.kind) for item in held
        }

    def record(self) -> list[dict[str, str]]:
        """What the audit row keeps, to spend a held call's budgets when it is approved."""
        return [
            {
                "key": item.key,
                "per": str(item.budget.per_seconds),
                "amount": str(item.budget.amount),
            }
            for item in self.held
        ]

    def spend_with(self, entry: AuditEntry) -> None:
        """Insert the allowed call's audit row and add the call to every budget, atomically
        (on PostgreSQL this commits)."""
        for item in self.held:
            _add(item.buckets, _bucket_start(self.now, item.budget.per_seconds), item.budget.amount)
        rows = [(item.key, item.buckets) for item in self.held]
        cursor, self.cursor = self.cursor, None
        if cursor is None:
            _counters_write(rows, self.now)
            audit_entry_insert(entry)
            return
        update_sql, update_params = _counters_write_sql(rows, self.now)
        insert_sql, insert_params = rows_insert_sql([entry])
        _raw_execute(
            cursor, f"WITH spent AS ({update_sql}) {insert_sql}", [*update_params, *insert_params]
        )
        keys = cursor.fetchall()
        _raw_execute(cursor, "COMMIT", [])
        rows_inserted([entry], keys, using="default")

    def release(self) -> None:
        """Let the budgets go without spending them (the call is blocked or held); the
        caller records it as any other call."""
        cursor, self.cursor = self.cursor, None
        if cursor is not None:
            _raw_execute(cursor, "ROLLBACK", [])


def _raw_execute(cursor: Any, sql: str, params: list[Any]) -> None:
    """Run a statement of a transaction run by hand; if it fails, end the transaction
    (Django believes the connection is in autocommit, so nothing else would) and re-raise."""
    try:
        cursor.execute(sql, params)
    except BaseException:
        try:
            with connections["default"].cursor() as rollback:
                rollback.execute("ROLLBACK")
        except DatabaseError:
            pass  # the connection is gone: so is the transaction
        raise


def _values(count: int, row: str) -> str:
    return ", ".join([row] * count)


@functools.cache
def _write_sql(count: int) -> str:
    return (
        f"UPDATE {_COUNTER_TABLE} AS c SET buckets = v.buckets, updated_at = %s "  # noqa: S608
        f"FROM (VALUES {_values(count, '(%s, %s::jsonb)')}) AS v(key, buckets) "
        "WHERE c.key = v.key"
    )


def _counters_write_sql(
    rows: list[tuple[str, dict[str, list[Any]]]], now: datetime
) -> tuple[str, list[Any]]:
    """One UPDATE of every counter's buckets (PostgreSQL)."""
    params: list[Any] = [now]
    for key, buckets in rows:
        params += [key, json.dumps(buckets)]
    return _write_sql(len(rows)), params


def _counters_write(rows: list[tuple[str, dict[str, list[Any]]]], now: datetime) -> None:
    """Store counters' buckets: on PostgreSQL in one statement, whatever their number."""
    connection = connections["default"]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(*_counters_write_sql(rows, now))
        else:
            stamp = connection.ops.adapt_datetimefield_value(now)
            cursor.executemany(
                f"UPDATE {_COUNTER_TABLE} SET buckets = %s, updated_at = %s WHERE key = %s",  # noqa: S608
                [(json.dumps(buckets), stamp, key) for key, buckets in rows],
            )


@contextmanager
def budgets_reserved(
    *,
    organization_id: int,
    agent_id: int,
    environment: str,
    budgets: Iterable[Budget],
    rule_pks: dict[str, int],
    now: datetime,
) -> Iterator[Reservation]:
    """Create missing counters and lock them all, in key order, and read their windows; the
    body decides and then spends (``spend_with``) or lets them go (``release``)."""
    wanted = sorted(
        (
            (budget_key(agent_id=agent_id, environment=environment, budget=budget), budget)
            for budget in budgets
            if budget.rule_id in rule_pks
        ),
        key=lambda pair: pair[0],
    )
    if not wanted:
        yield Reservation([], now)
        return
    connection = connections["default"]
    stamp = connection.ops.adapt_datetimefield_value(now)
    lock_sql = _lock_sql(len(wanted))
    lock_params: list[Any] = []
    for key, budget in wanted:
        lock_params += [
            key,
            organization_id,
            agent_id,
            rule_pks[budget.rule_id],
            environment,
            budget.by_value[:200],
            bucket_seconds(budget.per_seconds),
            "{}",
            stamp,
        ]
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        with server_cursor(connection) as cursor:
            _raw_execute(cursor, "BEGIN", [])
            _raw_execute(cursor, lock_sql, lock_params)
            reservation = _reservation(wanted, dict(cursor.fetchall()), now, cursor)
            try:
                yield reservation
            finally:
                reservation.release()  # if it was neither spent nor let go (an error)
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(lock_sql, lock_params)
            found = dict(cursor.fetchall())
        yield _reservation(wanted, found, now)


def _reservation(
    wanted: list[tuple[str, Budget]], found: dict[str, Any], now: datetime, cursor: Any = None
) -> Reservation:
    held = [
        _Held(budget, key, _window(_load(found[key]), _window_start(now, budget.per_seconds)))
        for key, budget in wanted
    ]
    return Reservation(held, now, cursor)


@functools.cache
def _lock_sql(count: int) -> str:
    """One statement that creates what is missing and locks every counter (ON CONFLICT DO
    UPDATE takes the row lock), in key order: racing checks queue and cannot deadlock."""
    columns = (
        "key, organization_id, agent_id, rule_id, environment, by_value, bucket_seconds, "
        "buckets, updated_at"
    )
    return (
        f"INSERT INTO {_COUNTER_TABLE} ({columns}) "  # noqa: S608
        f"VALUES {_values(count, '(%s, %s, %s, %s, %s, %s, %s, %s, %s)')} "
        "ON CONFLICT (key) DO UPDATE SET updated_at = EXCLUDED.updated_at "
        "RETURNING key, buckets"
    )


def budgets_read(
    *, agent_id: int, environment: str, budgets: Iterable[Budget], now: datetime
) -> dict[str, Decimal | int]:
    """Window totals without locking or spending (simulation, shadow evaluation)."""
    keyed = {
        budget_key(agent_id=agent_id, environment=environment, budget=budget): budget
        for budget in budgets
    }
    totals: dict[str, Decimal | int] = {
        b.rule_id: (Decimal(0) if b.kind == "sum" else 0) for b in keyed.values()
    }
    for key, buckets in LimitCounter.objects.filter(key__in=keyed).values_list("key", "buckets"):
        budget = keyed[key]
        window = _window(_load(buckets), _window_start(now, budget.per_seconds))
        totals[budget.rule_id] = _total(window, budget.kind)
    return totals


def budgets_spend_approved(*, budgets: list[dict[str, str]], requested_at: datetime) -> None:
    """Count an approved call in the budgets it was held against (in the caller's
    transaction), in the bucket of the time it was requested."""
    if not budgets:
        return
    keys = sorted(item["key"] for item in budgets)
    by_key = {item["key"]: item for item in budgets}
    now = timezone.now()
    counters = LimitCounter.objects.select_for_update().filter(key__in=keys).order_by("key")
    rows = []
    for counter in counters:
        item = by_key[counter.key]
        per = int(item["per"])
        buckets = _window(_load(counter.buckets), _window_start(now, per))
        start = _bucket_start(requested_at, per)
        if start >= _window_start(now, per):
            _add(buckets, start, Decimal(item["amount"]))
        rows.append((counter.key, buckets))
    if rows:
        _counters_write(rows, now)


# --- Rebuilding from the audit log ---------------------------------------------------------


def _rules_with_limits(organization_id: int, agent: Agent, rule_ids: set[str] | None) -> list[Rule]:
    rules = Rule.objects.filter(organization_id=organization_id).filter(
        Q(agent=agent) | Q(agent__isnull=True)
    )
    if rule_ids is not None:
        rules = rules.filter(public_id__in=rule_ids)
    return [rule for rule in rules if (rule.document or {}).get("limit")]


def limit_counters_rebuild(
    *, agent: Agent, rule_ids: set[str] | None = None, now: datetime | None = None
) -> int:
    """Recompute the agent's counters (of ``rule_ids``, or of every limited rule) from its
    allowed checks and approved requests in each window, as the rules count them now: one
    pass over the history that any of the rules' patterns match. Checks that spend those
    budgets wait while it runs. Returns the number of counters written."""
    now = now or timezone.now()
    organization = agent.organization
    rules = _rules_with_limits(organization.pk, agent, rule_ids)
    specs = [rule_spec(rule, lists=agent.policy_lists) for rule in rules]
    specs = [spec for spec in specs if spec.limit is not None]
    if not specs:
        return 0
    rule_pks = {rule.public_id: rule.pk for rule in rules}
    policy = compile_policy(specs)
    longest = max(
        spec.limit.per_seconds + bucket_seconds(spec.limit.per_seconds)
        for spec in specs
        if spec.limit is not None
    )
    tz = organization_tz(organization)
    counters: dict[str, tuple[Budget, str, dict[str, list[Any]]]] = {}
    keys: dict[tuple[Any, ...], str] = {}
    with transaction.atomic():
        # Lock the counters first: checks that spend them wait for the rebuild, so no call
        # commits between the scan below and the write.
        list(
            LimitCounter.objects.select_for_update().filter(
                agent=agent, rule_id__in=rule_pks.values()
            )
        )
        uses_metadata = any(
            cond.field.startswith(METADATA_PREFIX)
            for spec in specs
            for cond in (
                *expr_conditions(spec.when),
                *(c for e in spec.unless for c in expr_conditions(e)),
            )
        ) or any(spec.limit.by and spec.limit.by.startswith(METADATA_PREFIX) for spec in specs)
        history = _history(
            agent,
            now - timedelta(seconds=longest),
            [s.action for s in specs],
            metadata=uses_metadata,
        )
        for action, arguments, environment, session_id, metadata, at in history:
            call = Call(
                action,
                arguments,
                environment,
                session_id=session_id,
                metadata=metadata,
                at=at,
                timezone=tz,
            )
            for budget in policy.budgets(call):
                identity = (environment, *budget.series())
                key = keys.get(identity)
                if key is None:
                    key = keys[identity] = budget_key(
                        agent_id=agent.pk, environment=environment, budget=budget
                    )
                _, _, buckets = counters.setdefault(key, (budget, environment, {}))
                _add(buckets, _bucket_start(at, budget.per_seconds), budget.amount)
        LimitCounter.objects.filter(agent=agent, rule_id__in=rule_pks.values()).delete()
        LimitCounter.objects.bulk_create(
            [
                LimitCounter(
                    key=key,
                    organization_id=organization.pk,
                    agent=agent,
                    rule_id=rule_pks[budget.rule_id],
                    environment=environment,
                    by_value=budget.by_value[:200],
                    bucket_seconds=bucket_seconds(budget.per_seconds),
                    buckets=_window(buckets, _window_start(now, budget.per_seconds)),
                    updated_at=now,
                )
                for key, (budget, environment, buckets) in counters.items()
            ],
            batch_size=1000,
        )
    return len(counters)


def _history_querysets(
    agent_ids: list[int], since: datetime, patterns: list[str]
) -> tuple[Any, Any]:
    """The allowed checks and approved requests of the agents since ``since`` whose action
    any of the patterns could match (the database narrows by exact name or prefix; the
    policy matches precisely)."""
    narrowing = Q()
    for pattern in {p.lower() for p in patterns}:
        prefix = pattern.split("*", 1)[0]
        if "*" not in pattern:
            narrowing |= Q(action__iexact=pattern)
        elif prefix:
            narrowing |= Q(action__istartswith=prefix)
        else:
            narrowing = Q()  # "*" or "*.x": every action
            break
    checks = AuditEntry.objects.filter(
        agent_id__in=agent_ids,
        kind=AuditEntry.Kind.CHECK,
        decision="allow",
        created_at__gte=since,
    ).filter(narrowing)
    approved = ApprovalRequest.objects.filter(
        agent_id__in=agent_ids, status=ApprovalRequest.Status.APPROVED, requested_at__gte=since
    ).filter(narrowing)
    return checks, approved


def history_is_short(*, agents: list[Agent], spec: RuleSpec, rows: int, now: datetime) -> bool:
    """Whether a rule's window holds at most ``rows`` calls it could count (a recount of
    them runs inline, in the change's own transaction)."""
    assert spec.limit is not None
    since = now - timedelta(seconds=spec.limit.per_seconds + bucket_seconds(spec.limit.per_seconds))
    checks, approved = _history_querysets([a.pk for a in agents], since, [spec.action])
    found = checks[: rows + 1].count()
    return found <= rows and found + approved[: rows + 1].count() <= rows


def _history(
    agent: Agent, since: datetime, patterns: list[str], *, metadata: bool
) -> Iterator[tuple[str, Any, str, str, Any, datetime]]:
    """(action, arguments, environment, session, metadata, time) of the calls to recount."""
    checks, approved = _history_querysets([agent.pk], since, patterns)
    if metadata:
        for action, arguments, environment, session_id, data, at in checks.values_list(
            "action", "arguments", "environment", "session_id", "data", "created_at"
        ).iterator(chunk_size=5000):
            yield action, arguments, environment, session_id, (data or {}).get("metadata"), at
    else:
        for action, arguments, environment, session_id, at in checks.values_list(
            "action", "arguments", "environment", "session_id", "created_at"
        ).iterator(chunk_size=5000):
            yield action, arguments, environment, session_id, None, at
    for action, arguments, environment, session_id, at in approved.values_list(
        "action", "arguments", "environment", "session_id", "requested_at"
    ).iterator(chunk_size=5000):
        yield action, arguments, environment, session_id, None, at
