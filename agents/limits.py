"""Running totals: one counter row per budget, locked, read and spent by a check in the
transaction that records it.

A limited rule (``limit: {sum: amount, over: 2000, per: 1d, by: customer_id}``) has one
budget per agent, environment and value of its ``by`` key. Each budget is a ``LimitCounter``
row holding up to 61 buckets of ``per / 60`` seconds, so a check's cost does not depend on
the history behind it, and a window's total is exact to one bucket (it may include calls up
to ``per / 60`` older than the window: the conservative side).

A check with budgets (``CompiledPolicy.budgets``) decides inside a ``Reservation``
(``reservations`` hands them out):

1. the budgets' counters are read (created if missing) and their window totals computed;
2. the policy decides with those totals;
3. an allowed call's audit row is inserted and the call added to every counter, atomically
   (``Reservation.spend_with``); a blocked or held call spends nothing and is recorded as
   any other. Nothing is counted that was not recorded, nothing recorded is missing from
   the count, and N racing checks for the last slots of a budget allow exactly as many as
   fit.

On PostgreSQL outside a caller's transaction (the check endpoints) the read takes no lock:
the spend is one statement that locks the counters still at the versions read (in key
order), and only if all of them are, updates them and inserts the audit row; otherwise it
changes nothing and the check decides again on fresh totals. After three such races (a
budget that every call spends) it waits for the counters' row locks instead, as everywhere
else: a ``transaction.atomic()`` that creates and locks them (``INSERT ... ON CONFLICT DO
UPDATE``, key order, so racing checks queue and cannot deadlock) and holds them until it
commits. So a check with budgets costs two statements where one without costs one
(docs/PERFORMANCE.md).

A held call's budgets are kept on its audit row (``data["budgets"]``) and spent when it is
approved (``budgets_spend_approved``), in the bucket of the time it was requested.
``limit_counters_rebuild`` recomputes counters from the audit log (``warden_policy
rebuild-counters``, and the rule services when a change starts a new series of budgets:
inline for a short history, else through the ``agents.recount_pending`` task, the rule's
limit applying meanwhile).
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connections, transaction
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
_ZERO = Decimal(0)


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


class Buckets:
    """A budget's buckets, ``[start, count, sum]`` oldest first, with the totals of those
    still in the window kept beside them: reading a budget drops the buckets the window has
    left (from the front) and spending adds to the newest, so neither walks the others.
    Stored as ``{"n": count, "s": "sum", "b": [[start, count, "sum"], ...]}``."""

    __slots__ = ("count", "rows", "total")

    def __init__(self, rows: list[list[Any]] | None = None, count: int = 0, total: Decimal = _ZERO):
        self.rows = rows if rows is not None else []
        self.count = count
        self.total = total

    @classmethod
    def load(cls, stored: Any, window_start: int) -> Buckets:
        data = json.loads(stored) if isinstance(stored, str) else (stored or {})
        if not data:
            return cls()
        rows, count, total = data["b"], int(data["n"]), Decimal(data["s"])
        expired = 0
        while expired < len(rows) and rows[expired][0] < window_start:
            count -= rows[expired][1]
            total -= Decimal(rows[expired][2])
            expired += 1
        return cls(rows[expired:] if expired else rows, count, total)

    def add(self, start: int, amount: Decimal) -> None:
        rows = self.rows
        if not rows or rows[-1][0] < start:
            rows.append([start, 1, str(amount)])
        else:
            index = bisect.bisect_left(rows, start, key=lambda row: row[0])
            if index < len(rows) and rows[index][0] == start:
                row = rows[index]
                row[1] += 1
                row[2] = str(Decimal(row[2]) + amount)
            else:  # an approved call requested before the newest bucket began
                rows.insert(index, [start, 1, str(amount)])
        self.count += 1
        self.total += amount

    def value(self, kind: str) -> Decimal | int:
        return self.count if kind == "count" else self.total

    def data(self) -> dict[str, Any]:
        return {"n": self.count, "s": str(self.total), "b": self.rows}

    def dumps(self) -> str:
        return json.dumps(self.data(), separators=(",", ":"))


@dataclass(slots=True)
class _Held:
    budget: Budget
    key: str
    buckets: Buckets
    version: int = 0


class _Conflict(Exception):
    """A budget changed between reading it and spending it: decide again."""


class Reservation:
    """The budgets of one check, read, until the check spends them (allowed) or lets them go.

    Optimistic on PostgreSQL outside a caller's transaction (the check endpoints): the
    counters are read without a lock, and an allowed call is spent with one statement that
    checks every counter is still at the version it read (locking them, in key order),
    updates them and inserts the audit row, or does nothing; on a conflict the check decides
    again on fresh totals (``reservations``). Pessimistic everywhere else, and after a few
    conflicts (a budget that every call spends): a ``transaction.atomic()`` holding the
    counters' row locks from the read to the commit.
    """

    def __init__(
        self,
        wanted: list[tuple[str, Budget]],
        lock_params: list[Any],
        now: datetime,
        *,
        optimistic: bool,
    ) -> None:
        self.wanted = wanted
        self.lock_params = lock_params
        self.now = now
        self.optimistic = optimistic
        self.held: list[_Held] = []
        self.totals: dict[str, Decimal | int] | None = None
        self.conflicted = False
        self._atomic: Any = None

    def __enter__(self) -> Reservation:
        if not self.wanted:
            return self
        connection = connections["default"]
        if self.optimistic:
            found = _counters_read(connection, self.wanted, self.lock_params)
        else:
            self._atomic = transaction.atomic()
            self._atomic.__enter__()
            with connection.cursor() as cursor:
                cursor.execute(_lock_sql(len(self.wanted)), self.lock_params)
                found = {key: (buckets, version) for key, buckets, version in cursor.fetchall()}
        self.held = [
            _Held(
                budget,
                key,
                Buckets.load(found[key][0], _window_start(self.now, budget.per_seconds)),
                found[key][1],
            )
            for key, budget in self.wanted
        ]
        self.totals = {
            item.budget.rule_id: item.buckets.value(item.budget.kind) for item in self.held
        }
        return self

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> bool:
        if self._atomic is not None:
            self._atomic.__exit__(kind, error, traceback)
        if isinstance(error, _Conflict):
            self.conflicted = True
            return True  # decide again (``reservations``)
        return False

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
        """Insert the allowed call's audit row and add the call to every budget, atomically.
        Raises ``_Conflict`` (optimistic only) if a budget changed since it was read: then
        nothing was written."""
        for item in self.held:
            item.buckets.add(_bucket_start(self.now, item.budget.per_seconds), item.budget.amount)
        if not self.optimistic:
            _counters_write([(item.key, item.buckets) for item in self.held], self.now)
            audit_entry_insert(entry)
            return
        expected: list[Any] = []
        for item in self.held:
            expected += [item.key, item.version, item.buckets.dumps()]
        insert_sql, insert_params = rows_insert_sql([entry])
        with server_cursor(connections["default"]) as cursor:
            cursor.execute(
                _spend_sql(len(self.held), insert_sql), [*expected, self.now, *insert_params]
            )
            keys = cursor.fetchall()
        if not keys:
            raise _Conflict
        rows_inserted([entry], keys, using="default")


def _counters_read(
    connection: Any, wanted: list[tuple[str, Budget]], create_params: list[Any]
) -> dict[str, tuple[Any, int]]:
    """Counters' buckets and versions, read without a lock (creating the missing ones)."""
    keys = [key for key, _ in wanted]
    read_sql = _read_sql(len(keys))
    with server_cursor(connection) as cursor:
        cursor.execute(read_sql, keys)
        found = {key: (buckets, version) for key, buckets, version in cursor.fetchall()}
        if len(found) < len(keys):
            cursor.execute(_create_sql(len(keys)), create_params)
            cursor.execute(read_sql, keys)
            found = {key: (buckets, version) for key, buckets, version in cursor.fetchall()}
    return found


