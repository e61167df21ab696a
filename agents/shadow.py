"""Shadow rules over time: per-rule daily tallies, aggregated from the audit log.

A check records what its shadow rules would have made of the answer in its own audit entry
(``data["shadow"]``, written with the entry: the check path writes nothing else). This
module counts those outcomes into ``ShadowTally`` (rule, agent, UTC day, answer it had,
answer it would have had) behind a watermark on the audit entry id: each run reads only
the entries written since the last one, at most ``BATCH_ROWS`` at a time, so neither a run
nor the rule page ever scans history. Beat runs it every ``TALLY_EVERY_SECONDS``.

The same run keeps shadow rules' running totals current: the check path reads them
(``agents.limits.budgets_read``) and never reserves or spends them, and here every allowed
call a shadow rule with a limit applied to is added to the budgets that rule would have
spent. A shadow limit therefore sees the calls of the last minute or two late (the run's
interval and ``LAG_SECONDS``); promoting the rule recounts its budgets from the audit log.

Entries younger than ``LAG_SECONDS`` wait for the next run: ids are handed out when a row
is inserted, so a row still being committed may hold a smaller id than one already
committed; a check whose write took longer than that could be left out of the tallies (its
own entry still names its shadow outcomes).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from agents import limits
from agents.models import Rule, ShadowTally, ShadowTallyMark
from agents.policy import (
    ALLOW,
    ENFORCE,
    SHADOW,
    Budget,
    Call,
    CompiledPolicy,
    bucket_seconds,
    compile_policy,
)
from agents.selectors import organization_tz, rule_spec
from audit.models import AuditEntry

TALLY_EVERY_SECONDS = 60.0
LAG_SECONDS = 60
BATCH_ROWS = 20_000
MAX_BATCHES_PER_RUN = 50
SHADOW_TALLY_DAYS = 31  # tallies kept; the rule page shows the last 1, 7 and 30 days
WINDOWS_DAYS = (1, 7, 30)


def answer_of(entry_decision: str, data: dict[str, Any] | None) -> str:
    """The decision the policy took for a recorded check: the answer, or for a log-only
    agent's call the decision it would have had (``data["log_only"]``)."""
    log_only = (data or {}).get("log_only")
    if isinstance(log_only, dict) and isinstance(log_only.get("decision"), str):
        return log_only["decision"]
    return entry_decision


