"""Reads behind the overview and the token usage page.

Check counts and token usage come from the roll-up's tables (``audit.insights.rollup``) plus
the rows above its watermarks (the tail, at most ``TAIL_MAX_SECONDS`` of them), so the pages
are current and their cost does not grow with the audit log or the usage table. Approvals are
read from their own table through its (organization, status, requested_at) and
(organization, decided_at) indexes.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import Aggregate, Count, F, FloatField, Func, Min, Q, QuerySet, Sum
from django.db.models.functions import TruncDay, TruncHour
from django.http import Http404
from django.utils import timezone

from accounts.models import Organization
from agents.models import Agent, ModelPrice, TokenUsage
from agents.policy import ALLOW, BLOCK, REQUIRES_APPROVAL
from approvals.models import ApprovalRequest
from audit.insights.models import (
    CheckCount,
    CheckCountDay,
    DecisionReviewer,
    DecisionWait,
    RollupMark,
    TokenCostDay,
    TokenCostHour,
    TokenSessionDay,
    TokenSessionHour,
)
from audit.insights.rollup import DECIDED, LAG_SECONDS, wait_bucket, wait_bucket_bounds
from audit.models import AuditEntry
from wardenproject.errors import ValidationFailed

DECISIONS = (ALLOW, BLOCK, REQUIRES_APPROVAL)
PERIODS = ("24h", "7d", "30d")
ENVIRONMENTS = ("live", "test")
TOP = 8
# Actions and agents read per ranking, by volume (the holds ranking is taken among them).
RANKED_FETCHED = 1000
# The most of the not-yet-rolled-up log the overview reads itself; older entries above the
# watermark (the roll-up is behind) are left out, and the page says so.
TAIL_MAX_SECONDS = 30 * 60
SESSIONS_SHOWN = 50
# The most decisions above the roll-up's mark read one by one (a roll-up far behind).
TAIL_DECISIONS_MAX = 20_000


@dataclass(frozen=True)
class OverviewFilters:
    period: str = "24h"
    environment: str = ""  # "" = both
    agent: Agent | None = None

    def querystring(self) -> str:
        parts = [f"period={self.period}"]
        if self.environment:
            parts.append(f"environment={self.environment}")
        if self.agent is not None:
            parts.append(f"agent={self.agent.public_id}")
        return "&".join(parts)


def overview_filters_parse(
    *, organization: Organization, params: dict[str, str]
) -> OverviewFilters:
    """The filters of a request: ``period`` (24h, 7d, 30d), ``environment`` (live, test or
    empty) and ``agent`` (one of the organisation's agents: any other id is a 404)."""
    period = params.get("period") or "24h"
    if period not in PERIODS:
        raise ValidationFailed("period must be one of 24h, 7d, 30d.", field="period")
    environment = params.get("environment") or ""
    if environment and environment not in ENVIRONMENTS:
        raise ValidationFailed("environment must be live or test.", field="environment")
    agent = None
    if params.get("agent"):
        agent = Agent.objects.filter(organization=organization, public_id=params["agent"]).first()
        if agent is None:
            raise Http404("No such agent.")
    return OverviewFilters(period=period, environment=environment, agent=agent)


def overview_agents(*, organization: Organization) -> list[Agent]:
    return list(Agent.objects.filter(organization=organization).order_by("name"))


@dataclass(frozen=True)
class _Window:
    start: datetime
    hourly: bool
    buckets: list[Any]  # hours (datetimes) or days (dates), oldest first


def _window(period: str, now: datetime) -> _Window:
    now = now.astimezone(UTC)
    if period == "24h":
        last = now.replace(minute=0, second=0, microsecond=0)
        hours = [last - timedelta(hours=23 - i) for i in range(24)]
        return _Window(start=hours[0], hourly=True, buckets=hours)
    days_back = 6 if period == "7d" else 29
    today = now.date()
    days = [today - timedelta(days=days_back - i) for i in range(days_back + 1)]
    start = datetime(days[0].year, days[0].month, days[0].day, tzinfo=UTC)
    return _Window(start=start, hourly=False, buckets=days)


def _scoped(queryset: QuerySet, filters: OverviewFilters) -> QuerySet:
    if filters.environment:
        queryset = queryset.filter(environment=filters.environment)
    if filters.agent is not None:
        queryset = queryset.filter(agent_id=filters.agent.pk)
    return queryset


def _mark() -> RollupMark:
    return RollupMark.objects.filter(pk=1).first() or RollupMark(pk=1)


def _tail_start(
    caught_up_to: datetime | None, since: datetime, now: datetime
) -> tuple[datetime, bool]:
    """Where the read of rows above a watermark starts (``caught_up_to``: the mark's
    ``caught_up_to`` or ``usage_caught_up_to``), and whether the roll-up is so far behind (or
    has not run yet) that part of them is left out."""
    earliest = now - timedelta(seconds=TAIL_MAX_SECONDS)
    if caught_up_to is None:
        return max(since, earliest), True
    start = max(since, caught_up_to - timedelta(seconds=LAG_SECONDS))
    if start < earliest:
        return earliest, True
    return start, False


@dataclass
class _Counts:
    """Checks over the window: per bucket and decision, and per action and agent."""

    buckets: list[Any]
    series: dict[str, list[int]] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    by_action: dict[str, dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: {"checks": 0, "holds": 0})
    )
    by_agent: dict[int, dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: {"checks": 0, "holds": 0})
    )

    def __post_init__(self) -> None:
        self.series = {d: [0] * len(self.buckets) for d in DECISIONS}
        self.index = {b: i for i, b in enumerate(self.buckets)}

    def add_bucket(self, bucket: Any, decision: str, n: int) -> None:
        i = self.index.get(bucket)
        if i is None:
            return
        if decision in self.series:
            self.series[decision][i] += n
        self.totals[decision] += n
        self.totals["checks"] += n

    def add(self, dimension: str, key: Any, n: int, held: int) -> None:
        entry = (self.by_action if dimension == "action" else self.by_agent)[key]
        entry["checks"] += n
        entry["holds"] += held


