"""Running totals through the HTTP API: counters, not scans; a budget is a reservation that
holds under concurrency; per environment, per `when`, per key; approvals; rebuilding."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from decimal import Decimal
from http import HTTPStatus
from typing import Any

import pytest
from django.core.management import call_command
from django.db import OperationalError, connection
from django.db.models import F
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from freezegun import freeze_time

from agents.models import LimitBucket, LimitCounter
from agents.policy import BUCKETS_PER_WINDOW
from approvals.services import approval_decide
from audit.models import AuditEntry
from tests.agents.conftest import add_rule

pytestmark = pytest.mark.django_db


def check(
    client: Client, key: str, arguments: dict[str, Any], action: str = "stripe.refund", **extra: Any
) -> dict:
    response = client.post(
        "/api/v1/check",
        data=json.dumps({"action": action, "arguments": arguments, **extra}),
        content_type="application/json",
        HTTP_X_API_KEY=key,
    )
    assert response.status_code == HTTPStatus.OK, response.content
    return response.json()


def refund_budget(agent: Any, **limit: Any) -> Any:
    return add_rule(
        agent,
        name="daily refunds",
        action="stripe.refund",
        effect="block",
        limit={"sum": "amount", "over": 2000, "per": "1d", **limit},
    )


def counted(rule: Any) -> Decimal:
    """What the rule's budgets hold: their buckets, added up."""
    buckets = LimitBucket.objects.filter(counter__rule=rule).values_list("total", flat=True)
    return sum(buckets, Decimal(0))


def buckets_of(rule: Any) -> dict[str, set[tuple[int, int, Decimal]]]:
    return {
        counter.key: set(counter.buckets.values_list("start", "count", "total"))
        for counter in LimitCounter.objects.filter(rule=rule)
    }


# --- A reservation that holds under concurrency ----------------------------------------------


def race(key: str, calls: list[dict[str, Any]]) -> list[str]:
    """Send the calls at once from as many threads; the decisions, in any order."""
    barrier = threading.Barrier(len(calls))
    decisions: list[str] = []
    errors: list[BaseException] = []

    def send(arguments: dict[str, Any]) -> None:
        try:
            barrier.wait()
            decisions.append(check(Client(), key, arguments)["decision"])
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return decisions


@pytest.mark.django_db(transaction=True)
def test_racing_checks_for_the_last_of_a_budget_allow_exactly_what_fits(keys, support_bot):
    rule = refund_budget(support_bot)
    decisions = race(keys.live, [{"amount": 100}] * 50)
    assert decisions.count("allow") == 20
    assert decisions.count("block") == 30
    # Nothing counted that was not recorded, nothing recorded missing from the count.
    allowed = AuditEntry.objects.filter(kind="check", decision="allow")
    assert sum(Decimal(str(e.arguments["amount"])) for e in allowed) == counted(rule) == 2000


@pytest.mark.django_db(transaction=True)
def test_racing_checks_against_a_count_limit_allow_exactly_the_count(keys, support_bot):
    add_rule(
        support_bot,
        name="bulk mail",
        action="stripe.refund",
        effect="requires_approval",
        limit={"count": 7, "per": "1h"},
    )
    decisions = race(keys.live, [{"amount": 1}] * 24)
    assert (decisions.count("allow"), decisions.count("requires_approval")) == (7, 17)


@pytest.mark.postgres  # prepared statements: PostgreSQL only
def test_a_limited_checks_read_and_spend_are_prepared_statements(client, keys, support_bot):
    """PostgreSQL parses and plans them once per connection (most of their cost otherwise)."""
    refund_budget(support_bot)
    for _ in range(3):
        assert check(client, keys.live, {"amount": 10})["decision"] == "allow"
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    counters = LimitCounter._meta.db_table
    assert any(s.startswith("WITH w(key, since)") and counters in s for s in prepared)
    assert any(s.startswith("WITH expected(key, version)") for s in prepared)
    assert counted(LimitCounter.objects.get().rule) == 30


# --- Counters, not scans ---------------------------------------------------------------------


