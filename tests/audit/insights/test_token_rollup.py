"""The token usage page reads the roll-up (per hour and per day, by model and by session) plus
the rows above its watermark, and shows exactly what a straight aggregation of the usage rows
gives: for every period and filter, with rows both rolled up and in the tail, however often
the roll-up runs, and never another organisation's usage."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http import HTTPStatus
from typing import Any

import pytest
from django.db import connection
from django.db.models import Count, Sum
from django.db.models.functions import TruncDay
from django.test import Client
from freezegun import freeze_time

from agents.models import Agent, TokenUsage
from audit.insights.models import RollupMark, TokenCostHour, TokenSessionDay, TokenSessionHour
from audit.insights.rollup import overview_rollup
from audit.insights.selectors import (
    SESSIONS_SHOWN,
    OverviewFilters,
    _scoped,
    _window,
    token_usage_report,
)
from tests.audit.insights.conftest import usage

pytestmark = pytest.mark.django_db

# Constants, as no test module may read the clock at import (tests/core/test_suite_clock.py).
NOW = datetime(2099, 1, 2, 12, 30, tzinfo=UTC)
ROLLED_UP_AT = NOW - timedelta(minutes=10)  # counts what was written before NOW - 11 min
# When the history's rows were written (before the roll-up), hours before NOW: older than
# 30 days, within 30 days, within 7 days, within 72 hours, within 24 hours, the hour just
# before the 24-hour window starts, and a row still within the roll-up's lag.
HISTORY = [24 * 40, 24 * 20, 24 * 5, 50, 23.9, 23.5, 12, 2, 10.5 / 60]
TAIL = [7 / 60, 5 / 60, 1 / 60]  # written after the roll-up ran


def raw_report(organization: Any, filters: OverviewFilters) -> dict[str, Any]:
    """What the page showed when it aggregated the usage rows of the window itself."""
    rows = _scoped(
        TokenUsage.objects.filter(
            organization=organization, created_at__gte=_window(filters.period, NOW).start
        ),
        filters,
    )
    sums = {
        "calls": Count("id"),
        "prompt_tokens": Sum("prompt_tokens"),
        "completion_tokens": Sum("completion_tokens"),
        "cost_usd": Sum("cost_usd"),
    }

    def grouped(field: str) -> dict[Any, tuple]:
        return {
            r[field]: (r["calls"], r["prompt_tokens"], r["completion_tokens"], r["cost_usd"])
            for r in rows.values(field).annotate(**sums).order_by()
        }

    by_day = {
        day.astimezone(UTC).date() if isinstance(day, datetime) else day: counted
        for day, counted in grouped_by_day(rows, sums).items()
    }
    sessions = list(
        rows.exclude(session_id="")
        .values("session_id")
        .annotate(**sums, total_tokens=Sum("total_tokens"))
        .order_by("-cost_usd", "session_id")[:SESSIONS_SHOWN]
    )
    return {
        "by_model": grouped("model"),
        "by_agent": grouped("agent_id"),
        "by_day": by_day,
        "by_session": sessions,
        "calls": rows.count(),
    }


def grouped_by_day(rows: Any, sums: dict[str, Any]) -> dict[Any, tuple]:
    return {
        r["day"]: (r["calls"], r["prompt_tokens"], r["completion_tokens"], r["cost_usd"])
        for r in rows.annotate(day=TruncDay("created_at", tzinfo=UTC))
        .values("day")
        .annotate(**sums)
        .order_by()
    }


def shown(report: dict[str, Any], organization: Any) -> dict[str, Any]:
    """The report in the shape of ``raw_report``."""

    def figures(r: dict[str, Any]) -> tuple:
        return (r["calls"], r["prompt_tokens"], r["completion_tokens"], r["cost_usd"])

    agents = dict(Agent.objects.filter(organization=organization).values_list("public_id", "pk"))
    return {
        "by_model": {r["model"]: figures(r) for r in report["by_model"]},
        "by_agent": {agents.get(r["agent__public_id"]): figures(r) for r in report["by_agent"]},
        "by_day": {r["day"]: figures(r) for r in report["by_day"]},
        "by_session": report["by_session"],
        "calls": report["totals"]["calls"],
    }


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def write(at: datetime, agent: Agent | None, n: int, **fields: Any) -> None:
    with freeze_time(at):
        usage(agent, cost=str(Decimal("0.0013") * n + Decimal(n) / 10_000), **fields)


@pytest.fixture
def history(support_bot, billing_bot, org_a):
    """Alice's usage over 40 days, rolled up at ROLLED_UP_AT, then newer rows in the tail: two
    agents and none, both environments, several models, sessions spanning the periods (some
    continued in the tail, one of them the last of 20 in the ranking until then, one new there)
    and calls without a session. Every cost differs."""
    n = 0
    for hours in HISTORY:
        at = NOW - timedelta(hours=hours)
        for agent, environment, model, session in (
            (support_bot, "live", "gpt-4o", "s-long"),
            (support_bot, "test", "mystery-llm", f"s-{hours}"),
            (billing_bot, "live", "gpt-4o", "s-billing"),
            (billing_bot, "live", "claude", ""),
        ):
            n += 1
            write(at, agent, n, model=model, environment=environment, session_id=session)
        n += 1
        write(at, None, n, model="gpt-4o", organization=org_a, session_id="s-keyless")
        if hours == 2:  # many short sessions, the first the cheapest
            for i in range(20):
                n += 1
                write(at, support_bot, n, model="gpt-4o", session_id=f"many-{i:02}")
    overview_rollup(now=ROLLED_UP_AT)
    for hours in TAIL:
        at = NOW - timedelta(hours=hours)
        for agent, session in (
            (support_bot, "s-long"),
            (billing_bot, "s-new"),
            (support_bot, "many-00"),
        ):
            n += 1
            write(at, agent, n * 7, model="gpt-4o", environment="live", session_id=session)
    return support_bot, billing_bot


def filters_of(name: str, support_bot: Agent, period: str) -> OverviewFilters:
    return {
        "all": OverviewFilters(period=period),
        "live": OverviewFilters(period=period, environment="live"),
        "test": OverviewFilters(period=period, environment="test"),
        "one agent": OverviewFilters(period=period, agent=support_bot),
        "one agent, live": OverviewFilters(period=period, environment="live", agent=support_bot),
    }[name]


@pytest.mark.parametrize("period", ["24h", "7d", "30d"])
@pytest.mark.parametrize("scope", ["all", "live", "test", "one agent", "one agent, live"])
def test_the_report_equals_a_straight_aggregation_of_the_usage_rows(org_a, history, period, scope):
    filters = filters_of(scope, history[0], period)
    report = token_usage_report(organization=org_a, filters=filters, now=NOW)

    assert shown(report, org_a) == raw_report(org_a, filters)
    assert report["behind"] is False


def test_the_figures_come_from_the_roll_up_and_the_tail(org_a, history):
    mark = RollupMark.objects.get()
    above = TokenUsage.objects.filter(id__gt=mark.last_usage_id)

    assert TokenUsage.objects.filter(id__lte=mark.last_usage_id).count() > 0
    # the tail holds the rows written after the run and the one still within its lag
    assert above.count() == 3 * len(TAIL) + 5
    assert TokenSessionHour.objects.filter(session_id="s-long").exists()


@pytest.mark.parametrize("period", ["24h", "30d"])
def test_a_session_of_the_tail_takes_its_place_among_the_most_costly(
    org_a, history, period, monkeypatch
):
    monkeypatch.setattr("audit.insights.selectors.SESSIONS_SHOWN", 3)
    monkeypatch.setattr(f"{__name__}.SESSIONS_SHOWN", 3)
    filters = OverviewFilters(period=period)

    report = token_usage_report(organization=org_a, filters=filters, now=NOW)

    assert report["by_session"] == raw_report(org_a, filters)["by_session"]
    shown_sessions = [r["session_id"] for r in report["by_session"]]
    assert "s-new" in shown_sessions  # only in the tail
    assert "many-00" in shown_sessions  # the cheapest when rolled up, costly in the tail


def rolled_up_figures() -> dict[str, Any]:
    return {
        "hours": sorted(
            TokenCostHour.objects.values_list("hour", "agent_id", "model", "calls", "cost_usd"),
            key=repr,
        ),
        "sessions": sorted(
            TokenSessionDay.objects.values_list("day", "session_id", "calls", "total_tokens")
        ),
        "session hours": sorted(
            TokenSessionHour.objects.values_list("hour", "session_id", "calls")
        ),
    }


def test_rolling_up_twice_counts_every_row_once(org_a, history):
    overview_rollup(now=NOW + timedelta(minutes=5))
    once = rolled_up_figures()

    assert overview_rollup(now=NOW + timedelta(minutes=5)) == 0
    assert rolled_up_figures() == once
    mark = RollupMark.objects.get()
    assert mark.last_usage_id == TokenUsage.objects.latest("id").id
    counted = TokenSessionDay.objects.filter(day__gte=(NOW - timedelta(days=29)).date())
    assert sum(counted.values_list("calls", flat=True)) == (
        TokenUsage.objects.filter(created_at__gte=datetime(2098, 12, 4, tzinfo=UTC))
        .exclude(session_id="")
        .count()
    )
    for period in ("24h", "7d", "30d"):
        filters = OverviewFilters(period=period)
        report = token_usage_report(organization=org_a, filters=filters, now=NOW)
        assert shown(report, org_a) == raw_report(org_a, filters)


def test_hourly_usage_older_than_three_days_is_dropped_and_daily_usage_kept(org_a, history):
    oldest_hour = NOW - timedelta(hours=72)

    assert not TokenCostHour.objects.filter(hour__lt=oldest_hour - timedelta(hours=1)).exists()
    assert not TokenSessionHour.objects.filter(hour__lt=oldest_hour - timedelta(hours=1)).exists()
    assert TokenSessionDay.objects.filter(day=(NOW - timedelta(days=40)).date()).exists()


def test_another_organisations_usage_never_appears(org_a, org_c, support_bot, charlie_bot):
    def both(at: datetime, n: int) -> None:
        write(at, support_bot, n, model="gpt-4o", session_id="shared")
        write(at, charlie_bot, n * 5, model="gpt-4o", session_id="shared")
        write(at, charlie_bot, n * 9, model="charlie-llm", session_id="charlie-only")

    for n, hours in enumerate((24 * 40, 24 * 3, 30, 2, 0.3), start=1):
        both(NOW - timedelta(hours=hours), n)
    overview_rollup(now=ROLLED_UP_AT)
    both(NOW - timedelta(minutes=5), 10)
    both(NOW - timedelta(minutes=1), 11)

    for period in ("24h", "7d", "30d"):
        filters = OverviewFilters(period=period)
        alice_sees = token_usage_report(organization=org_a, filters=filters, now=NOW)
        charlie_sees = token_usage_report(organization=org_c, filters=filters, now=NOW)
        assert shown(alice_sees, org_a) == raw_report(org_a, filters)
        assert shown(charlie_sees, org_c) == raw_report(org_c, filters)
        assert [r["model"] for r in alice_sees["by_model"]] == ["gpt-4o"]
        assert [r["session_id"] for r in alice_sees["by_session"]] == ["shared"]
        assert {r["session_id"] for r in charlie_sees["by_session"]} == {"shared", "charlie-only"}


def test_a_deleted_agents_usage_stays_without_its_agent_as_on_the_usage_rows(org_a, history):
    history[1].delete()

    for period in ("24h", "30d"):
        filters = OverviewFilters(period=period)
        report = token_usage_report(organization=org_a, filters=filters, now=NOW)
        assert shown(report, org_a) == raw_report(org_a, filters)


def test_before_the_first_roll_up_the_page_says_only_the_last_minutes_are_counted(
    org_a, support_bot, alice
):
    write(NOW - timedelta(hours=2), support_bot, 1, model="gpt-4o")
    write(NOW - timedelta(minutes=5), support_bot, 2, model="gpt-4o")

    report = token_usage_report(organization=org_a, filters=OverviewFilters(), now=NOW)

    assert report["totals"]["calls"] == 1
    assert report["behind"] is True
    with freeze_time(NOW):
        html = client_for(alice).get("/insights/tokens/").content.decode()
    assert "has not run yet: only token usage since" in html


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_roll_ups_count_every_row_once(org_a, support_bot, billing_bot):
    for hours in (30, 5, 1):
        for i in range(20):
            write(
                NOW - timedelta(hours=hours, minutes=i),
                support_bot if i % 2 else billing_bot,
                i + 1,
                model="gpt-4o",
                session_id=f"s-{i % 3}",
            )
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def roll_up() -> None:
        try:
            barrier.wait()
            overview_rollup(now=NOW)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=roll_up) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors, errors
    assert sum(TokenSessionDay.objects.values_list("calls", flat=True)) == 60
    assert sum(TokenCostHour.objects.values_list("calls", flat=True)) == 60
    for period in ("24h", "7d"):
        filters = OverviewFilters(period=period)
        report = token_usage_report(organization=org_a, filters=filters, now=NOW)
        assert shown(report, org_a) == raw_report(org_a, filters)


def test_the_page_lists_the_most_costly_sessions(alice, org_a, history):
    with freeze_time(NOW):
        response = client_for(alice).get("/insights/tokens/?period=30d")

    assert response.status_code == HTTPStatus.OK
    assert "s-long" in response.content.decode()
