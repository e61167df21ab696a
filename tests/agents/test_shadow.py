"""Shadow rules (``mode: shadow``) and log-only agents (``enforcement: log_only``), through
the HTTP API and the pages: a shadow rule is evaluated and recorded on every call it applies
to and never changes an answer; its outcomes are counted per day and shown on its rule;
one PATCH or one click promotes it. A log-only agent's calls are all allowed, the reason
saying what would have happened."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from http import HTTPStatus
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from freezegun import freeze_time

from agents.models import Agent, LimitBucket, Rule, ShadowTally
from agents.shadow import shadow_tallies_update
from approvals.models import ApprovalRequest
from audit.models import AuditEntry
from tests.agents.conftest import add_rule

pytestmark = pytest.mark.django_db


def check(client: Client, key: str, action: str = "stripe.refund", **arguments: Any) -> dict:
    response = client.post(
        "/api/v1/check",
        data=json.dumps({"action": action, "arguments": arguments}),
        content_type="application/json",
        HTTP_X_API_KEY=key,
    )
    assert response.status_code == HTTPStatus.OK, response.content
    return response.json()


def send(client: Client, method: str, url: str, body: Any = None) -> Any:
    data = json.dumps(body) if body is not None else None
    return getattr(client, method)(url, data=data, content_type="application/json")


def shadow_block(agent: Agent, **extra: Any) -> Rule:
    """A shadow rule that would block refunds over 100."""
    return add_rule(
        agent,
        name="big refunds",
        action="stripe.refund",
        effect="block",
        when=[{"field": "amount", "op": "gt", "value": 100}],
        mode="shadow",
        **extra,
    )


def entry_of(answer: dict) -> AuditEntry:
    return AuditEntry.objects.get(public_id=answer["action_id"])


def counted(rule: Rule) -> int:
    return sum(LimitBucket.objects.filter(counter__rule=rule).values_list("count", flat=True))


# --- Never enforced, recorded ----------------------------------------------------------------


def test_a_shadow_rule_never_changes_the_answer(client, support_bot, keys):
    shadow_block(support_bot)
    answer = check(client, keys.live, amount=500)
    assert answer["decision"] == "allow"
    assert answer["rule"] is None
    assert answer["reason"] == "no_policy_configured"


def test_what_a_shadow_rule_would_have_decided_is_on_the_entry_the_action_and_the_export(
    client, alice, support_bot, keys
):
    rule = shadow_block(support_bot)
    answer = check(client, keys.live, amount=500)
    expected = [
        {
            "rule": "big refunds",
            "rule_id": rule.public_id,
            "decision": "block",
            "reason": "blocked by rule 'big refunds'",
        }
    ]
    assert entry_of(answer).data["shadow"] == expected
    action = client.get(f"/api/v1/actions/{answer['action_id']}", HTTP_X_API_KEY=keys.live)
    assert action.json()["shadow"] == expected
    client.force_login(alice)
    export = client.get("/api/v1/audit?format=jsonl&kind=check")
    lines = [json.loads(line) for line in b"".join(export.streaming_content).splitlines()]
    assert lines[0]["data"]["shadow"] == expected
    page = client.get(reverse("agents:action", args=[answer["action_id"]])).content.decode()
    assert "big refunds" in page
    assert "<strong>block</strong>" in page
    assert "blocked by rule &#x27;big refunds&#x27;" in page


def test_a_call_no_shadow_rule_applies_to_records_no_shadow_outcome(client, support_bot, keys):
    shadow_block(support_bot)
    answer = check(client, keys.live, amount=50)
    assert "shadow" not in entry_of(answer).data
    action = client.get(f"/api/v1/actions/{answer['action_id']}", HTTP_X_API_KEY=keys.live)
    assert action.json()["shadow"] == []


def test_a_shadow_rule_below_the_enforcing_answer_would_change_nothing(client, support_bot, keys):
    add_rule(support_bot, name="no refunds", action="stripe.refund", effect="block")
    add_rule(
        support_bot,
        name="held refunds",
        action="stripe.refund",
        effect="requires_approval",
        mode="shadow",
    )
    answer = check(client, keys.live, amount=5)
    assert answer["decision"] == "block"
    assert entry_of(answer).data["shadow"][0]["decision"] == "block"


def test_a_shadow_allow_rule_on_a_default_block_agent_would_allow(client, support_bot, keys):
    Agent.objects.filter(pk=support_bot.pk).update(default_decision="block")
    add_rule(support_bot, name="searches", action="kb.search", effect="allow", mode="shadow")
    answer = check(client, keys.live, action="kb.search")
    assert answer["decision"] == "block"
    assert entry_of(answer).data["shadow"] == [
        {
            "rule": "searches",
            "rule_id": Rule.objects.get(name="searches").public_id,
            "decision": "allow",
            "reason": "allowed by rule 'searches'",
        }
    ]


def test_simulate_shows_the_shadow_outcomes(client, alice, support_bot):
    shadow_block(support_bot)
    client.force_login(alice)
    response = send(
        client,
        "post",
        f"/api/v1/agents/{support_bot.public_id}/simulate",
        {"action": "stripe.refund", "arguments": {"amount": 500}},
    )
    assert response.json()["decision"] == "allow"
    assert response.json()["shadow"][0]["decision"] == "block"


def test_mode_is_a_key_of_the_policy_document(client, alice, support_bot):
    shadow_block(support_bot)
    client.force_login(alice)
    exported = client.get(f"/api/v1/agents/{support_bot.public_id}/policy").content.decode()
    assert "mode: shadow" in exported
    response = send(
        client,
        "post",
        f"/api/v1/agents/{support_bot.public_id}/rules",
        {"name": "x", "action": "a.b", "effect": "block", "mode": "sometimes"},
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["field"] == "mode"


# --- Counted per day, shown on the rule ------------------------------------------------------


def rule_stats(client: Client, agent: Agent, rule: Rule) -> dict:
    response = client.get(f"/api/v1/agents/{agent.public_id}/rules/{rule.public_id}")
    assert response.status_code == HTTPStatus.OK
    return response.json()["shadow"]


def test_the_rule_shows_calls_matched_and_answers_changed_over_1_7_and_30_days(
    client, alice, support_bot, keys
):
    add_rule(
        support_bot,
        name="large refunds",
        action="stripe.refund",
        effect="requires_approval",
        when=[{"field": "amount", "op": "gt", "value": 1000}],
    )
    add_rule(
        support_bot,
        name="huge refunds",
        action="stripe.refund",
        effect="block",
        when=[{"field": "amount", "op": "gt", "value": 10000}],
    )
    rule = shadow_block(support_bot)
    now = timezone.now()
    with freeze_time(now - timedelta(days=10)):
        check(client, keys.live, amount=500)  # allow -> block
    with freeze_time(now - timedelta(days=3)):
        check(client, keys.live, amount=500)  # allow -> block
        check(client, keys.live, amount=5000)  # requires_approval -> block
    check(client, keys.live, amount=500)  # allow -> block
    check(client, keys.live, amount=20000)  # block -> block: matched, unchanged
    check(client, keys.live, amount=50)  # not matched
    shadow_tallies_update(lag_seconds=0)
    client.force_login(alice)
    stats = rule_stats(client, support_bot, rule)
    assert stats["1d"] == {"matched": 2, "changed": 1, "transitions": {"allow->block": 1}}
    assert stats["7d"] == {
        "matched": 4,
        "changed": 3,
        "transitions": {"allow->block": 2, "requires_approval->block": 1},
    }
    assert stats["30d"] == {
        "matched": 5,
        "changed": 4,
        "transitions": {"allow->block": 3, "requires_approval->block": 1},
    }
    assert stats["as_of"] is not None
    page = client.get(reverse("agents:rule_edit", args=[support_bot.public_id, rule.public_id]))
    assert page.context["shadow_stats"]["rows"][2] == {
        "window": "30d",
        "matched": 5,
        "changed": 4,
        "counts": [3, 1],
    }
    assert "Promote: enforce this rule" in page.content.decode()


def test_the_tallies_count_each_call_once_and_wait_for_entries_still_being_written(
    client, alice, support_bot, keys
):
    rule = shadow_block(support_bot)
    check(client, keys.live, amount=500)
    shadow_tallies_update()  # the entry is younger than the lag: next time
    assert not ShadowTally.objects.exists()
    shadow_tallies_update(lag_seconds=0)
    shadow_tallies_update(lag_seconds=0)
    client.force_login(alice)
    assert rule_stats(client, support_bot, rule)["1d"]["matched"] == 1


def test_an_enforcing_rule_has_no_shadow_stats(client, alice, refund_rules):
    rule = refund_rules[0]
    client.force_login(alice)
    response = client.get(f"/api/v1/agents/{rule.agent.public_id}/rules/{rule.public_id}")
    assert "shadow" not in response.json()


# --- Promotion -------------------------------------------------------------------------------


def test_a_patch_with_mode_enforce_promotes_a_shadow_rule(client, alice, support_bot, keys):
    rule = shadow_block(support_bot)
    assert check(client, keys.live, amount=500)["decision"] == "allow"
    client.force_login(alice)
    response = send(
        client,
        "patch",
        f"/api/v1/agents/{support_bot.public_id}/rules/{rule.public_id}",
        {"mode": "enforce"},
    )
    assert response.status_code == HTTPStatus.OK
    assert "mode" not in response.json()
    answer = check(client, keys.live, amount=500)
    assert (answer["decision"], answer["rule"]) == ("block", "big refunds")


def test_one_click_on_the_rule_page_promotes_it(client, alice, support_bot, keys):
    rule = shadow_block(support_bot)
    client.force_login(alice)
    response = client.post(
        reverse("agents:rule_promote", args=[support_bot.public_id, rule.public_id])
    )
    assert response.status_code == HTTPStatus.FOUND
    rule.refresh_from_db()
    assert "mode" not in rule.document
    assert check(client, keys.live, amount=500)["decision"] == "block"


def test_a_viewer_cannot_promote(client, vera, support_bot):
    rule = shadow_block(support_bot)
    client.force_login(vera)
    response = client.post(
        reverse("agents:rule_promote", args=[support_bot.public_id, rule.public_id])
    )
    assert response.status_code == HTTPStatus.FORBIDDEN
    rule.refresh_from_db()
    assert rule.document["mode"] == "shadow"


def test_the_rule_form_makes_a_shadow_rule(client, alice, support_bot):
    client.force_login(alice)
    response = client.post(
        reverse("agents:rule_create", args=[support_bot.public_id]),
        {
            "rule-name": "maybe",
            "rule-action": "crm.discount",
            "rule-effect": "block",
            "rule-amount_field": "amount",
            "rule-environments": ["test", "live"],
            "rule-approvals_required": "1",
            "rule-enabled": "on",
            "rule-mode": "shadow",
        },
    )
    assert response.status_code == HTTPStatus.FOUND, response.content
    assert Rule.objects.get(name="maybe").document["mode"] == "shadow"


# --- Running totals: read, never reserved --------------------------------------------------


def test_a_shadow_limit_reads_its_budget_never_spends_it_and_counts_after_promotion(
    client, alice, support_bot, keys
):
    check(client, keys.live, amount=10)
    check(client, keys.live, amount=10)
    rule = add_rule(
        support_bot,
        name="two refunds an hour",
        action="stripe.refund",
        effect="block",
        limit={"count": 2, "per": "1h"},
        mode="shadow",
    )
    assert counted(rule) == 2  # the window's history, counted when the rule was made
    answer = check(client, keys.live, amount=10)
    assert answer["decision"] == "allow"
    assert entry_of(answer).data["shadow"][0]["reason"] == (
        "3rd call in 1h exceeds limit of 2 per 1h of rule 'two refunds an hour'"
    )
    assert counted(rule) == 2  # the check read the budget and spent nothing
    shadow_tallies_update(lag_seconds=0)
    assert counted(rule) == 3  # the aggregation counted the allowed call
    answer = check(client, keys.live, amount=10)
    assert entry_of(answer).data["shadow"][0]["reason"].startswith("4th call in 1h")
    client.force_login(alice)
    send(
        client,
        "patch",
        f"/api/v1/agents/{support_bot.public_id}/rules/{rule.public_id}",
        {"mode": "enforce"},
    )
    assert counted(rule) == 4  # promotion recounts from the audit log
    answer = check(client, keys.live, amount=10)
    assert (answer["decision"], answer["rule"]) == ("block", "two refunds an hour")


# --- Log-only agents -------------------------------------------------------------------------


def log_only(client: Client, user: Any, agent: Agent) -> None:
    client.force_login(user)
    response = send(
        client, "patch", f"/api/v1/agents/{agent.public_id}", {"enforcement": "log_only"}
    )
    assert response.status_code == HTTPStatus.OK
    assert response.json()["enforcement"] == "log_only"
    client.logout()


def test_a_log_only_agent_allows_the_call_and_says_what_would_have_happened(
    client, alice, refund_rules, keys
):
    agent = refund_rules[0].agent
    log_only(client, alice, agent)
    answer = check(client, keys.live, action="database.users.delete")
    assert answer["decision"] == "allow"
    assert answer["status"] == "allowed"
    assert answer["rule"] == "no deletes"
    assert answer["reason"] == "log only: would have been block: blocked by rule 'no deletes'"
    assert answer["message"] is None
    expected = {"decision": "block", "reason": "blocked by rule 'no deletes'"}
    assert entry_of(answer).data["log_only"] == expected
    action = client.get(f"/api/v1/actions/{answer['action_id']}", HTTP_X_API_KEY=keys.live)
    assert action.json()["log_only"] == expected


def test_a_log_only_agent_creates_no_approval_request(client, alice, refund_rules, keys):
    log_only(client, alice, refund_rules[0].agent)
    answer = check(client, keys.live, amount=500)
    assert answer["decision"] == "allow"
    assert answer["reason"].startswith("log only: would have been requires_approval: amount 500")
    assert not ApprovalRequest.objects.exists()


def test_a_log_only_agents_allowed_calls_spend_their_budgets(client, alice, support_bot, keys):
    rule = add_rule(
        support_bot,
        name="searches",
        action="kb.search",
        effect="block",
        limit={"count": 2, "per": "1h"},
    )
    log_only(client, alice, support_bot)
    answers = [check(client, keys.live, action="kb.search") for _ in range(3)]
    assert [a["decision"] for a in answers] == ["allow", "allow", "allow"]
    assert answers[2]["reason"] == (
        "log only: would have been block: 3rd call in 1h exceeds limit of 2 per 1h of rule "
        "'searches'"
    )
    assert counted(rule) == 3
    assert sum(LimitBucket.objects.filter(counter__rule=rule).values_list("total", flat=True)) == (
        Decimal(3)
    )


def test_a_log_only_agents_shadow_rules_compare_with_the_policys_decision(
    client, alice, refund_rules, keys
):
    agent = refund_rules[0].agent
    add_rule(
        agent, name="shadow deletes", action="database.*.delete", effect="block", mode="shadow"
    )
    log_only(client, alice, agent)
    answer = check(client, keys.live, action="database.users.delete")
    shadow_tallies_update(lag_seconds=0)
    tally = ShadowTally.objects.get(rule__name="shadow deletes")
    assert answer["decision"] == "allow"
    assert (tally.was, tally.would_be, tally.count) == ("block", "block", 1)


def test_enforcement_is_set_through_the_api_and_refused_when_unknown(client, alice, org_a):
    client.force_login(alice)
    response = send(client, "post", "/api/v1/agents", {"name": "quiet", "enforcement": "log_only"})
    assert response.status_code == HTTPStatus.CREATED
    assert response.json()["enforcement"] == "log_only"
    response = send(client, "post", "/api/v1/agents", {"name": "loud", "enforcement": "shout"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["field"] == "enforcement"


def test_the_agent_form_switches_an_agent_to_log_only(client, alice, support_bot, keys):
    client.force_login(alice)
    response = client.post(
        reverse("agents:settings", args=[support_bot.public_id]),
        {
            "name": "support-bot",
            "description": "",
            "default_decision": "block",
            "enforcement": "log_only",
            "is_active": "on",
        },
    )
    assert response.status_code == HTTPStatus.FOUND
    support_bot.refresh_from_db()
    assert support_bot.enforcement == "log_only"
    answer = check(client, keys.live, action="kb.search")
    assert answer["decision"] == "allow"
    assert answer["reason"].startswith("log only: would have been block: no rule allows")


# --- Isolation -------------------------------------------------------------------------------


def test_an_outsider_gets_404_for_another_orgs_shadow_rule_action_and_promotion(
    client, charlie, org_c, support_bot, keys
):
    rule = shadow_block(support_bot)
    answer = check(client, keys.live, amount=500)
    client.force_login(charlie)
    base = f"/api/v1/agents/{support_bot.public_id}/rules/{rule.public_id}"
    assert client.get(base).status_code == HTTPStatus.NOT_FOUND
    assert send(client, "patch", base, {"mode": "enforce"}).status_code == HTTPStatus.NOT_FOUND
    assert client.get(f"/api/v1/rules/{rule.public_id}").status_code == HTTPStatus.NOT_FOUND
    promote = reverse("agents:rule_promote", args=[support_bot.public_id, rule.public_id])
    assert client.post(promote).status_code == HTTPStatus.NOT_FOUND
    page = reverse("agents:action", args=[answer["action_id"]])
    assert client.get(page).status_code == HTTPStatus.NOT_FOUND
    rule.refresh_from_db()
    assert rule.document["mode"] == "shadow"


def test_beat_runs_the_tally_task_which_drops_tallies_older_than_31_days(client, support_bot, keys):
    from django.conf import settings

    from agents.tasks import agents_shadow_tally

    assert settings.CELERY_BEAT_SCHEDULE["agents-shadow-tally"]["task"] == "agents.shadow_tally"
    rule = shadow_block(support_bot)
    check(client, keys.live, amount=500)
    ShadowTally.objects.create(
        organization=support_bot.organization,
        rule=rule,
        agent=support_bot,
        day=timezone.now().date() - timedelta(days=40),
        was="allow",
        would_be="block",
        count=7,
    )
    with freeze_time(timezone.now() + timedelta(minutes=5)):  # past the lag
        assert agents_shadow_tally() > 0
    assert list(ShadowTally.objects.values_list("count", flat=True)) == [1]