def test_a_limited_check_never_reads_the_audit_log(client, keys, support_bot):
    refund_budget(support_bot)
    add_rule(
        support_bot,
        name="hourly refunds",
        action="stripe.refund",
        effect="requires_approval",
        limit={"count": 100, "per": "1h"},
    )
    for _ in range(3):
        check(client, keys.live, {"amount": 10})
    with CaptureQueriesContext(connection) as queries:
        assert check(client, keys.live, {"amount": 10})["decision"] == "allow"
    audit_table = AuditEntry._meta.db_table
    reads = [q["sql"] for q in queries if audit_table in q["sql"] and "INSERT" not in q["sql"]]
    assert reads == []


def _keeps_one_window(client: Client, keys: Any, support_bot: Any) -> None:
    rule = add_rule(
        support_bot,
        name="hourly",
        action="stripe.refund",
        effect="block",
        limit={"count": 1000, "per": "1h"},
    )
    start = timezone.now()
    for minute in range(0, 180, 2):  # three hours of calls
        with freeze_time(start + timedelta(minutes=minute)):
            check(client, keys.live, {"amount": 1})
    (counter,) = LimitCounter.objects.filter(rule=rule)
    assert counter.buckets.count() <= BUCKETS_PER_WINDOW + 1
    assert LimitBucket.objects.get(counter=counter, start=counter.buckets.latest("start").start)


def test_a_counter_keeps_at_most_one_window_of_buckets(client, keys, support_bot):
    _keeps_one_window(client, keys, support_bot)


@pytest.mark.django_db(transaction=True)
def test_a_counter_keeps_at_most_one_window_of_buckets_outside_a_transaction(keys, support_bot):
    _keeps_one_window(Client(), keys, support_bot)


def test_calls_leave_the_window_as_it_slides(client, keys, support_bot):
    refund_budget(support_bot, over=100)
    start = timezone.now()
    with freeze_time(start):
        assert check(client, keys.live, {"amount": 100})["decision"] == "allow"
        assert check(client, keys.live, {"amount": 1})["decision"] == "block"
    with freeze_time(start + timedelta(hours=23)):
        assert check(client, keys.live, {"amount": 1})["decision"] == "block"
    # A window is exact to one bucket (1d / 60 = 24 min): a day and one bucket later, it is out.
    with freeze_time(start + timedelta(days=1, minutes=25)):
        assert check(client, keys.live, {"amount": 100})["decision"] == "allow"


# --- Whose budget ----------------------------------------------------------------------------


def test_test_traffic_never_spends_the_live_budget(client, keys, support_bot):
    refund_budget(support_bot, over=100)
    assert check(client, keys.test, {"amount": 100})["decision"] == "allow"
    assert check(client, keys.test, {"amount": 1})["decision"] == "block"
    assert check(client, keys.live, {"amount": 100})["decision"] == "allow"


def test_a_limit_counts_and_limits_only_the_calls_its_when_holds_for(client, keys, support_bot):
    add_rule(
        support_bot,
        name="euro refunds",
        action="stripe.refund",
        effect="block",
        when=[{"field": "currency", "op": "eq", "value": "EUR"}],
        limit={"sum": "amount", "over": 100, "per": "1d"},
    )
    assert check(client, keys.live, {"amount": 5000, "currency": "USD"})["decision"] == "allow"
    assert check(client, keys.live, {"amount": 100, "currency": "EUR"})["decision"] == "allow"
    assert check(client, keys.live, {"amount": 1, "currency": "EUR"})["decision"] == "block"
    assert check(client, keys.live, {"amount": 1, "currency": "USD"})["decision"] == "allow"


def test_a_keyed_limit_keeps_one_budget_per_customer(client, keys, support_bot):
    refund_budget(support_bot, over=500, by="customer_id")
    assert check(client, keys.live, {"amount": 500, "customer_id": "cus_A"})["decision"] == "allow"
    # Case and spacing of the key do not open a fresh budget.
    assert check(client, keys.live, {"amount": 1, "customer_id": "CUS_a "})["decision"] == "block"
    assert check(client, keys.live, {"amount": 500, "customer_id": "cus_B"})["decision"] == "allow"
    assert LimitCounter.objects.count() == 2


