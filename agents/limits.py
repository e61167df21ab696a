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
changes nothing, and the check decides again waiting for the counters' row locks, as
everywhere else: a ``transaction.atomic()`` that creates and locks them (``INSERT ... ON
CONFLICT DO UPDATE``, key order, so racing checks queue and cannot deadlock) and holds
them until it commits. A budget that was overtaken is "contended" in this process for
``CONTENDED_SECONDS``: its checks take the locks at once rather than race and lose again.
So a check with budgets costs two statements where one without costs one, and one that
spends a contended budget four (docs/PERFORMANCE.md). On PostgreSQL they are prepared
statements (``prepared_cursor``): planning them on every call was most of their cost.

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
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connections, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from agents.models import Agent, LimitBucket, LimitCounter, Rule
from agents.policy import (
    ENFORCE,
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
from wardenproject.db import prepared_cursor, rows_insert_sql, rows_inserted

_COUNTER_TABLE = LimitCounter._meta.db_table
_BUCKET_TABLE = LimitBucket._meta.db_table
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


@dataclass(slots=True)
class _Held:
    budget: Budget
    key: str
    counter_id: int
    version: int
    expired: bool  # holds buckets the window has left (deleted when the budget is spent)


@dataclass(slots=True)
class _Read:
    counter_id: int
    version: int
    expired: bool
    count: int
    total: Decimal


class _Conflict(Exception):
    """A budget changed between reading it and spending it: decide again."""


class Reservation:
    """The budgets of one check, read, until the check spends them (allowed) or not.

    Optimistic on PostgreSQL outside a caller's transaction (the check endpoints): the
    window totals are read without a lock, and an allowed call is spent with one statement
    that locks the counters still at the versions read (in key order), and only if all of
    them are, adds to their current buckets, bumps their versions and inserts the audit row;
    otherwise it changes nothing and the check decides again (``reservations``).
    Pessimistic everywhere else, after a conflict and for contended budgets: a
    ``transaction.atomic()`` holding the counters' row locks from the read to the commit.
    """

    def __init__(
        self,
        wanted: list[tuple[str, Budget]],
        create_params: list[Any],
        now: datetime,
        *,
        optimistic: bool,
    ) -> None:
        self.wanted = wanted
        self.create_params = create_params
        self.now = now
        self.optimistic = optimistic
        self.held: list[_Held] = []
        self.totals: dict[str, Decimal | int] | None = None
        self.conflicted = False
        self._atomic: Any = None

    def __enter__(self) -> Reservation:
        if not self.wanted:
            return self
        if not self.optimistic:
            self._atomic = transaction.atomic()
            self._atomic.__enter__()
        found = _counters_read(self.wanted, self.create_params, self.now, lock=not self.optimistic)
        self.held = [
            _Held(budget, key, found[key].counter_id, found[key].version, found[key].expired)
            for key, budget in self.wanted
        ]
        self.totals = {
            budget.rule_id: found[key].count if budget.kind == "count" else found[key].total
            for key, budget in self.wanted
        }
        return self

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> bool:
        if self._atomic is not None:
            self._atomic.__exit__(kind, error, traceback)
        if isinstance(error, _Conflict):
            self.conflicted = True
            return True  # decide again (``reservations``)
        return False

    def require_locks(self) -> None:
        """Decide again holding the counters' locks (``reservations``) unless they are held
        already: for a write that locks another row before spending (a grant's use), so
        that every transaction takes the counters' locks first and none can deadlock."""
        if self.held and self.optimistic:
            raise _Conflict

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
        spends = [
            (item, _bucket_start(self.now, item.budget.per_seconds), item.budget.amount)
            for item in self.held
        ]
        if connections["default"].vendor != "postgresql":
            _buckets_add(spends, self.now)
            audit_entry_insert(entry)
            return
        insert_sql, insert_params = rows_insert_sql([entry])
        params: list[Any] = []
        for item in self.held:
            params += [item.key, item.version]
        params.append(self.now)
        for item, start, amount in spends:
            params += [item.counter_id, start, amount]
        trims = [
            (item.counter_id, _window_start(self.now, item.budget.per_seconds))
            for item in self.held
            if item.expired
        ]
        for counter_id, since in trims:
            params += [counter_id, since]
        with prepared_cursor(connections["default"]) as cursor:
            cursor.execute(
                _spend_sql(len(self.held), len(trims), insert_sql), [*params, *insert_params]
            )
            keys = cursor.fetchall()
        if not keys:
            if not self.optimistic:  # pragma: no cover - the counters are locked
                raise AssertionError("a locked budget changed")
            _contended_mark([item.key for item in self.held])
            raise _Conflict
        rows_inserted([entry], keys, using="default")


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
            stamp,
        ]
    if (
        connection.vendor == "postgresql"
        and not connection.in_atomic_block
        and not _contended([key for key, _ in wanted])
    ):
        reservation = Reservation(wanted, params, now, optimistic=True)
        yield reservation
        if not reservation.conflicted:
            return
    yield Reservation(wanted, params, now, optimistic=False)