def shadow_tallies_update(*, now: datetime | None = None, lag_seconds: int = LAG_SECONDS) -> int:
    """Count the shadow outcomes of check entries written since the watermark (and older
    than ``lag_seconds``) into the daily tallies; drop tallies older than
    ``SHADOW_TALLY_DAYS``. Returns the number of entries read. Concurrent runs queue on the
    watermark row."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=lag_seconds)
    read = 0
    for _ in range(MAX_BATCHES_PER_RUN):
        done, count = _batch(cutoff)
        read += count
        if done:
            break
    oldest = now.astimezone(UTC).date() - timedelta(days=SHADOW_TALLY_DAYS)
    ShadowTally.objects.filter(day__lt=oldest).delete()
    return read


def _batch(cutoff: datetime) -> tuple[bool, int]:
    with transaction.atomic():
        mark, _ = ShadowTallyMark.objects.get_or_create(pk=1)
        mark = ShadowTallyMark.objects.select_for_update().get(pk=1)
        upper = mark.last_entry_id
        scanned = 0
        for entry_id, created_at in (
            AuditEntry.objects.filter(id__gt=mark.last_entry_id)
            .order_by("id")
            .values_list("id", "created_at")[:BATCH_ROWS]
        ):
            if created_at >= cutoff:
                break
            upper = entry_id
            scanned += 1
        if upper == mark.last_entry_id:
            return True, 0
        counts: Counter[tuple[str, int, int, date, str, str]] = Counter()
        budgets = _ShadowBudgets()
        for row in (
            AuditEntry.objects.filter(
                id__gt=mark.last_entry_id,
                id__lte=upper,
                kind=AuditEntry.Kind.CHECK,
                data__has_key="shadow",
            )
            .values_list(
                "agent_id",
                "organization_id",
                "decision",
                "data",
                "created_at",
                "action",
                "arguments",
                "environment",
                "session_id",
            )
            .iterator(chunk_size=2000)
        ):
            agent_id, organization_id, decision, data, created_at = row[:5]
            if agent_id is None:
                continue
            was = answer_of(decision, data)
            day = created_at.astimezone(UTC).date()
            for outcome in data.get("shadow") or ():
                rule_id = outcome.get("rule_id") if isinstance(outcome, dict) else None
                would_be = outcome.get("decision") if isinstance(outcome, dict) else None
                if isinstance(rule_id, str) and isinstance(would_be, str):
                    counts[(rule_id, agent_id, organization_id, day, was, would_be)] += 1
                    if decision == ALLOW:
                        budgets.count(rule_id, row)
        _tallies_add(counts)
        budgets.write(now=timezone.now())
        mark.last_entry_id = upper
        mark.updated_at = timezone.now()
        mark.save(update_fields=["last_entry_id", "updated_at"])
    return scanned < BATCH_ROWS, scanned


class _ShadowBudgets:
    """The running totals of shadow rules with a limit, kept current here rather than on the
    check path (which reads them and never spends): every allowed call a shadow rule applied
    to is added to the budgets it would have spent, in the bucket of its time."""

    def __init__(self) -> None:
        self.rules: dict[str, tuple[Rule, CompiledPolicy, Any] | None] = {}
        self.buckets: dict[tuple[Any, ...], tuple[Budget, int, dict[int, list[Any]]]] = {}

    def _rule(self, rule_id: str) -> tuple[Rule, CompiledPolicy, Any] | None:
        if rule_id not in self.rules:
            rule = (
                Rule.objects.select_related("organization", "agent")
                .filter(public_id=rule_id)
                .first()
            )
            found = None
            if rule is not None and rule.document.get("mode") == SHADOW:
                lists = rule.agent.policy_lists if rule.agent_id else None
                spec = replace(rule_spec(rule, lists=lists), mode=ENFORCE)
                if spec.limit is not None:
                    found = (rule, compile_policy([spec]), organization_tz(rule.organization))
            self.rules[rule_id] = found
        return self.rules[rule_id]

    def count(self, rule_id: str, row: tuple[Any, ...]) -> None:
        found = self._rule(rule_id)
        if found is None:
            return
        rule, policy, tz = found
        agent_id, organization_id, _, data, at, action, arguments, environment, session = row
        call = Call(
            action,
            arguments,
            environment,
            session_id=session,
            metadata=(data or {}).get("metadata"),
            at=at,
            timezone=tz,
        )
        for budget in policy.budgets(call):
            key = (agent_id, organization_id, environment, *budget.series())
            _, _, buckets = self.buckets.setdefault(key, (budget, rule.pk, {}))
            size = bucket_seconds(budget.per_seconds)
            bucket = buckets.setdefault(int(at.timestamp() // size) * size, [0, Decimal(0)])
            bucket[0] += 1
            bucket[1] += budget.amount

    def write(self, *, now: datetime) -> None:
        for key, (budget, rule_pk, buckets) in self.buckets.items():
            agent_id, organization_id, environment = key[:3]
            limits.budgets_count(
                organization_id=organization_id,
                agent_id=agent_id,
                environment=environment,
                rule_pk=rule_pk,
                budget=budget,
                buckets={start: (count, total) for start, (count, total) in buckets.items()},
                now=now,
            )


def _tallies_add(counts: Counter[tuple[str, int, int, date, str, str]]) -> None:
    if not counts:
        return
    rule_pks = dict(
        Rule.objects.filter(public_id__in={key[0] for key in counts}).values_list("public_id", "pk")
    )
    wanted: dict[tuple[int, int, date, str, str], tuple[int, int]] = {}
    for (rule_id, agent_id, organization_id, day, was, would_be), count in counts.items():
        rule_pk = rule_pks.get(rule_id)
        if rule_pk is not None:  # a rule deleted since is not counted
            wanted[(rule_pk, agent_id, day, was, would_be)] = (organization_id, count)
    if not wanted:
        return
    existing = {
        (t.rule_id, t.agent_id, t.day, t.was, t.would_be): t
        for t in ShadowTally.objects.select_for_update().filter(
            rule_id__in={key[0] for key in wanted}, day__in={key[2] for key in wanted}
        )
    }
    changed, created = [], []
    for key, (organization_id, count) in wanted.items():
        tally = existing.get(key)
        if tally is not None:
            tally.count += count
            changed.append(tally)
        else:
            rule_pk, agent_id, day, was, would_be = key
            created.append(
                ShadowTally(
                    organization_id=organization_id,
                    rule_id=rule_pk,
                    agent_id=agent_id,
                    day=day,
                    was=was,
                    would_be=would_be,
                    count=count,
                )
            )
    ShadowTally.objects.bulk_update(changed, ["count"], batch_size=1000)
    ShadowTally.objects.bulk_create(created, batch_size=1000)


# --- Reading ---------------------------------------------------------------------------------


def shadow_stats(*, rule: Rule, now: datetime | None = None) -> dict[str, Any]:
    """A shadow rule's record over the last 1, 7 and 30 UTC days (today included): calls it
    applied to, answers it would have changed, by transition (``allow->block``). Reads at
    most 9 tallies per agent and day; ``as_of`` is when the tallies were last brought up to
    date."""
    now = now or timezone.now()
    today = now.astimezone(UTC).date()
    first = today - timedelta(days=max(WINDOWS_DAYS) - 1)
    rows = (
        ShadowTally.objects.filter(rule=rule, day__gte=first)
        .values("day", "was", "would_be")
        .annotate(calls=Sum("count"))
    )
    windows: dict[str, dict[str, Any]] = {
        f"{days}d": {"matched": 0, "changed": 0, "transitions": {}} for days in WINDOWS_DAYS
    }
    for row in rows:
        age = (today - row["day"]).days
        for days in WINDOWS_DAYS:
            if age >= days:
                continue
            window = windows[f"{days}d"]
            window["matched"] += row["calls"]
            if row["was"] != row["would_be"]:
                window["changed"] += row["calls"]
                transition = f"{row['was']}->{row['would_be']}"
                window["transitions"][transition] = (
                    window["transitions"].get(transition, 0) + row["calls"]
                )
    for window in windows.values():
        window["transitions"] = dict(sorted(window["transitions"].items()))
    mark = ShadowTallyMark.objects.filter(pk=1).values_list("updated_at", flat=True).first()
    return {"as_of": mark.isoformat() if mark else None, **windows}
