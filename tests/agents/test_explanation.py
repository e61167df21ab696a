"""Why a call was decided as it was: the trace every check records, ``"explanation"`` in
``GET /api/v1/actions/{id}``, and the action page of the dashboard."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from django.test import Client
from django.urls import reverse

from accounts.models import Plan
from accounts.services import organization_change_plan
from audit.models import AuditEntry
from audit.services import audit_record
from tests.agents.conftest import add_rule
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def check(client: Client, key: str, action: str, arguments: dict[str, Any] | None = None) -> str:
    response = client.post(
        "/api/v1/check",
        data=json.dumps({"action": action, "arguments": arguments or {}}),
        content_type="application/json",
        HTTP_X_API_KEY=key,
    )
    assert response.status_code == HTTPStatus.OK, response.content
    return response.json()["action_id"]


def explanation(client: Client, key: str, action_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/actions/{action_id}", HTTP_X_API_KEY=key)
    assert response.status_code == HTTPStatus.OK, response.content
    return response.json()["explanation"]


@pytest.fixture
def old_check(support_bot) -> AuditEntry:
    """A check recorded before traces were kept: no ``trace`` in its data."""
    return audit_record(
        organization=support_bot.organization,
        kind=AuditEntry.Kind.CHECK,
        public_id="act_recordedbeforetraces",
        agent=support_bot,
        agent_public_id=support_bot.public_id,
        action="stripe.refund",
        arguments={"amount": 5},
        environment="live",
        decision="allow",
        status="allowed",
        reason="no_policy_configured",
        data={},
    )


# --- What the check path records --------------------------------------------------------------


def test_every_check_records_its_trace_in_the_audit_row(client, keys, refund_rules):
    action_id = check(client, keys.live, "stripe.refund", {"amount": 150})
    trace = AuditEntry.objects.get(public_id=action_id).data["trace"]
    (node,) = trace["rules"]
    assert node["rule"] == "refund limit"
    assert node["id"] == refund_rules[0].public_id
    assert node["max_amount"] == {"field": "amount", "max": "100", "saw": "150", "within": False}
    assert trace["decision"] == "requires_approval"


def test_the_trace_holds_only_the_rules_whose_action_pattern_matched(client, keys, refund_rules):
    action_id = check(client, keys.live, "database.users.delete")
    trace = AuditEntry.objects.get(public_id=action_id).data["trace"]
    assert [node["rule"] for node in trace["rules"]] == ["no deletes"]


# --- The API ----------------------------------------------------------------------------------


def test_the_action_explains_an_amount_over_max_amount_in_plain_words(client, keys, refund_rules):
    action_id = check(client, keys.live, "stripe.refund", {"amount": 150})
    found = explanation(client, keys.live, action_id)
    assert found["recorded"] is True
    assert found["lines"] == [
        "refund limit: amount 150 > max_amount 100 -> requires_approval",
        "decision: requires_approval (rule 'refund limit')",
    ]
    assert found["text"] == "; ".join(found["lines"])
    assert found["trace"]["rules"][0]["outcome"] == "requires_approval"


def test_the_action_explains_a_running_total_before_and_after_it_has_effect(
    client, keys, support_bot
):
    add_rule(
        support_bot,
        name="daily budget",
        action="stripe.refund",
        effect="block",
        limit={"sum": "amount", "over": 2000, "per": "1d"},
    )
    first = check(client, keys.live, "stripe.refund", {"amount": 1840})
    second = check(client, keys.live, "stripe.refund", {"amount": 150})
    third = check(client, keys.live, "stripe.refund", {"amount": 100})
    assert explanation(client, keys.live, first)["lines"][0] == (
        "daily budget: 0 + 1,840 <= 2,000 (amount per 1d) -> no effect"
    )
    assert explanation(client, keys.live, second)["lines"][0] == (
        "daily budget: 1,840 + 150 <= 2,000 (amount per 1d) -> no effect"
    )
    assert explanation(client, keys.live, third)["lines"][0] == (
        "daily budget: 1,990 + 100 > 2,000 (amount per 1d) -> block"
    )


def test_the_action_explains_an_undecidable_condition_failing_closed(client, keys, support_bot):
    add_rule(
        support_bot,
        name="basic tier",
        action="crm.discount",
        effect="block",
        when=[{"field": "customer.tier", "op": "eq", "value": "basic"}],
    )
    action_id = check(client, keys.live, "crm.discount", {"percent": 10})
    line = explanation(client, keys.live, action_id)["lines"][0]
    assert line == (
        'basic tier: when customer.tier = "basic" undecidable (customer.tier is missing) '
        "-> block (undecidable, so the rule applies: fail closed)"
    )


def test_the_action_explains_the_plan_turning_a_hold_into_a_block(client, org_a, keys, support_bot):
    org_a.plan = Plan.objects.get(slug="business")
    org_a.save(update_fields=["plan"])
    add_rule(
        support_bot,
        name="big transfers",
        action="bank.transfer",
        effect="requires_approval",
        approval={"approvals_required": 2},
    )
    organization_change_plan(
        actor=None, organization=org_a, plan=Plan.objects.get(slug="pro"), as_operator=True
    )
    action_id = check(client, keys.live, "bank.transfer")
    found = explanation(client, keys.live, action_id)
    assert found["trace"]["plan_gate"] == {
        "from": "requires_approval",
        "needs": "Business",
        "approvals": 2,
    }
    assert found["lines"][-2:] == [
        "plan: requires_approval -> block, because 2 approvals need the Business plan or higher",
        "decision: block (rule 'big transfers')",
    ]


def test_an_amount_too_large_to_print_is_decided_and_explained_not_a_500(
    client, keys, refund_rules
):
    response = client.post(
        "/api/v1/check",
        data=json.dumps({"action": "stripe.refund", "arguments": {"amount": "1e5000"}}),
        content_type="application/json",
        HTTP_X_API_KEY=keys.live,
    )
    assert response.status_code == HTTPStatus.OK
    body = response.json()
    assert body["decision"] == "requires_approval"
    assert body["reason"] == "amount 1E+5000 exceeds max_amount 100 of rule 'refund limit'"
    assert explanation(client, keys.live, body["action_id"])["lines"][0] == (
        "refund limit: amount 1E+5000 > max_amount 100 -> requires_approval"
    )


def test_the_action_explains_the_default_when_no_rule_matches(client, keys, refund_rules):
    action_id = check(client, keys.live, "email.send")
    assert explanation(client, keys.live, action_id)["lines"] == [
        "no rule matches this action: the agent's default (allow) applies -> allow"
    ]


def test_a_check_recorded_before_traces_has_no_explanation_recorded(client, keys, old_check):
    found = explanation(client, keys.live, old_check.public_id)
    assert found["recorded"] is False
    assert found["trace"] is None
    assert found["lines"][0].startswith("No explanation recorded")


def test_an_approval_request_carries_the_explanation_too(client, keys, refund_rules):
    action_id = check(client, keys.live, "stripe.refund", {"amount": 150})
    response = client.get("/api/v1/approvals", HTTP_X_API_KEY=keys.approver)
    assert response.status_code == HTTPStatus.OK
    held = [item for item in response.json()["results"] if item["action_id"] == action_id]
    assert held[0]["explanation"]["lines"][0].startswith("refund limit: amount 150")


def test_another_organisations_action_is_404_with_its_explanation(
    client, keys, charlie_keys, refund_rules
):
    action_id = check(client, keys.live, "stripe.refund", {"amount": 150})
    response = client.get(f"/api/v1/actions/{action_id}", HTTP_X_API_KEY=charlie_keys.live)
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert "explanation" not in response.json()
    response = client.get(f"/api/v1/actions/{action_id}", HTTP_X_API_KEY=charlie_keys.org)
    assert response.status_code == HTTPStatus.NOT_FOUND


# --- The dashboard ----------------------------------------------------------------------------


def test_the_action_page_shows_the_explanation(client, vera, keys, refund_rules):
    action_id = check(client, keys.live, "stripe.refund", {"amount": 150})
    client.force_login(vera)
    response = client.get(reverse("agents:action", args=[action_id]))
    assert response.status_code == HTTPStatus.OK
    page = response.content.decode()
    assert "refund limit: amount 150 &gt; max_amount 100 -&gt; requires_approval" in page
    assert reverse("approvals:detail", args=[action_id]) in page


def test_the_action_page_of_an_old_check_says_no_explanation_was_recorded(client, vera, old_check):
    client.force_login(vera)
    response = client.get(reverse("agents:action", args=[old_check.public_id]))
    assert response.status_code == HTTPStatus.OK
    assert "No explanation recorded" in response.content.decode()


def test_the_action_page_of_another_organisations_action_is_404(
    client, charlie, org_c, keys, refund_rules
):
    action_id = check(client, keys.live, "stripe.refund", {"amount": 150})
    client.force_login(charlie)
    response = client.get(reverse("agents:action", args=[action_id]))
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert "refund limit" not in response.content.decode()


def test_an_unknown_action_page_is_404(client, vera, org_a):
    client.force_login(vera)
    response = client.get(reverse("agents:action", args=["act_nosuchaction"]))
    assert response.status_code == HTTPStatus.NOT_FOUND


def test_the_audit_log_links_each_check_to_its_action_page(client, vera, keys, refund_rules):
    action_id = check(client, keys.live, "kb.search")
    client.force_login(vera)
    page = client.get(reverse("agents:audit")).content.decode()
    assert reverse("agents:action", args=[action_id]) in page


def test_the_approval_page_shows_why_the_call_was_held(client, bob, keys, refund_rules):
    action_id = check(client, keys.live, "stripe.refund", {"amount": 150})
    client.force_login(bob)
    page = client.get(reverse("approvals:detail", args=[action_id])).content.decode()
    assert "Why it was held" in page
    assert "refund limit: amount 150 &gt; max_amount 100 -&gt; requires_approval" in page


# --- In a browser -----------------------------------------------------------------------------

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture
def browser_page(monkeypatch) -> Iterator:
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        yield browser.new_context(viewport={"width": 375, "height": 740}).new_page()
        browser.close()


@pytest.mark.live
@pytest.mark.browser
def test_a_viewer_opens_an_action_from_the_audit_log_and_reads_why(
    browser_page, live_server, vera, keys, refund_rules
):
    action_id = check(Client(), keys.live, "stripe.refund", {"amount": 150})
    EmailAddress.objects.get_or_create(
        user=vera, email=vera.email, defaults={"verified": True, "primary": True}
    )
    page = browser_page
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=login]", vera.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    page.goto(f"{live_server.url}/agents/audit/")
    page.click(f"a[href='/agents/audit/{action_id}/']")
    page.wait_for_selector("#explanation")
    lines = page.locator("#explanation li").all_inner_texts()
    assert lines == [
        "refund limit: amount 150 > max_amount 100 -> requires_approval",
        "decision: requires_approval (rule 'refund limit')",
    ]
    assert page.locator("#action-decision").inner_text() == "requires_approval"
