"""The overview's roll-up: checks per hour and per day, token usage per hour and per day (by
agent, model and environment, and by session), and approval decisions per day (by reviewer,
and as a histogram of the time to decision).

Like ``agents.shadow.shadow_tallies_update``, it reads the audit log behind a watermark on
the entry id (and the token usage table behind one on its id): each run counts only the
rows written since the last one, at most ``BATCH_ROWS`` per batch and ``MAX_BATCHES_PER_RUN``
batches, in one transaction per batch that also moves the watermark, so a run repeated or
interrupted never counts a row twice. The check path writes nothing for it. Beat runs it
every ``WARDEN_OVERVIEW_ROLLUP_INTERVAL`` seconds; the overview adds the rows above the
watermark itself (``audit.insights.selectors``), so it is current between runs.

Checks and token usage rows younger than ``LAG_SECONDS`` wait for the next run: ids are
handed out at insert, so a row still being committed may hold a smaller id than one already
visible. Decisions change their request, so they are read by decision time instead, behind
a (decided_at, id) mark, also ``LAG_SECONDS`` late.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Count, Max, Min, Q, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from agents.models import TokenUsage
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
from audit.models import AuditEntry

LAG_SECONDS = 60
BATCH_ROWS = 200_000
MAX_BATCHES_PER_RUN = 20
# Hourly counts serve the 24-hour pages only; older ones are dropped (daily ones stay).
HOURLY_KEPT_HOURS = 72
HOURLY_TABLES = (CheckCount, TokenCostHour, TokenSessionHour)
# Session ids per read of the rows to add to (SQLite takes at most 32,766 parameters).
SESSIONS_PER_READ = 5000

DECIDED = (ApprovalRequest.Status.APPROVED, ApprovalRequest.Status.DENIED)
CHECK_DIMENSIONS = ("organization_id", "agent_id", "environment", "action", "decision")


def overview_rollup(*, now: datetime | None = None, lag_seconds: int = LAG_SECONDS) -> int:
    """Count the checks and token usage written since the watermarks (when older than
    ``lag_seconds``) into the hourly and daily tables, and the approval requests decided
    since the last run (at least ``lag_seconds`` ago) by reviewer and wait; drop hourly
    counts older than ``HOURLY_KEPT_HOURS``. Returns the number of rows read. Concurrent
    runs queue on the watermark row."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=lag_seconds)
    hours_from = now - timedelta(hours=HOURLY_KEPT_HOURS)
    RollupMark.objects.get_or_create(pk=1)
    read = 0
    for _ in range(MAX_BATCHES_PER_RUN):
        done, count = _checks_batch(cutoff, hours_from)
        read += count
        if done:
            RollupMark.objects.filter(pk=1).update(caught_up_to=cutoff)
            break
    for _ in range(MAX_BATCHES_PER_RUN):
        done, count = _usage_batch(cutoff, hours_from)
        read += count
        if done:
            RollupMark.objects.filter(pk=1).update(usage_caught_up_to=cutoff)
            break
    for _ in range(MAX_BATCHES_PER_RUN):
        done, count = _decisions_batch(cutoff)
        read += count
        if done:
            break
    for model in HOURLY_TABLES:
        model.objects.filter(hour__lt=hours_from).delete()
    return read


def _batch_upper(queryset: Any, after: int, cutoff: datetime | None) -> tuple[int, int, bool]:
    """The last id of the next batch above ``after`` (at most BATCH_ROWS rows, none created at
    or after ``cutoff`` if given), how many rows it holds, and whether it is the last batch."""
    ids = queryset.filter(id__gt=after).order_by("id").values_list("id", flat=True)
    full = list(ids[BATCH_ROWS - 1 : BATCH_ROWS])
    ceiling = full[0] if full else queryset.filter(id__gt=after).aggregate(m=Max("id"))["m"]
    if ceiling is None:
        return after, 0, True
    young = None
    if cutoff is not None:
        young = queryset.filter(id__gt=after, id__lte=ceiling, created_at__gte=cutoff).aggregate(
            m=Min("id")
        )["m"]
    upper = ceiling if young is None else young - 1
    if upper <= after:
        return after, 0, True
    count = queryset.filter(id__gt=after, id__lte=upper).count()
    return upper, count, young is not None or not full