def _check_counts(
    organization: Organization,
    filters: OverviewFilters,
    window: _Window,
    now: datetime,
    mark: RollupMark,
) -> tuple[_Counts, dict[str, Any]]:
    """The window's checks: rolled up (aggregated by the database: a 30-day window of a busy
    organisation holds tens of thousands of counts) plus the tail above the watermark."""
    if window.hourly:
        counted = CheckCount.objects.filter(organization=organization, hour__gte=window.start)
        bucket = "hour"
    else:
        counted = CheckCountDay.objects.filter(
            organization=organization, day__gte=window.buckets[0]
        )
        bucket = "day"
    counted = _scoped(counted, filters)
    counts = _Counts(buckets=window.buckets)
    for r in counted.values(bucket, "decision").annotate(n=Sum("count")).order_by():
        counts.add_bucket(r[bucket], r["decision"], r["n"])
    held = Sum("count", filter=Q(decision=REQUIRES_APPROVAL))
    for dimension in ("action", "agent_id"):
        ranked = (
            counted.values(dimension).annotate(n=Sum("count"), held=held).order_by("-n", dimension)
        )
        for r in ranked[:RANKED_FETCHED]:
            counts.add(dimension.removesuffix("_id"), r[dimension], r["n"], r["held"] or 0)

    tail_from, behind = _tail_start(mark.caught_up_to, window.start, now)
    trunc = TruncHour if window.hourly else TruncDay
    tail = _scoped(
        AuditEntry.objects.filter(
            organization=organization,
            kind=AuditEntry.Kind.CHECK,
            created_at__gte=tail_from,
            id__gt=mark.last_entry_id,
            agent_id__isnull=False,
        ),
        filters,
    )
    for r in (
        tail.annotate(b=trunc("created_at", tzinfo=UTC))
        .values("b", "agent_id", "action", "decision")
        .annotate(n=Count("id"))
        .order_by()
    ):
        b = r["b"].astimezone(UTC)
        counts.add_bucket(b if window.hourly else b.date(), r["decision"], r["n"])
        n, held_n = r["n"], r["n"] if r["decision"] == REQUIRES_APPROVAL else 0
        counts.add("action", r["action"], n, held_n)
        counts.add("agent", r["agent_id"], n, held_n)
    freshness = {
        "rolled_up_to": mark.caught_up_to,
        "behind": behind,
        "missing_until": tail_from if behind else None,
    }
    return counts, freshness


def _top(counts: dict[Any, dict[str, int]], key: str) -> list[tuple[Any, dict[str, int]]]:
    ranked = sorted(counts.items(), key=lambda item: (-item[1][key], str(item[0])))
    return [item for item in ranked if item[1][key] > 0][:TOP]