# How long (seconds) a budget that was overtaken between reading and spending it is spent
# under its lock in this process: a budget that every call spends makes optimistic checks
# collide and decide twice, while queueing for its lock decides once.
CONTENDED_SECONDS = 2.0
_contended_until: dict[str, float] = {}


def _contended(keys: list[str]) -> bool:
    if not _contended_until:
        return False
    now = time.monotonic()
    return any(_contended_until.get(key, 0.0) > now for key in keys)


def _contended_mark(keys: list[str]) -> None:
    now = time.monotonic()
    if len(_contended_until) > 10_000:  # forget the budgets no longer contended
        for key in [k for k, until in _contended_until.items() if until <= now]:
            del _contended_until[key]
    for key in keys:
        _contended_until[key] = now + CONTENDED_SECONDS


_COLUMNS = (
    "key, organization_id, agent_id, rule_id, environment, by_value, bucket_seconds, updated_at"
)
_ROW = "(%s, %s, %s, %s, %s, %s, %s, %s)"


def _values(count: int, row: str) -> str:
    return ", ".join([row] * count)


def _counters_read(
    wanted: list[tuple[str, Budget]], create_params: list[Any], now: datetime, *, lock: bool
) -> dict[str, _Read]:
    """The budgets' counters (the missing ones created) and window totals. With ``lock``
    (inside the caller's transaction), the counters are created and locked first by one
    statement in key order, so racing checks queue and cannot deadlock; the totals are read
    after the lock is held (a statement that waited for it would sum an older snapshot)."""
    connection = connections["default"]
    if connection.vendor != "postgresql":
        return _counters_read_orm(wanted, create_params, now)
    params: list[Any] = []
    for key, budget in wanted:
        params += [key, _window_start(now, budget.per_seconds)]
    sql = _read_sql(len(wanted))
    with prepared_cursor(connection) as cursor:
        if lock:
            cursor.execute(_lock_sql(len(wanted)), create_params)
        cursor.execute(sql, params)
        found = {row[0]: _Read(*row[1:]) for row in cursor.fetchall()}
        if len(found) < len(wanted):
            cursor.execute(_create_sql(len(wanted)), create_params)
            cursor.execute(sql, params)
            found = {row[0]: _Read(*row[1:]) for row in cursor.fetchall()}
    return found


