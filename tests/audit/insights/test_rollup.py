"""The overview's roll-up counts checks and token usage behind watermarks: each entry once,
however often it runs, and none the check path had not finished writing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from audit.insights.models import CheckCount, CheckCountDay, RollupMark, TokenCostDay
from audit.insights.rollup import overview_rollup
from tests.audit.insights.conftest import checks, usage

pytestmark = pytest.mark.django_db

LATER = timedelta(minutes=5)  # past the roll-up's lag for everything the fixtures wrote


def hourly() -> dict[tuple, int]:
    return {
        (c.agent_id, c.environment, c.hour, c.action, c.decision): c.count
        for c in CheckCount.objects.all()
    }


def test_checks_are_counted_per_hour_and_day_by_agent_environment_action_and_decision(
    support_bot, billing_bot
):
    hour = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    checks(support_bot, 3, at=hour + timedelta(minutes=10))
    checks(support_bot, 2, decision="requires_approval", at=hour + timedelta(minutes=20))
    checks(support_bot, 1, at=hour + timedelta(minutes=70))
    checks(billing_bot, 4, action="invoice.send", environment="test", at=hour)

    overview_rollup(now=timezone.now() + LATER)

    assert hourly() == {
        (support_bot.pk, "live", hour, "stripe.refund", "allow"): 3,
        (support_bot.pk, "live", hour, "stripe.refund", "requires_approval"): 2,
        (support_bot.pk, "live", hour + timedelta(hours=1), "stripe.refund", "allow"): 1,
        (billing_bot.pk, "test", hour, "invoice.send", "allow"): 4,
    }
    day = CheckCountDay.objects.get(agent=support_bot, decision="allow")
    assert (day.day.isoformat(), day.count) == ("2026-12-07", 4)


def test_running_the_roll_up_again_counts_nothing_twice(support_bot):
    checks(support_bot, 3)
    overview_rollup(now=timezone.now() + LATER)
    first = hourly()

    assert overview_rollup(now=timezone.now() + LATER) == 0
    assert hourly() == first


def test_new_checks_are_added_to_the_existing_counts(support_bot):
    at = timezone.now() - timedelta(minutes=2)
    checks(support_bot, 3, at=at)
    overview_rollup(now=timezone.now() + LATER)
    checks(support_bot, 2, at=at)
    overview_rollup(now=timezone.now() + LATER)

    assert list(hourly().values()) == [5]
    assert CheckCountDay.objects.get().count == 5


def test_checks_younger_than_the_lag_wait_for_the_next_run(support_bot):
    now = timezone.now() + timedelta(minutes=30)  # the agent's creation is long past
    checks(support_bot, 2, at=now - timedelta(minutes=10))
    young = checks(support_bot, 1, at=now - timedelta(seconds=10))

    overview_rollup(now=now + timedelta(seconds=30), lag_seconds=60)

    assert sum(hourly().values()) == 2
    assert RollupMark.objects.get().last_entry_id < young[0].pk


def test_a_run_reads_in_bounded_batches_and_moves_the_watermark_with_each(support_bot, monkeypatch):
    monkeypatch.setattr("audit.insights.rollup.BATCH_ROWS", 4)
    monkeypatch.setattr("audit.insights.rollup.MAX_BATCHES_PER_RUN", 2)
    entries = checks(support_bot, 10)

    overview_rollup(now=timezone.now() + LATER)
    mark = RollupMark.objects.get()
    assert mark.last_entry_id < entries[-1].pk
    assert mark.caught_up_to is None  # not caught up: the overview's tail must not trust it

    overview_rollup(now=timezone.now() + LATER)
    assert sum(hourly().values()) == 10


def test_other_kinds_of_entries_are_not_counted(support_bot, alice):
    checks(support_bot, 1)
    overview_rollup(now=timezone.now() + LATER)
    # agent_create wrote a configuration entry; only the check is counted
    assert sum(hourly().values()) == 1


def test_token_usage_is_counted_per_day_model_and_agent_with_its_cost(support_bot):
    usage(support_bot, "gpt-4o", "0.25")
    usage(support_bot, "gpt-4o", "0.50")
    usage(support_bot, "mystery-llm", "0")

    overview_rollup(now=timezone.now() + LATER)
    overview_rollup(now=timezone.now() + LATER)

    counted = {t.model: (t.calls, t.cost_usd, t.prompt_tokens) for t in TokenCostDay.objects.all()}
    assert counted == {
        "gpt-4o": (2, Decimal("0.75"), 200),
        "mystery-llm": (1, Decimal("0"), 100),
    }


def test_hourly_counts_older_than_three_days_are_dropped_and_daily_ones_kept(support_bot):
    checks(support_bot, 2, at=timezone.now() - timedelta(days=4))
    checks(support_bot, 1)

    overview_rollup(now=timezone.now() + LATER)

    assert sum(hourly().values()) == 1
    assert sum(CheckCountDay.objects.values_list("count", flat=True)) == 3


def test_beat_runs_the_roll_up_task_at_the_configured_interval(support_bot, settings):
    from wardenproject.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["insights-rollup"]
    assert entry == {
        "task": "insights.rollup",
        "schedule": settings.WARDEN_OVERVIEW_ROLLUP_INTERVAL,
    }
    app.loader.import_default_modules()
    task = app.tasks["insights.rollup"]

    task()

    assert RollupMark.objects.get().caught_up_to is not None