@pytest.mark.parametrize("customer", [None, {"id": "cus_A"}, ["cus_A"]])
def test_a_call_without_a_usable_key_gets_the_rules_effect(client, keys, support_bot, customer):
    refund_budget(support_bot, over=500, by="customer_id")
    arguments = {"amount": 1} if customer is None else {"amount": 1, "customer_id": customer}
    body = check(client, keys.live, arguments)
    assert body["decision"] == "block"
    assert "so the 1d limit of rule 'daily refunds' cannot be checked" in body["reason"]


def test_a_session_limit_keeps_one_budget_per_session(client, keys, support_bot):
    add_rule(
        support_bot,
        name="three per session",
        action="stripe.refund",
        effect="block",
        limit={"count": 3, "per": "1h", "by": "$session"},
    )
    for _ in range(3):
        assert check(client, keys.live, {}, session_id="s-1")["decision"] == "allow"
    assert check(client, keys.live, {}, session_id="s-1")["decision"] == "block"
    assert check(client, keys.live, {}, session_id="s-2")["decision"] == "allow"
    assert check(client, keys.live, {})["decision"] == "block"  # no session: no budget


# --- Approvals -------------------------------------------------------------------------------


def held_budget(agent: Any) -> Any:
    return add_rule(
        agent,
        name="daily refunds",
        action="stripe.refund",
        effect="requires_approval",
        limit={"sum": "amount", "over": 100, "per": "1d"},
    )


def test_a_held_call_counts_when_it_is_approved(client, keys, support_bot, alice):
    rule = held_budget(support_bot)
    held = check(client, keys.live, {"amount": 150})
    assert held["decision"] == "requires_approval"
    assert counted(rule) == 0
    approval_decide(request_or_action_id=held["action_id"], actor_user=alice, approve=True)
    assert counted(rule) == 150
    assert check(client, keys.live, {"amount": 1})["decision"] == "requires_approval"


def test_a_denied_call_never_counts(client, keys, support_bot, alice):
    rule = held_budget(support_bot)
    held = check(client, keys.live, {"amount": 150})
    approval_decide(request_or_action_id=held["action_id"], actor_user=alice, approve=False)
    assert counted(rule) == 0
    assert check(client, keys.live, {"amount": 100})["decision"] == "allow"


# --- Changing a rule, rebuilding -------------------------------------------------------------


def test_changing_the_threshold_keeps_the_history(client, alice, keys, support_bot):
    rule = refund_budget(support_bot, over=100)
    check(client, keys.live, {"amount": 80})
    client.force_login(alice)
    response = client.patch(
        f"/api/v1/agents/{support_bot.public_id}/rules/{rule.public_id}",
        data=json.dumps({"limit": {"sum": "amount", "over": 150, "per": "1d"}}),
        content_type="application/json",
    )
    assert response.status_code == HTTPStatus.OK
    assert check(client, keys.live, {"amount": 80})["decision"] == "block"  # 160 > 150
    assert check(client, keys.live, {"amount": 70})["decision"] == "allow"


def test_a_new_limit_counts_the_window_that_is_already_in_the_log(client, keys, support_bot):
    for amount in (300, 400):
        check(client, keys.live, {"amount": amount})
    rule = refund_budget(support_bot, over=1000)
    assert counted(rule) == 700
    assert check(client, keys.live, {"amount": 301})["decision"] == "block"


def test_changing_the_window_recounts_from_the_log(client, alice, keys, support_bot):
    rule = refund_budget(support_bot, over=1000)
    check(client, keys.live, {"amount": 600})
    client.force_login(alice)
    client.patch(
        f"/api/v1/agents/{support_bot.public_id}/rules/{rule.public_id}",
        data=json.dumps({"limit": {"sum": "amount", "over": 1000, "per": "7d"}}),
        content_type="application/json",
    )
    assert counted(rule) == 600
    assert check(client, keys.live, {"amount": 401})["decision"] == "block"


def test_reimporting_the_same_policy_keeps_the_budgets(client, alice, keys, support_bot):
    refund_budget(support_bot, over=1000)
    check(client, keys.live, {"amount": 900})
    client.force_login(alice)
    document = client.get(f"/api/v1/agents/{support_bot.public_id}/policy").content
    response = client.put(
        f"/api/v1/agents/{support_bot.public_id}/policy",
        data=document,
        content_type="application/yaml",
    )
    assert response.status_code == HTTPStatus.OK
    assert check(client, keys.live, {"amount": 101})["decision"] == "block"