def _counters_read_orm(
    wanted: list[tuple[str, Budget]], create_params: list[Any], now: datetime
) -> dict[str, _Read]:
    """``_counters_read`` with a lock, where the window sums are Python's (SQLite: the
    first statement, a write, takes the database's write lock)."""
    with connections["default"].cursor() as cursor:
        cursor.execute(_lock_sql(len(wanted)), create_params)
        ids = dict(cursor.fetchall())
    versions = dict(LimitCounter.objects.filter(pk__in=ids.values()).values_list("key", "version"))
    found = {}
    for key, budget in wanted:
        since = _window_start(now, budget.per_seconds)
        count, total, expired = 0, _ZERO, False
        for start, n, amount in LimitBucket.objects.filter(counter_id=ids[key]).values_list(
            "start", "count", "total"
        ):
            if start < since:
                expired = True
            else:
                count, total = count + n, total + amount
        found[key] = _Read(ids[key], versions[key], expired, count, total)
    return found


def _buckets_add(spends: list[tuple[_Held, int, Decimal]], now: datetime) -> None:
    """``_spend_sql``'s updates where it cannot run (SQLite), the counters locked by the
    caller's transaction."""
    for item, start, amount in spends:
        bucket, created = LimitBucket.objects.get_or_create(
            counter_id=item.counter_id, start=start, defaults={"count": 1, "total": amount}
        )
        if not created:
            LimitBucket.objects.filter(pk=bucket.pk).update(
                count=F("count") + 1, total=F("total") + amount
            )
        if item.expired:
            since = _window_start(now, item.budget.per_seconds)
            LimitBucket.objects.filter(counter_id=item.counter_id, start__lt=since).delete()
        LimitCounter.objects.filter(pk=item.counter_id).update(
            version=F("version") + 1, updated_at=now
        )


@functools.cache
def _read_sql(count: int) -> str:
    return (
        f"WITH w(key, since) AS (VALUES {_values(count, '(%s, %s::bigint)')}) "  # noqa: S608
        "SELECT c.key, c.id, c.version, COUNT(b.id) FILTER (WHERE b.start < w.since) > 0, "
        "COALESCE(SUM(b.count) FILTER (WHERE b.start >= w.since), 0), "
        "COALESCE(SUM(b.total) FILTER (WHERE b.start >= w.since), 0) "
        f"FROM w JOIN {_COUNTER_TABLE} c ON c.key = w.key "
        f"LEFT JOIN {_BUCKET_TABLE} b ON b.counter_id = c.id "
        "GROUP BY c.key, c.id, c.version, w.since"
    )


@functools.cache
def _create_sql(count: int) -> str:
    return (
        f"INSERT INTO {_COUNTER_TABLE} ({_COLUMNS}) VALUES {_values(count, _ROW)} "  # noqa: S608
        "ON CONFLICT (key) DO NOTHING"
    )


@functools.cache
def _lock_sql(count: int) -> str:
    """Create what is missing and lock every counter (ON CONFLICT DO UPDATE takes the row
    lock) in one statement, in key order."""
    return (
        f"INSERT INTO {_COUNTER_TABLE} ({_COLUMNS}) VALUES {_values(count, _ROW)} "  # noqa: S608
        "ON CONFLICT (key) DO UPDATE SET updated_at = EXCLUDED.updated_at "
        "RETURNING key, id"
    )