def _checks_batch(cutoff: datetime, hours_from: datetime) -> tuple[bool, int]:
    with transaction.atomic():
        mark = RollupMark.objects.select_for_update().get(pk=1)
        upper, scanned, last = _batch_upper(AuditEntry.objects, mark.last_entry_id, cutoff)
        if scanned == 0:
            return True, 0
        rows = (
            AuditEntry.objects.filter(
                id__gt=mark.last_entry_id,
                id__lte=upper,
                kind=AuditEntry.Kind.CHECK,
                agent_id__isnull=False,
            )
            .annotate(hour=TruncHour("created_at", tzinfo=UTC))
            .values(*CHECK_DIMENSIONS, "hour")
            .annotate(n=Count("id"))
            .order_by()
        )
        hours: dict[tuple[Any, ...], int] = defaultdict(int)
        days: dict[tuple[Any, ...], int] = defaultdict(int)
        for row in rows:
            key = tuple(row[d] for d in CHECK_DIMENSIONS)
            if row["hour"] >= hours_from:  # older ones would be dropped at the end of the run
                hours[(*key, row["hour"])] += row["n"]
            days[(*key, row["hour"].astimezone(UTC).date())] += row["n"]
        _counts_add(CheckCount, "hour", hours)
        _counts_add(CheckCountDay, "day", days)
        mark.last_entry_id = upper
        mark.updated_at = timezone.now()
        mark.save(update_fields=["last_entry_id", "updated_at"])
    return last, scanned


def _counts_add(model: Any, period: str, counts: dict[tuple[Any, ...], int]) -> None:
    _upsert_counts(model, (*CHECK_DIMENSIONS, period), counts)


def _upsert_counts(model: Any, fields: tuple[str, ...], counts: dict[tuple[Any, ...], int]) -> None:
    _upsert_sums(model, fields, {key: {"count": n} for key, n in counts.items()})


def _upsert_sums(
    model: Any, fields: tuple[str, ...], sums: dict[tuple[Any, ...], dict[str, Any]]
) -> None:
    """Add ``sums`` (keyed by the values of ``fields``: organization_id first, the day or
    hour last; each a mapping of the summed fields to what to add) to the rows of ``model``,
    creating the missing ones. The caller holds the watermark's lock, so no other run writes
    these rows meanwhile."""
    if not sums:
        return
    period = fields[-1]
    rows = model.objects.select_for_update().filter(
        organization_id__in={key[0] for key in sums},
        **{f"{period}__in": {key[-1] for key in sums}},
    )
    if "session_id" in fields:  # a day holds many sessions: read only those being added to
        sessions = sorted({key[fields.index("session_id")] for key in sums})
        found = [
            row
            for i in range(0, len(sessions), SESSIONS_PER_READ)
            for row in rows.filter(session_id__in=sessions[i : i + SESSIONS_PER_READ])
        ]
    else:
        found = list(rows)
    existing = {tuple(getattr(row, f) for f in fields): row for row in found}
    summed = list(next(iter(sums.values())))
    changed, created = [], []
    for key, added in sums.items():
        row = existing.get(key)
        if row is not None:
            for name, value in added.items():
                setattr(row, name, getattr(row, name) + value)
            changed.append(row)
        else:
            created.append(model(**dict(zip(fields, key, strict=True)), **added))
    model.objects.bulk_update(changed, summed, batch_size=1000)
    model.objects.bulk_create(created, batch_size=1000)


DECISION_BATCH_ROWS = 20_000
WAIT_RATIO = 1.1


def wait_bucket(seconds: float) -> int:
    """The histogram bucket of a wait: 0 under a second, k from 1.1^(k-1) to 1.1^k s."""
    if seconds < 1:
        return 0
    return int(math.log(seconds) / math.log(WAIT_RATIO)) + 1


def wait_bucket_bounds(bucket: int) -> tuple[float, float]:
    if bucket == 0:
        return 0.0, 1.0
    return WAIT_RATIO ** (bucket - 1), WAIT_RATIO**bucket


