"""What the overview and the token usage page read: rolled-up counts plus the tail above the
watermark, the filters, pending requests, percentiles of time to decision, reviewers and
token cost with unpriced models named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.http import Http404
from freezegun import freeze_time

from agents.models import ModelPrice
from audit.insights.rollup import overview_rollup
from audit.insights.selectors import (
    OverviewFilters,
    _histogram_percentile,
    _percentile,
    overview_filters_parse,
    overview_read,
    token_usage_report,
)
from tests.audit.insights.conftest import approval, checks, usage
from wardenproject.errors import ValidationFailed

pytestmark = pytest.mark.django_db

# Far after everything the fixtures write at the real time (agents' configuration entries),
# so a roll-up "at NOW" has all of it behind its lag; a constant, as no test module may read
# the clock at import (tests/core/test_suite_clock.py).
NOW = datetime(2099, 1, 2, 12, 30, tzinfo=UTC)
ROLLED_UP_AT = NOW + timedelta(hours=1)


def read(org, **filters) -> dict:
    return overview_read(organization=org, filters=OverviewFilters(**filters), now=NOW)


@pytest.fixture
def history(support_bot, billing_bot):
    """Alice's agents' checks over the last days, rolled up, then a few newer ones."""
    checks(support_bot, 4, at=NOW - timedelta(hours=1, minutes=10))  # 11:20
    checks(support_bot, 2, decision="requires_approval", at=NOW - timedelta(hours=1))
    checks(
        billing_bot,
        3,
        action="invoice.send",
        decision="block",
        environment="test",
        at=NOW - timedelta(hours=3),
    )
    checks(billing_bot, 5, action="invoice.send", at=NOW - timedelta(days=3))
    checks(support_bot, 7, at=NOW - timedelta(days=20))
    overview_rollup(now=ROLLED_UP_AT)
    return support_bot, billing_bot


def test_the_last_24_hours_are_counted_per_hour_and_stacked_by_decision(org_a, history):
    data = read(org_a, period="24h")

    assert len(data["labels"]) == 24 and data["labels"][-1] == "12:00"
    assert data["series"]["allow"][-2] == 4  # 11:00
    assert data["series"]["requires_approval"][-2] == 2
    assert data["series"]["block"][-4] == 3  # 09:00
    assert data["totals"] == {"checks": 9, "allow": 4, "block": 3, "requires_approval": 2}


@pytest.mark.parametrize(("period", "checks_counted"), [("7d", 14), ("30d", 21)])
def test_longer_periods_are_counted_per_day(org_a, history, period, checks_counted):
    data = read(org_a, period=period)

    assert len(data["labels"]) == int(period[:-1])
    assert data["totals"]["checks"] == checks_counted


def test_checks_not_yet_rolled_up_are_added_from_the_log(org_a, history, support_bot):
    # The fixture's roll-up caught up past NOW; pretend it ran a minute ago.
    from audit.insights.models import RollupMark

    RollupMark.objects.update(caught_up_to=NOW - timedelta(minutes=1))
    checks(support_bot, 6, decision="block", at=NOW - timedelta(seconds=30))

    data = read(org_a, period="24h")

    assert data["totals"]["block"] == 9
    assert data["series"]["block"][-1] == 6
    assert data["behind"] is False


def test_the_tail_is_bounded_and_a_roll_up_far_behind_is_said(org_a, support_bot):
    from audit.insights.models import RollupMark

    overview_rollup(now=NOW - timedelta(hours=5))  # caught up to 5 hours ago, then stopped
    RollupMark.objects.update(caught_up_to=NOW - timedelta(hours=5))
    checks(support_bot, 2, at=NOW - timedelta(hours=2))  # above the watermark, too old
    checks(support_bot, 3, at=NOW - timedelta(minutes=10))

    data = read(org_a, period="24h")

    assert data["totals"]["checks"] == 3
    assert data["behind"] is True


def test_the_environment_and_agent_filters_narrow_every_count(org_a, history, approvals):
    _, billing_bot = history

    assert read(org_a, period="24h", environment="test")["totals"]["checks"] == 3
    assert read(org_a, period="24h", environment="live")["totals"]["checks"] == 6
    by_agent = read(org_a, period="30d", agent=billing_bot)
    assert by_agent["totals"]["checks"] == 8
    assert [a["name"] for a in by_agent["top_agents_by_volume"]] == ["billing-bot"]
    assert by_agent["pending"]["count"] == 0
    assert by_agent["time_to_decision"]["decided"] == 0


def test_top_actions_and_agents_rank_by_volume_and_by_holds(org_a, history):
    data = read(org_a, period="30d")

    assert [(a["name"], a["checks"], a["holds"]) for a in data["top_actions_by_volume"]] == [
        ("stripe.refund", 13, 2),
        ("invoice.send", 8, 0),
    ]
    assert [a["name"] for a in data["top_actions_by_holds"]] == ["stripe.refund"]
    assert [a["name"] for a in data["top_agents_by_volume"]] == ["support-bot", "billing-bot"]
    assert [a["name"] for a in data["top_agents_by_holds"]] == ["support-bot"]


def test_another_organisations_checks_are_never_counted(org_a, org_c, history, charlie_bot):
    checks(charlie_bot, 50, at=NOW - timedelta(hours=1))
    overview_rollup(now=ROLLED_UP_AT)

    assert read(org_a, period="24h")["totals"]["checks"] == 9
    assert read(org_c, period="24h")["totals"]["checks"] == 50


@pytest.fixture
def approvals(support_bot):
    """Decided after 10, 20, ... 100 seconds (by Alice, then Bob), two still pending."""
    for i in range(1, 11):
        approval(
            support_bot,
            requested_at=NOW - timedelta(hours=2),
            decided_after=timedelta(seconds=10 * i),
            reviewer="alice@example.com" if i <= 7 else "bob@example.com",
            status="approved" if i % 2 else "denied",
        )
    approval(support_bot, requested_at=NOW - timedelta(days=40), decided_after=timedelta(days=1))
    approval(support_bot, requested_at=NOW - timedelta(minutes=42))
    approval(support_bot, requested_at=NOW - timedelta(minutes=3))


def test_pending_now_counts_waiting_requests_and_the_oldest_age(org_a, approvals):
    pending = read(org_a, period="24h")["pending"]

    assert pending["count"] == 2
    assert pending["oldest_age_seconds"] == 42 * 60


def test_median_and_p90_time_to_decision_are_over_the_period(org_a, approvals):
    times = read(org_a, period="24h")["time_to_decision"]

    assert times["decided"] == 10
    assert times["median_seconds"] == pytest.approx(55.0)
    assert times["p90_seconds"] == pytest.approx(91.0)


def test_approvals_are_counted_by_reviewer(org_a, approvals):
    reviewers = read(org_a, period="24h")["reviewers"]

    assert reviewers == [
        {"reviewer": "alice@example.com", "approved": 4, "denied": 3, "total": 7},
        {"reviewer": "bob@example.com", "approved": 1, "denied": 2, "total": 3},
    ]


def test_percentile_interpolates_like_postgresql():
    assert _percentile([1, 2, 3, 4], 0.5) == 2.5
    assert _percentile([10], 0.9) == 10
    assert _percentile([], 0.5) is None


def test_token_cost_by_model_and_day_names_models_without_a_price(org_a, support_bot):
    ModelPrice.objects.update_or_create(
        model="gpt-4o",
        defaults={"prompt_usd_per_million": 1, "completion_usd_per_million": 1},
    )
    with freeze_time(NOW - timedelta(days=1)):
        usage(support_bot, "gpt-4o", "0.25")
    overview_rollup(now=NOW)
    with freeze_time(NOW - timedelta(minutes=1)):
        usage(support_bot, "gpt-4o", "0.50")  # the tail: not rolled up yet
        usage(support_bot, "mystery-llm", "0")

    tokens = read(org_a, period="7d")["tokens"]

    assert tokens["total_cost_usd"] == pytest.approx(0.75)
    assert tokens["unpriced_models"] == ["mystery-llm"]
    gpt = tokens["models"][0]
    assert (gpt["model"], gpt["calls"], gpt["priced"]) == ("gpt-4o", 2, True)
    assert gpt["per_day"][-2:] == [0.25, 0.5]


def test_the_token_usage_report_groups_by_model_day_agent_and_session(org_a, support_bot):
    with freeze_time(NOW - timedelta(hours=1)):
        usage(support_bot, "gpt-4o", "0.25", session_id="s-1")
        usage(support_bot, "gpt-4o", "0.50", session_id="s-2")
        usage(support_bot, "mystery-llm", "0", session_id="s-2")
        usage(None, "gpt-4o", "1.00", organization=org_a)
    overview_rollup(now=NOW)

    report = token_usage_report(organization=org_a, filters=OverviewFilters(), now=NOW)

    assert [(r["model"], r["calls"], r["priced"]) for r in report["by_model"]] == [
        ("gpt-4o", 3, "gpt-4o" in set(ModelPrice.objects.values_list("model", flat=True))),
        ("mystery-llm", 1, False),
    ]
    assert report["unpriced_models"][-1] == "mystery-llm"
    assert [r["session_id"] for r in report["by_session"]] == ["s-2", "s-1"]
    assert {r["agent__name"] for r in report["by_agent"]} == {"support-bot", None}
    assert report["totals"]["calls"] == 4


@pytest.mark.parametrize(
    ("params", "field"), [({"period": "1y"}, "period"), ({"environment": "prod"}, "environment")]
)
def test_a_bad_filter_names_its_field(org_a, params, field):
    with pytest.raises(ValidationFailed) as raised:
        overview_filters_parse(organization=org_a, params=params)
    assert raised.value.field == field


def test_an_agent_filter_naming_another_organisations_agent_is_not_found(org_a, charlie_bot):
    with pytest.raises(Http404):
        overview_filters_parse(organization=org_a, params={"agent": charlie_bot.public_id})


@pytest.mark.parametrize("period", ["7d", "30d"])
def test_over_days_time_to_decision_comes_from_the_roll_up_within_ten_percent(
    org_a, approvals, period
):
    overview_rollup(now=ROLLED_UP_AT)
    overview_rollup(now=ROLLED_UP_AT)  # again: nothing is counted twice

    data = read(org_a, period=period)
    times = data["time_to_decision"]

    assert times["decided"] == 10
    assert times["approximate"] is True
    assert times["median_seconds"] == pytest.approx(55.0, rel=0.1)
    assert times["p90_seconds"] == pytest.approx(91.0, rel=0.1)
    assert data["reviewers"] == [
        {"reviewer": "alice@example.com", "approved": 4, "denied": 3, "total": 7},
        {"reviewer": "bob@example.com", "approved": 1, "denied": 2, "total": 3},
    ]


def test_decisions_since_the_last_roll_up_are_added_from_the_requests(org_a, approvals):
    # The roll-up ran when the first five (decided after 10 to 50 s) were decided.
    overview_rollup(now=NOW - timedelta(hours=2, seconds=-55), lag_seconds=0)
    from audit.insights.models import DecisionWait

    assert sum(DecisionWait.objects.values_list("count", flat=True)) == 5 + 1  # + 40 days ago

    data = read(org_a, period="7d")

    assert data["time_to_decision"]["decided"] == 10
    assert sum(r["total"] for r in data["reviewers"]) == 10


def test_a_wait_histogram_quantile_interpolates_inside_its_bucket():
    from audit.insights.rollup import wait_bucket, wait_bucket_bounds

    histogram = {wait_bucket(s): 0 for s in (5, 50)}
    histogram[wait_bucket(5)] += 1
    histogram[wait_bucket(50)] += 3
    low, high = wait_bucket_bounds(wait_bucket(50))

    assert low <= 50 < high
    assert low <= _histogram_percentile(histogram, 0.5) <= high
    assert _histogram_percentile({}, 0.5) is None


def test_over_days_the_token_usage_report_reads_the_roll_up_and_the_rows_since(org_a, support_bot):
    with freeze_time(NOW - timedelta(days=2)):
        usage(support_bot, "gpt-4o", "0.25", session_id="old")
    overview_rollup(now=NOW - timedelta(days=1))
    with freeze_time(NOW - timedelta(minutes=1)):
        usage(support_bot, "gpt-4o", "0.50", session_id="new")
        usage(support_bot, "mystery-llm", "0", session_id="new")

    report = token_usage_report(organization=org_a, filters=OverviewFilters(period="7d"), now=NOW)

    assert [(r["model"], r["calls"], r["cost_usd"]) for r in report["by_model"]] == [
        ("gpt-4o", 2, Decimal("0.75")),
        ("mystery-llm", 1, Decimal("0")),
    ]
    assert [(str(r["day"]), r["calls"]) for r in report["by_day"]] == [
        (str(NOW.date()), 2),
        (str((NOW - timedelta(days=2)).date()), 1),
    ]
    assert report["by_agent"][0]["agent__name"] == "support-bot"
    assert report["totals"]["total_tokens"] == 450
    assert (report["unpriced_models"], report["unpriced_calls"]) == (["mystery-llm"], 1)
    assert {r["session_id"] for r in report["by_session"]} == {"old", "new"}