@functools.lru_cache(maxsize=64)
def _spend_sql(count: int, trims: int, insert_sql: str) -> str:
    """Spend ``count`` budgets and insert the audit row, all or nothing, in one statement:
    the counters still at the versions read are locked (in key order; a racing writer's
    newer version no longer matches once it commits), and only if all of them are, their
    current buckets grow, their versions move on, ``trims`` of them drop buckets the window
    has left, and the row is inserted. Returns the row's id, or nothing on a conflict."""
    trim = (
        f", trimmed AS (DELETE FROM {_BUCKET_TABLE} b USING ok, "  # noqa: S608
        f"(VALUES {_values(trims, '(%s::bigint, %s::bigint)')}) AS t(counter_id, since) "
        "WHERE ok.ok AND b.counter_id = t.counter_id AND b.start < t.since)"
        if trims
        else ""
    )
    return (
        f"WITH expected(key, version) AS (VALUES {_values(count, '(%s, %s::bigint)')}), "  # noqa: S608
        f"locked AS (SELECT c.id FROM {_COUNTER_TABLE} c JOIN expected e "
        "ON c.key = e.key AND c.version = e.version ORDER BY c.key FOR UPDATE OF c), "
        f"ok AS (SELECT count(*) = {count} AS ok FROM locked), "
        f"bumped AS (UPDATE {_COUNTER_TABLE} c SET version = c.version + 1, updated_at = %s "
        "FROM ok WHERE ok.ok AND c.id IN (SELECT id FROM locked)), "
        f"added AS (INSERT INTO {_BUCKET_TABLE} (counter_id, start, count, total) "
        "SELECT a.counter_id, a.start, 1, a.amount FROM ok, "
        f"(VALUES {_values(count, '(%s::bigint, %s::bigint, %s::numeric)')}) "
        "AS a(counter_id, start, amount) "
        "WHERE ok.ok ON CONFLICT (counter_id, start) DO UPDATE SET "
        f"count = {_BUCKET_TABLE}.count + 1, total = {_BUCKET_TABLE}.total + EXCLUDED.total)"
        f"{trim} "
        + insert_sql.replace(" VALUES (", " SELECT ", 1).replace(
            ") RETURNING ", " FROM ok WHERE ok.ok RETURNING ", 1
        )
    )


def budgets_read(
    *, agent_id: int, environment: str, budgets: Iterable[Budget], now: datetime
) -> dict[str, Decimal | int]:
    """Window totals without locking or spending (simulation, shadow evaluation)."""
    totals: dict[str, Decimal | int] = {}
    for budget in budgets:
        key = budget_key(agent_id=agent_id, environment=environment, budget=budget)
        window = LimitBucket.objects.filter(
            counter__key=key, start__gte=_window_start(now, budget.per_seconds)
        ).aggregate(count=Sum("count"), total=Sum("total"))
        value = window["count"] if budget.kind == "count" else window["total"]
        totals[budget.rule_id] = (
            value if value is not None else (0 if budget.kind == "count" else _ZERO)
        )
    return totals


def budgets_count(
    *,
    organization_id: int,
    agent_id: int,
    environment: str,
    rule_pk: int,
    budget: Budget,
    buckets: dict[int, tuple[int, Decimal]],
    now: datetime,
) -> None:
    """Add recorded calls to a budget nobody reserves (a shadow rule's: the aggregation of
    shadow outcomes keeps it current, agents/shadow.py), in the caller's transaction:
    ``buckets`` maps bucket starts to the calls' count and total. Buckets the window has
    left are dropped, and calls it has left are not counted."""
    since = _window_start(now, budget.per_seconds)
    counter, _ = LimitCounter.objects.get_or_create(
        key=budget_key(agent_id=agent_id, environment=environment, budget=budget),
        defaults={
            "organization_id": organization_id,
            "agent_id": agent_id,
            "rule_id": rule_pk,
            "environment": environment,
            "by_value": budget.by_value[:200],
            "bucket_seconds": bucket_seconds(budget.per_seconds),
            "updated_at": now,
        },
    )
    for start, (count, total) in buckets.items():
        if start < since:
            continue
        bucket, created = LimitBucket.objects.get_or_create(
            counter=counter, start=start, defaults={"count": count, "total": total}
        )
        if not created:
            LimitBucket.objects.filter(pk=bucket.pk).update(
                count=F("count") + count, total=F("total") + total
            )
    LimitBucket.objects.filter(counter=counter, start__lt=since).delete()
    LimitCounter.objects.filter(pk=counter.pk).update(version=F("version") + 1, updated_at=now)