def _decisions_batch(cutoff: datetime) -> tuple[bool, int]:
    """Count the approval requests approved or denied since the last batch (and before
    ``cutoff``) by reviewer and into the wait histogram, by the day of their decision."""
    with transaction.atomic():
        mark = RollupMark.objects.select_for_update().get(pk=1)
        decided = ApprovalRequest.objects.filter(decided_at__isnull=False, decided_at__lt=cutoff)
        if mark.decisions_through_at is not None:
            at, pk = mark.decisions_through_at, mark.decisions_through_id
            decided = decided.filter(Q(decided_at__gt=at) | Q(decided_at=at, id__gt=pk))
        rows = list(
            decided.order_by("decided_at", "id").values_list(
                "id",
                "organization_id",
                "agent_id",
                "environment",
                "status",
                "requested_at",
                "decided_at",
                "decided_by_label",
            )[:DECISION_BATCH_ROWS]
        )
        if not rows:
            return True, 0
        waits: dict[tuple[Any, ...], int] = defaultdict(int)
        reviewers: dict[tuple[Any, ...], int] = defaultdict(int)
        for _, org, agent, environment, status, requested_at, decided_at, label in rows:
            if status not in DECIDED:
                continue  # expired or cancelled: no one decided
            day = decided_at.astimezone(UTC).date()
            seconds = max(0.0, (decided_at - requested_at).total_seconds())
            waits[(org, agent, environment, wait_bucket(seconds), day)] += 1
            reviewers[(org, agent, environment, label, status, day)] += 1
        _upsert_counts(
            DecisionWait, ("organization_id", "agent_id", "environment", "bucket", "day"), waits
        )
        _upsert_counts(
            DecisionReviewer,
            ("organization_id", "agent_id", "environment", "reviewer", "status", "day"),
            reviewers,
        )
        mark.decisions_through_id, mark.decisions_through_at = rows[-1][0], rows[-1][6]
        mark.updated_at = timezone.now()
        mark.save(update_fields=["decisions_through_id", "decisions_through_at", "updated_at"])
    return len(rows) < DECISION_BATCH_ROWS, len(rows)


USAGE_DIMENSIONS = ("organization_id", "agent_id", "model", "environment")
SESSION_DIMENSIONS = ("organization_id", "agent_id", "environment", "session_id")
USAGE_SUMS = {
    "calls": Count("id"),
    "prompt_tokens": Sum("prompt_tokens"),
    "completion_tokens": Sum("completion_tokens"),
    "cost_usd": Sum("cost_usd"),
}
SESSION_SUMS = {**USAGE_SUMS, "total_tokens": Sum("total_tokens")}


def _usage_batch(cutoff: datetime, hours_from: datetime) -> tuple[bool, int]:
    """Count the token usage rows written since the last batch (and before ``cutoff``) per
    hour and per day: by agent, model and environment, and by session."""
    with transaction.atomic():
        mark = RollupMark.objects.select_for_update().get(pk=1)
        upper, scanned, last = _batch_upper(TokenUsage.objects, mark.last_usage_id, cutoff)
        if scanned == 0:
            return True, 0
        batch = TokenUsage.objects.filter(id__gt=mark.last_usage_id, id__lte=upper).annotate(
            hour=TruncHour("created_at", tzinfo=UTC)
        )
        for dimensions, sums, hourly, daily, rows in (
            (USAGE_DIMENSIONS, USAGE_SUMS, TokenCostHour, TokenCostDay, batch),
            (
                SESSION_DIMENSIONS,
                SESSION_SUMS,
                TokenSessionHour,
                TokenSessionDay,
                batch.exclude(session_id=""),
            ),
        ):
            hours: dict[tuple[Any, ...], dict[str, Any]] = {}
            days: dict[tuple[Any, ...], dict[str, Any]] = {}
            for row in rows.values(*dimensions, "hour").annotate(**sums).order_by():
                key = tuple(row[d] for d in dimensions)
                added = {name: row[name] or 0 for name in sums}
                if row["hour"] >= hours_from:  # older ones would be dropped at the end
                    _sums_add(hours, (*key, row["hour"]), added)
                _sums_add(days, (*key, row["hour"].astimezone(UTC).date()), added)
            _upsert_sums(hourly, (*dimensions, "hour"), hours)
            _upsert_sums(daily, (*dimensions, "day"), days)
        mark.last_usage_id = upper
        mark.updated_at = timezone.now()
        mark.save(update_fields=["last_usage_id", "updated_at"])
    return last, scanned


def _sums_add(
    into: dict[tuple[Any, ...], dict[str, Any]], key: tuple[Any, ...], added: dict[str, Any]
) -> None:
    entry = into.setdefault(key, dict.fromkeys(added, 0))
    for name, value in added.items():
        entry[name] += value