def reservations(
    *,
    organization_id: int,
    agent_id: int,
    environment: str,
    budgets: Iterable[Budget],
    rule_pks: dict[str, int],
    now: datetime,
) -> Iterator[Reservation]:
    """The reservations a check decides in, one after the other, until one was not
    overtaken by racing checks (``with reservation: decide, record``). Without budgets,
    one that holds nothing."""
    wanted = sorted(
        (
            (budget_key(agent_id=agent_id, environment=environment, budget=budget), budget)
            for budget in budgets
            if budget.rule_id in rule_pks
        ),
        key=lambda pair: pair[0],
    )
    if not wanted:
        yield Reservation([], [], now, optimistic=False)
        return
    connection = connections["default"]
    stamp = connection.ops.adapt_datetimefield_value(now)
    params: list[Any] = []
    for key, budget in wanted:
        params += [
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
    optimistic = connection.vendor == "postgresql" and not connection.in_atomic_block
    for attempt in range(OPTIMISTIC_ATTEMPTS + 1):
        reservation = Reservation(
            wanted, params, now, optimistic=optimistic and attempt < OPTIMISTIC_ATTEMPTS
        )
        yield reservation
        if not reservation.conflicted:
            return
    raise AssertionError("a pessimistic reservation cannot conflict")  # pragma: no cover


# Optimistic attempts before a check waits for the budgets' locks instead: a budget that
# every call spends makes most attempts collide.
OPTIMISTIC_ATTEMPTS = 3

_READ_SQL = f"SELECT key, buckets, version FROM {_COUNTER_TABLE} WHERE key = ANY(%s)"  # noqa: S608
_COLUMNS = (
    "key, organization_id, agent_id, rule_id, environment, by_value, bucket_seconds, "
    "buckets, updated_at"
)
_ROW = "(%s, %s, %s, %s, %s, %s, %s, %s, %s)"


def _values(count: int, row: str) -> str:
    return ", ".join([row] * count)


@functools.cache
def _read_sql(count: int) -> str:
    return (
        f"SELECT key, buckets, version FROM {_COUNTER_TABLE} "  # noqa: S608
        f"WHERE key IN ({_values(count, '%s')})"
    )


@functools.cache
def _create_sql(count: int) -> str:
    return (
        f"INSERT INTO {_COUNTER_TABLE} ({_COLUMNS}) VALUES {_values(count, _ROW)} "  # noqa: S608
        "ON CONFLICT (key) DO NOTHING"
    )


@functools.cache
def _lock_sql(count: int) -> str:
    """One statement that creates what is missing and locks every counter (ON CONFLICT DO
    UPDATE takes the row lock), in key order: racing checks queue and cannot deadlock."""
    return (
        f"INSERT INTO {_COUNTER_TABLE} ({_COLUMNS}) VALUES {_values(count, _ROW)} "  # noqa: S608
        "ON CONFLICT (key) DO UPDATE SET updated_at = EXCLUDED.updated_at "
        "RETURNING key, buckets, version"
    )


@functools.lru_cache(maxsize=64)
def _spend_sql(count: int, insert_sql: str) -> str:
    """Spend ``count`` budgets and insert the audit row, all or nothing, in one statement:
    the counters still at the versions read are locked (in key order; a racing writer's
    newer version no longer matches once it commits), and only if all of them are, they are
    updated and the row inserted. Returns the row's id, or nothing on a conflict."""
    expected = _values(count, "(%s, %s::bigint, %s::jsonb)")
    return (
        f"WITH expected(key, version, buckets) AS (VALUES {expected}), "  # noqa: S608
        f"locked AS (SELECT c.key FROM {_COUNTER_TABLE} c JOIN expected e "
        "ON c.key = e.key AND c.version = e.version ORDER BY c.key FOR UPDATE OF c), "
        f"ok AS (SELECT count(*) = {count} AS ok FROM locked), "
        f"spent AS (UPDATE {_COUNTER_TABLE} c SET buckets = e.buckets, "
        "version = c.version + 1, updated_at = %s FROM expected e, ok "
        "WHERE ok.ok AND c.key = e.key) "
        + insert_sql.replace(" VALUES (", " SELECT ", 1).replace(
            ") RETURNING ", " FROM ok WHERE ok.ok RETURNING ", 1
        )
    )


def _counters_write(rows: list[tuple[str, Buckets]], now: datetime) -> None:
    """Store counters' buckets (inside the caller's transaction, the rows locked)."""
    connection = connections["default"]
    stamp = connection.ops.adapt_datetimefield_value(now)
    with connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {_COUNTER_TABLE} SET buckets = %s, version = version + 1, "  # noqa: S608
            "updated_at = %s WHERE key = %s",
            [(buckets.dumps(), stamp, key) for key, buckets in rows],
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
        window = Buckets.load(buckets, _window_start(now, budget.per_seconds))
        totals[budget.rule_id] = window.value(budget.kind)
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
        buckets = Buckets.load(counter.buckets, _window_start(now, per))
        start = _bucket_start(requested_at, per)
        if start >= _window_start(now, per):
            buckets.add(start, Decimal(item["amount"]))
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
    counters: dict[str, tuple[Budget, str, Buckets]] = {}
    keys: dict[tuple[Any, ...], str] = {}
    with transaction.atomic():
        # Lock the counters first: checks that spend them wait for the rebuild, so no call
        # commits between the scan below and the write.
        versions = dict(
            LimitCounter.objects.select_for_update()
            .filter(agent=agent, rule_id__in=rule_pks.values())
            .values_list("key", "version")
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
                _, _, buckets = counters.setdefault(key, (budget, environment, Buckets()))
                buckets.add(_bucket_start(at, budget.per_seconds), budget.amount)
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
                    buckets=Buckets.load(
                        buckets.data(), _window_start(now, budget.per_seconds)
                    ).data(),
                    # A check that read the old row must not spend the new one.
                    version=versions.get(key, 0) + 1,
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