def budgets_spend_approved(*, budgets: list[dict[str, str]], requested_at: datetime) -> None:
    """Count an approved call in the budgets it was held against (in the caller's
    transaction), in the bucket of the time it was requested."""
    if not budgets:
        return
    by_key = {item["key"]: item for item in budgets}
    now = timezone.now()
    counters = LimitCounter.objects.select_for_update().filter(key__in=by_key).order_by("key")
    for counter in counters:
        item = by_key[counter.key]
        per = int(item["per"])
        start = _bucket_start(requested_at, per)
        if start < _window_start(now, per):
            continue  # the window has left the request's bucket
        bucket, created = LimitBucket.objects.get_or_create(
            counter=counter, start=start, defaults={"count": 1, "total": Decimal(item["amount"])}
        )
        if not created:
            LimitBucket.objects.filter(pk=bucket.pk).update(
                count=F("count") + 1, total=F("total") + Decimal(item["amount"])
            )
        LimitCounter.objects.filter(pk=counter.pk).update(version=F("version") + 1)


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
    # Shadow rules too (compiled as enforcing here): their totals are read by the shadow
    # evaluation, and this recount is what fills them.
    specs = [replace(rule_spec(rule, lists=agent.policy_lists), mode=ENFORCE) for rule in rules]
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
    counters: dict[str, tuple[Budget, str, dict[int, list[Any]]]] = {}
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
                _, _, buckets = counters.setdefault(key, (budget, environment, {}))
                bucket = buckets.setdefault(_bucket_start(at, budget.per_seconds), [0, _ZERO])
                bucket[0] += 1
                bucket[1] += budget.amount
        LimitCounter.objects.filter(agent=agent, rule_id__in=rule_pks.values()).delete()
        created = LimitCounter.objects.bulk_create(
            [
                LimitCounter(
                    key=key,
                    organization_id=organization.pk,
                    agent=agent,
                    rule_id=rule_pks[budget.rule_id],
                    environment=environment,
                    by_value=budget.by_value[:200],
                    bucket_seconds=bucket_seconds(budget.per_seconds),
                    # A check that read the old row must not spend the new one.
                    version=versions.get(key, 0) + 1,
                    updated_at=now,
                )
                for key, (budget, environment, _) in counters.items()
            ],
            batch_size=1000,
        )
        ids = {counter.key: counter.pk for counter in created}
        if None in ids.values():  # a backend that does not return keys from bulk inserts
            ids = dict(LimitCounter.objects.filter(key__in=ids).values_list("key", "pk"))
        LimitBucket.objects.bulk_create(
            [
                LimitBucket(counter_id=ids[key], start=start, count=count, total=total)
                for key, (budget, _, buckets) in counters.items()
                for start, (count, total) in buckets.items()
                if start >= _window_start(now, budget.per_seconds)
            ],
            batch_size=5000,
        )
    return len(counters)


def history_querysets(
    agent_ids: list[int], since: datetime, patterns: list[str], until: datetime | None = None
) -> tuple[Any, Any]:
    """The allowed checks and approved requests of the agents since ``since`` (and before
    ``until``) whose action any of the patterns could match (the database narrows by exact
    name or prefix; the policy matches precisely)."""
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
    if until is not None:
        checks = checks.filter(created_at__lt=until)
        approved = approved.filter(requested_at__lt=until)
    return checks, approved


def history_is_short(*, agents: list[Agent], spec: RuleSpec, rows: int, now: datetime) -> bool:
    """Whether a rule's window holds at most ``rows`` calls it could count (a recount of
    them runs inline, in the change's own transaction)."""
    assert spec.limit is not None
    since = now - timedelta(seconds=spec.limit.per_seconds + bucket_seconds(spec.limit.per_seconds))
    checks, approved = history_querysets([a.pk for a in agents], since, [spec.action])
    found = checks[: rows + 1].count()
    return found <= rows and found + approved[: rows + 1].count() <= rows


def _history(
    agent: Agent, since: datetime, patterns: list[str], *, metadata: bool
) -> Iterator[tuple[str, Any, str, str, Any, datetime]]:
    """(action, arguments, environment, session, metadata, time) of the calls to recount."""
    checks, approved = history_querysets([agent.pk], since, patterns)
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