def _percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (PostgreSQL's percentile_cont)."""
    if not values:
        return None
    values = sorted(values)
    position = (len(values) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return values[low] + (values[high] - values[low]) * (position - low)


class _PercentileCont(Aggregate):
    """PostgreSQL's ``percentile_cont(fraction) WITHIN GROUP (ORDER BY expression)``."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: Any, fraction: float) -> None:
        super().__init__(expression, fraction=float(fraction))


def _decision_times(decided: QuerySet) -> tuple[int, float | None, float | None]:
    """How many requests were decided, and the median and 90th percentile of their time to
    decision in seconds (computed by PostgreSQL; in Python on SQLite)."""
    if connection.vendor == "postgresql":
        waited = Func(
            F("decided_at") - F("requested_at"),
            template="EXTRACT(EPOCH FROM %(expressions)s)",
            output_field=FloatField(),
        )
        found = decided.aggregate(
            n=Count("id"), median=_PercentileCont(waited, 0.5), p90=_PercentileCont(waited, 0.9)
        )
        return found["n"], found["median"], found["p90"]
    seconds = [
        (decided_at - requested_at).total_seconds()
        for requested_at, decided_at in decided.values_list("requested_at", "decided_at")
    ]
    return len(seconds), _percentile(seconds, 0.5), _percentile(seconds, 0.9)


def _reviewer_add(reviewers: dict[str, dict[str, int]], label: str, status: str, n: int) -> None:
    reviewer = reviewers[label or "(unknown)"]
    reviewer[status] += n
    reviewer["total"] += n


def _decisions_by_day(
    organization: Organization,
    filters: OverviewFilters,
    window: _Window,
    mark: RollupMark,
    requests: QuerySet,
) -> tuple[dict[int, int], dict[str, dict[str, int]]]:
    """The wait histogram and the counts by reviewer of the window's days."""
    waits: dict[int, int] = defaultdict(int)
    reviewers: dict[str, dict[str, int]] = defaultdict(
        lambda: {"approved": 0, "denied": 0, "total": 0}
    )
    first_day = window.buckets[0]
    rolled = _scoped(
        DecisionWait.objects.filter(organization=organization, day__gte=first_day), filters
    )
    for row in rolled.values("bucket").annotate(n=Sum("count")).order_by():
        waits[row["bucket"]] += row["n"]
    by_reviewer = _scoped(
        DecisionReviewer.objects.filter(organization=organization, day__gte=first_day), filters
    )
    for row in by_reviewer.values("reviewer", "status").annotate(n=Sum("count")).order_by():
        _reviewer_add(reviewers, row["reviewer"], row["status"], row["n"])
    tail = requests.filter(
        decided_at__isnull=False, decided_at__gte=window.start, status__in=DECIDED
    )
    if mark.decisions_through_at is not None:
        at, pk = mark.decisions_through_at, mark.decisions_through_id
        tail = tail.filter(Q(decided_at__gt=at) | Q(decided_at=at, id__gt=pk))
    for requested_at, decided_at, label, status in tail.values_list(
        "requested_at", "decided_at", "decided_by_label", "status"
    )[:TAIL_DECISIONS_MAX]:
        waits[wait_bucket(max(0.0, (decided_at - requested_at).total_seconds()))] += 1
        _reviewer_add(reviewers, label, status, 1)
    return waits, reviewers


def _histogram_percentile(histogram: dict[int, int], q: float) -> float | None:
    """The ``q`` quantile of a wait histogram (audit.insights.rollup.wait_bucket), interpolated
    inside its bucket: within the bucket's 10 %."""
    total = sum(histogram.values())
    if not total:
        return None
    rank = q * (total - 1)
    seen = 0
    for bucket in sorted(histogram):
        count = histogram[bucket]
        if count and seen + count > rank:
            low, high = wait_bucket_bounds(bucket)
            return low + (high - low) * (rank - seen + 0.5) / count
        seen += count
    return wait_bucket_bounds(max(histogram))[1]


def overview_read(
    *, organization: Organization, filters: OverviewFilters, now: datetime | None = None
) -> dict[str, Any]:
    """Everything the overview shows for the organisation, filters and period."""
    now = now or timezone.now()
    window = _window(filters.period, now)
    mark = _mark()
    counts, freshness = _check_counts(organization, filters, window, now, mark)
    series, totals, by_action, by_agent = (
        counts.series,
        counts.totals,
        counts.by_action,
        counts.by_agent,
    )
    agents = {
        pk: (name, public_id)
        for pk, name, public_id in Agent.objects.filter(
            organization=organization, pk__in=list(by_agent)
        ).values_list("pk", "name", "public_id")
    }

    def named_actions(ranked: list[tuple[Any, dict[str, int]]]) -> list[dict[str, Any]]:
        return [{"name": name, **counts} for name, counts in ranked]

    def named_agents(ranked: list[tuple[Any, dict[str, int]]]) -> list[dict[str, Any]]:
        return [
            {
                "name": agents.get(pk, ("(deleted agent)", ""))[0],
                "id": agents.get(pk, ("", ""))[1],
                **c,
            }
            for pk, c in ranked
        ]

    requests = _scoped(ApprovalRequest.objects.filter(organization=organization), filters)
    pending = requests.filter(status=ApprovalRequest.Status.PENDING, expires_at__gt=now).aggregate(
        count=Count("id"), oldest=Min("requested_at")
    )
    if window.hourly:  # 24 hours: exact, from the requests decided in them
        decided = requests.filter(
            decided_at__isnull=False, decided_at__gte=window.start, status__in=DECIDED
        )
        decided_count, median, p90 = _decision_times(decided)
        reviewers: dict[str, dict[str, int]] = defaultdict(
            lambda: {"approved": 0, "denied": 0, "total": 0}
        )
        for row in decided.values("decided_by_label", "status").annotate(n=Count("id")).order_by():
            _reviewer_add(reviewers, row["decided_by_label"], row["status"], row["n"])
    else:  # days: from the roll-up, plus the requests decided since it last ran
        waits, reviewers = _decisions_by_day(organization, filters, window, mark, requests)
        decided_count = sum(waits.values())
        median, p90 = _histogram_percentile(waits, 0.5), _histogram_percentile(waits, 0.9)

    return {
        "period": filters.period,
        "start": window.start,
        "now": now,
        "hourly": window.hourly,
        "labels": [
            b.strftime("%H:00") if window.hourly else b.strftime("%d %b") for b in window.buckets
        ],
        "series": series,
        "totals": {"checks": totals["checks"], **{d: totals[d] for d in DECISIONS}},
        "top_actions_by_volume": named_actions(_top(by_action, "checks")),
        "top_actions_by_holds": named_actions(_top(by_action, "holds")),
        "top_agents_by_volume": named_agents(_top(by_agent, "checks")),
        "top_agents_by_holds": named_agents(_top(by_agent, "holds")),
        "pending": {
            "count": pending["count"],
            "oldest_at": pending["oldest"],
            "oldest_age_seconds": (now - pending["oldest"]).total_seconds()
            if pending["oldest"]
            else None,
        },
        "time_to_decision": {
            "decided": decided_count,
            "median_seconds": median,
            "p90_seconds": p90,
            "approximate": not window.hourly,
        },
        "reviewers": sorted(
            ({"reviewer": name, **counts} for name, counts in reviewers.items()),
            key=lambda r: (-r["total"], r["reviewer"]),
        ),
        "tokens": _token_costs(organization, filters, window, now, mark),
        **freshness,
    }


def _token_costs(
    organization: Organization,
    filters: OverviewFilters,
    window: _Window,
    now: datetime,
    mark: RollupMark,
) -> dict[str, Any]:
    first_day = window.start.date()
    days = [first_day + timedelta(days=i) for i in range((now.date() - first_day).days + 1)]
    cost: dict[tuple[str, date], Decimal] = defaultdict(Decimal)
    calls: dict[str, int] = defaultdict(int)
    counted = _scoped(
        TokenCostDay.objects.filter(organization=organization, day__gte=first_day), filters
    )
    for r in counted.values("model", "day").annotate(c=Sum("cost_usd"), n=Sum("calls")):
        cost[(r["model"], r["day"])] += r["c"] or Decimal(0)
        calls[r["model"]] += r["n"] or 0
    tail_from, _ = _tail_start(mark.usage_caught_up_to, window.start, now)
    for r in (
        _usage_tail(organization, filters, mark, tail_from)
        .annotate(day=TruncDay("created_at", tzinfo=UTC))
        .values("model", "day")
        .annotate(c=Sum("cost_usd"), n=Count("id"))
        .order_by()
    ):
        cost[(r["model"], r["day"].astimezone(UTC).date())] += r["c"] or Decimal(0)
        calls[r["model"]] += r["n"]
    models = sorted(calls, key=lambda m: (-sum(v for (mm, _), v in cost.items() if mm == m), m))
    priced = set(ModelPrice.objects.filter(model__in=models).values_list("model", flat=True))
    return {
        "days": [d.strftime("%d %b") for d in days],
        "models": [
            {
                "model": m,
                "calls": calls[m],
                "cost_usd": float(sum((cost[(m, d)] for d in days), Decimal(0))),
                "priced": m in priced,
                "per_day": [float(cost[(m, d)]) for d in days],
            }
            for m in models
        ],
        "total_cost_usd": float(sum(cost.values(), Decimal(0))),
        "unpriced_models": [m for m in models if m not in priced],
    }


# --- Token usage page ------------------------------------------------------------------------


def _usage_tail(
    organization: Organization, filters: OverviewFilters, mark: RollupMark, tail_from: datetime
) -> QuerySet:
    """The usage rows above the roll-up's watermark, from ``tail_from`` (``_tail_start``)."""
    return _scoped(
        TokenUsage.objects.filter(
            organization=organization, created_at__gte=tail_from, id__gt=mark.last_usage_id
        ),
        filters,
    )


# Summed over rolled-up rows (named apart from the tables' own fields) and over usage rows.
_ROLLED_SUMS = {
    "n_calls": Sum("calls"),
    "n_prompt": Sum("prompt_tokens"),
    "n_completion": Sum("completion_tokens"),
    "n_cost": Sum("cost_usd"),
}
_RAW_SUMS = {
    "n_calls": Count("id"),
    "n_prompt": Sum("prompt_tokens"),
    "n_completion": Sum("completion_tokens"),
    "n_cost": Sum("cost_usd"),
}


def _usage_rows(
    organization: Organization,
    filters: OverviewFilters,
    window: _Window,
    mark: RollupMark,
    tail_from: datetime,
) -> list[tuple[date, int | None, str, int, int, int, Decimal]]:
    """(UTC day, agent id, model, calls, prompt tokens, completion tokens, cost) of the window:
    from the roll-up (by hour for 24 hours, by day otherwise) plus the rows above its mark."""
    if window.hourly:
        rolled = TokenCostHour.objects.filter(
            organization=organization, hour__gte=window.start
        ).annotate(day=TruncDay("hour", tzinfo=UTC))
    else:
        rolled = TokenCostDay.objects.filter(organization=organization, day__gte=window.buckets[0])
    counted = _scoped(rolled, filters).values("day", "agent_id", "model").annotate(**_ROLLED_SUMS)
    recent = (
        _usage_tail(organization, filters, mark, tail_from)
        .annotate(day=TruncDay("created_at", tzinfo=UTC))
        .values("day", "agent_id", "model")
        .annotate(**_RAW_SUMS)
    )
    return [
        (
            _as_day(r["day"]),
            r["agent_id"],
            r["model"],
            r["n_calls"] or 0,
            r["n_prompt"] or 0,
            r["n_completion"] or 0,
            r["n_cost"] or Decimal(0),
        )
        for rows in (counted, recent)
        for r in rows.order_by()
    ]


def _as_day(value: Any) -> date:
    return value.astimezone(UTC).date() if isinstance(value, datetime) else value


def _session(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "session_id": row["session_id"],
        "calls": row["n_calls"] or 0,
        "prompt_tokens": row["n_prompt"] or 0,
        "completion_tokens": row["n_completion"] or 0,
        "total_tokens": row["n_total"] or 0,
        "cost_usd": row["n_cost"] or Decimal(0),
    }


def _costliest_sessions(
    organization: Organization,
    filters: OverviewFilters,
    window: _Window,
    mark: RollupMark,
    tail_from: datetime,
) -> list[dict[str, Any]]:
    """The ``SESSIONS_SHOWN`` most costly sessions of the window (ties by session id): the
    roll-up's session counts plus the rows above its mark.

    Exact without merging every session: a session absent from the tail keeps its rolled-up
    total, so if it is not among the top SESSIONS_SHOWN + (sessions in the tail) of the
    roll-up, at least SESSIONS_SHOWN sessions absent from the tail rank before it."""
    tail = {
        r["session_id"]: _session(r)
        for r in _usage_tail(organization, filters, mark, tail_from)
        .exclude(session_id="")
        .values("session_id")
        .annotate(**_RAW_SUMS, n_total=Sum("total_tokens"))
        .order_by()
    }
    if window.hourly:
        rolled = TokenSessionHour.objects.filter(organization=organization, hour__gte=window.start)
    else:
        rolled = TokenSessionDay.objects.filter(
            organization=organization, day__gte=window.buckets[0]
        )
    per_session = (
        _scoped(rolled, filters)
        .values("session_id")
        .annotate(**_ROLLED_SUMS, n_total=Sum("total_tokens"))
    )
    sessions = {
        r["session_id"]: _session(r)
        for r in per_session.order_by("-n_cost", "session_id")[: SESSIONS_SHOWN + len(tail)]
    }
    missing = set(tail) - set(sessions)
    if missing:
        for r in per_session.filter(session_id__in=missing).order_by():
            sessions[r["session_id"]] = _session(r)
    for session_id, recent in tail.items():
        entry = sessions.get(session_id)
        if entry is None:
            sessions[session_id] = recent
            continue
        for name in ("calls", "prompt_tokens", "completion_tokens", "total_tokens", "cost_usd"):
            entry[name] += recent[name]
    ranked = sorted(sessions.values(), key=lambda r: (-r["cost_usd"], r["session_id"]))
    return ranked[:SESSIONS_SHOWN]


def token_usage_report(
    *, organization: Organization, filters: OverviewFilters, now: datetime | None = None
) -> dict[str, Any]:
    """Token usage over the period by model, day, agent and session (the most costly
    ``SESSIONS_SHOWN``), with cost; models without a ``ModelPrice`` are named, since their
    calls were stored at $0. Read from the roll-up plus the usage rows above its mark."""
    now = now or timezone.now()
    window = _window(filters.period, now)
    mark = _mark()
    tail_from, behind = _tail_start(mark.usage_caught_up_to, window.start, now)

    def empty() -> dict[str, Any]:
        return {
            "calls": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "total_tokens": 0,
            "cost_usd": Decimal(0),
        }

    groups: dict[str, dict[Any, dict[str, Any]]] = {
        "model": defaultdict(empty),
        "day": defaultdict(empty),
        "agent": defaultdict(empty),
    }
    totals = empty()
    for day, agent_id, model, calls, prompt, completion, cost in _usage_rows(
        organization, filters, window, mark, tail_from
    ):
        for entry in (
            groups["model"][model],
            groups["day"][day],
            groups["agent"][agent_id],
            totals,
        ):
            entry["calls"] += calls
            entry["prompt_tokens"] += prompt
            entry["completion_tokens"] += completion
            entry["total_tokens"] += prompt + completion
            entry["cost_usd"] += cost
    priced = set(
        ModelPrice.objects.filter(model__in=list(groups["model"])).values_list("model", flat=True)
    )
    by_model = sorted(
        ({"model": m, "priced": m in priced, **v} for m, v in groups["model"].items()),
        key=lambda r: (-r["cost_usd"], r["model"]),
    )
    agents = {
        pk: (public_id, name)
        for pk, public_id, name in Agent.objects.filter(
            organization=organization, pk__in=list(groups["agent"])
        ).values_list("pk", "public_id", "name")
    }
    by_agent = sorted(
        (
            {
                "agent__public_id": agents.get(pk, (None, None))[0],
                "agent__name": agents.get(pk, (None, None))[1],
                **v,
            }
            for pk, v in groups["agent"].items()
        ),
        key=lambda r: -r["cost_usd"],
    )
    return {
        "period": filters.period,
        "start": window.start,
        "by_model": by_model,
        "by_day": [{"day": d, **v} for d, v in sorted(groups["day"].items(), reverse=True)],
        "by_agent": by_agent,
        "by_session": _costliest_sessions(organization, filters, window, mark, tail_from),
        "totals": totals,
        "unpriced_models": [r["model"] for r in by_model if not r["priced"]],
        "unpriced_calls": sum(r["calls"] for r in by_model if not r["priced"]),
        "rolled_up_to": mark.usage_caught_up_to,
        "behind": behind,
        "missing_until": tail_from if behind else None,
    }
