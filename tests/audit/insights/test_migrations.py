"""Migration 0010 counts the usage the roll-up had already counted (up to its watermark) into
the new hourly and per-session tables, so the token usage page shows the same figures the
moment it starts reading them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from freezegun import freeze_time

from audit.insights.models import TokenCostHour, TokenSessionDay, TokenSessionHour
from audit.insights.selectors import OverviewFilters, token_usage_report
from tests.audit.insights.conftest import usage
from tests.audit.insights.test_token_rollup import NOW, raw_report, shown

BEFORE = [("audit", "0009_overview_rollup")]
AFTER = [("audit", "0010_token_usage_rollup")]


def migrate(targets):
    """Migrate audit to ``targets`` and every other app to its latest migration."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    apps = {app for app, _ in targets}
    targets = [n for n in executor.loader.graph.leaf_nodes() if n[0] not in apps] + list(targets)
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture
def at_0009(transactional_db):
    apps = migrate(BEFORE)
    yield apps
    migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


def test_usage_counted_before_the_migration_is_in_the_new_tables(at_0009, org_a, support_bot):
    written = []
    for hours, session in ((24 * 40, "old"), (24 * 10, "s-1"), (50, "s-1"), (2, "s-2"), (1, "")):
        with freeze_time(NOW - timedelta(hours=hours)):
            written.append(usage(support_bot, "gpt-4o", "0.25", session_id=session))
    at_0009.get_model("audit", "RollupMark").objects.create(
        pk=1, last_usage_id=written[-1].pk, usage_caught_up_to=NOW - timedelta(minutes=5)
    )
    with freeze_time(NOW - timedelta(minutes=3)):  # above the watermark: the roll-up's to count
        usage(support_bot, "gpt-4o", "0.50", session_id="s-2")

    with freeze_time(NOW):
        migrate(AFTER)

    assert sorted(TokenCostHour.objects.values_list("calls", flat=True)) == [1, 1, 1]
    assert sorted(TokenSessionHour.objects.values_list("session_id", "calls")) == [
        ("s-1", 1),
        ("s-2", 1),
    ]
    assert sorted(TokenSessionDay.objects.values_list("session_id", "calls")) == [
        ("s-1", 1),
        ("s-1", 1),
        ("s-2", 1),
    ]
    day = token_usage_report(organization=org_a, filters=OverviewFilters(), now=NOW)
    assert shown(day, org_a) == raw_report(org_a, OverviewFilters())
    month = OverviewFilters(period="30d")
    report = token_usage_report(organization=org_a, filters=month, now=NOW)
    assert report["by_session"] == raw_report(org_a, month)["by_session"]