def test_rebuild_counters_recomputes_them_from_the_audit_log(client, keys, support_bot, org_a):
    rule = refund_budget(support_bot, over=1000, by="customer_id")
    for customer, amount in (("a", 600), ("b", 300), ("a", 300)):
        check(client, keys.live, {"amount": amount, "customer_id": customer})
    before = buckets_of(rule)
    LimitCounter.objects.all().delete()
    call_command("warden_policy", "rebuild-counters", "--org", org_a.name, "--agent", "support-bot")
    after = buckets_of(rule)
    assert after == before
    assert check(client, keys.live, {"amount": 101, "customer_id": "A"})["decision"] == "block"
    assert AuditEntry.objects.filter(kind="config", reason__contains="rebuilt").exists()


# --- Outside a test transaction (the check endpoints' own transactions) -----------------------


def _idle(connection_: Any) -> bool:
    """No transaction left open on the connection after a check."""
    if connection_.vendor != "postgresql" or connection_.connection is None:
        return not connection_.in_atomic_block
    from psycopg.pq import TransactionStatus

    return connection_.connection.info.transaction_status == TransactionStatus.IDLE


@pytest.mark.django_db(transaction=True)
def test_every_outcome_of_a_limited_check_leaves_no_transaction_open(keys, support_bot, alice):
    client = Client()
    held_budget(support_bot)
    assert check(client, keys.live, {"amount": 60})["decision"] == "allow"
    assert _idle(connection)
    held = check(client, keys.live, {"amount": 60})
    assert held["decision"] == "requires_approval"
    assert _idle(connection)
    approval_decide(request_or_action_id=held["action_id"], actor_user=alice, approve=True)
    assert check(client, keys.live, {"amount": 1})["decision"] == "requires_approval"
    assert _idle(connection)
    assert AuditEntry.objects.filter(kind="check").count() == 3


@pytest.mark.django_db(transaction=True)
def test_a_retried_limited_check_spends_its_budget_once(keys, support_bot):
    client = Client()
    rule = refund_budget(support_bot, over=100)
    body = {"action": "stripe.refund", "arguments": {"amount": 60}}
    answers = [
        client.post(
            "/api/v1/check",
            data=json.dumps(body),
            content_type="application/json",
            HTTP_X_API_KEY=keys.live,
            HTTP_IDEMPOTENCY_KEY="retry-1",
        ).json()
        for _ in range(2)
    ]
    assert answers[0]["action_id"] == answers[1]["action_id"]
    assert counted(rule) == 60
    assert _idle(connection)


@pytest.mark.django_db(transaction=True)
def test_a_failing_limited_check_spends_nothing_and_leaves_no_transaction(
    keys, support_bot, monkeypatch
):
    client = Client()
    rule = refund_budget(support_bot, over=100)
    from agents import limits

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(limits, "_bucket_start", broken)  # after reading the budgets
    response = client.post(
        "/api/v1/check",
        data=json.dumps({"action": "stripe.refund", "arguments": {"amount": 60}}),
        content_type="application/json",
        HTTP_X_API_KEY=keys.live,
    )
    assert (response.status_code, response.json()["code"]) == (503, "unavailable")
    assert _idle(connection)
    assert counted(rule) == 0
    monkeypatch.undo()
    assert check(client, keys.live, {"amount": 100})["decision"] == "allow"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_statement_failing_in_the_database_rolls_the_reservation_back(
    keys, support_bot, monkeypatch
):
    client = Client(raise_request_exception=False)
    rule = refund_budget(support_bot, over=100)
    from agents import limits

    monkeypatch.setattr(
        limits, "rows_insert_sql", lambda entries: ("INSERT INTO no_such_table VALUES (1)", [])
    )
    response = client.post(
        "/api/v1/check",
        data=json.dumps({"action": "stripe.refund", "arguments": {"amount": 60}}),
        content_type="application/json",
        HTTP_X_API_KEY=keys.live,
    )
    assert (response.status_code, response.json()["code"]) == (500, "error")
    assert _idle(connection)
    assert counted(rule) == 0  # the counters' UPDATE before the failing INSERT rolled back
    monkeypatch.undo()
    assert check(client, keys.live, {"amount": 100})["decision"] == "allow"


# --- A long history is recounted by a task, failing closed meanwhile --------------------------


def test_a_new_limit_on_a_long_history_applies_to_every_call_until_recounted(
    client, keys, support_bot, settings
):
    from agents.tasks import agents_recount_pending

    settings.WARDEN_LIMITS_RECOUNT_INLINE_ROWS = 2
    for amount in (300, 300, 300):
        check(client, keys.live, {"amount": amount})
    rule = refund_budget(support_bot, over=1000)
    rule.refresh_from_db()
    assert rule.counters_pending
    body = check(client, keys.live, {"amount": 1})
    assert body["decision"] == "block"
    assert "is being recounted from the audit log, so its limit applies" in body["reason"]
    assert check(client, keys.live, {"q": 1}, action="kb.search")["decision"] == "allow"
    assert agents_recount_pending() == 1
    rule.refresh_from_db()
    assert not rule.counters_pending
    assert counted(rule) == 900
    assert check(client, keys.live, {"amount": 100})["decision"] == "allow"
    assert check(client, keys.live, {"amount": 1})["decision"] == "block"


def test_a_short_history_is_recounted_at_once(client, keys, support_bot, settings):
    settings.WARDEN_LIMITS_RECOUNT_INLINE_ROWS = 5
    for amount in (300, 300, 300):
        check(client, keys.live, {"amount": amount})
    rule = refund_budget(support_bot, over=1000)
    rule.refresh_from_db()
    assert (rule.counters_pending, counted(rule)) == (False, 900)


def test_rebuild_counters_ends_a_pending_recount(client, keys, support_bot, org_a, settings):
    settings.WARDEN_LIMITS_RECOUNT_INLINE_ROWS = 0
    check(client, keys.live, {"amount": 300})
    rule = refund_budget(support_bot, over=1000)
    rule.refresh_from_db()
    assert rule.counters_pending
    call_command("warden_policy", "rebuild-counters", "--org", org_a.name)
    rule.refresh_from_db()
    assert (rule.counters_pending, counted(rule)) == (False, 300)
    assert check(client, keys.live, {"amount": 700})["decision"] == "allow"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("raced", "decision", "total"),
    # 50 spent, then a racing check spends ``raced`` between this check's read and spend:
    # 40 more fits in 100 after a race of 5, not after one of 15.
    [(5, "allow", 95), (15, "block", 65)],
)
def test_a_check_overtaken_by_a_racing_check_decides_again_on_the_new_totals(
    keys, support_bot, monkeypatch, raced, decision, total
):
    """Between reading a budget and spending it, another check spends it; the check
    decides again on the new total, holding the budget's lock, and the budget is
    contended for a while: the next checks take its lock at once."""
    from agents import limits

    client = Client()
    rule = refund_budget(support_bot, over=100)
    assert check(client, keys.live, {"amount": 50})["decision"] == "allow"
    read = limits._counters_read
    reads: list[bool] = []

    def read_then_race(*args: Any, lock: bool) -> Any:
        found = read(*args, lock=lock)
        reads.append(lock)
        if not lock:  # no one else can change a locked counter
            (counter,) = LimitCounter.objects.filter(rule=rule)  # another check spends
            start = limits._bucket_start(timezone.now(), 86400)
            bucket, _ = LimitBucket.objects.get_or_create(
                counter=counter, start=start, defaults={"count": 0, "total": 0}
            )
            LimitBucket.objects.filter(pk=bucket.pk).update(
                count=F("count") + 1, total=F("total") + raced
            )
            LimitCounter.objects.filter(pk=counter.pk).update(version=F("version") + 1)
        return found

    monkeypatch.setattr(limits, "_counters_read", read_then_race)
    monkeypatch.setattr(limits, "_contended_until", {})
    assert check(client, keys.live, {"amount": 40})["decision"] == decision
    assert counted(rule) == total
    assert reads == [False, True]
    assert _idle(connection)
    check(client, keys.live, {"amount": 1})
    assert reads == [False, True, True]  # contended: locked at once
    monkeypatch.setattr(limits, "CONTENDED_SECONDS", 0.0)
    monkeypatch.setattr(limits, "_contended_until", {})
    check(client, keys.live, {"amount": 1})
    assert reads[3] is False  # no longer contended: optimistic again
