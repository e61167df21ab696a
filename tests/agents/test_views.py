"""The agent pages: list, detail (settings, rules, keys, policy), simulate, org keys, audit.

Alice owns org A, Bob approves there, Vera views; Charlie is an outsider (org C).
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from http import HTTPStatus

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import Organization
from agents import services
from agents.models import Agent, ApiKey, Rule
from audit.models import AuditEntry
from audit.services import audit_record
from tests.agents.conftest import add_rule
from tests.factories import plan

pytestmark = pytest.mark.django_db


def _as(client: Client, user) -> Client:
    client.force_login(user)
    return client


def _page(response) -> str:
    return response.content.decode()


@pytest.fixture
def rule(refund_rules) -> Rule:
    return refund_rules[0]


def _rule_post(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "rule-name": "vip only",
        "rule-description": "",
        "rule-action": "crm.discount",
        "rule-effect": "block",
        "rule-when": "",
        "rule-unless": "",
        "rule-message": "",
        "rule-limit_by": "",
        "rule-max_amount": "",
        "rule-amount_field": "amount",
        "rule-limit_kind": "",
        "rule-limit_count": "",
        "rule-limit_sum": "",
        "rule-limit_over": "",
        "rule-limit_per": "",
        "rule-environments": ["test", "live"],
        "rule-approval_timeout": "",
        "rule-approvals_required": "1",
        "rule-enabled": "on",
    }
    data.update({f"rule-{key}": value for key, value in overrides.items()})
    return data


# --- Every page renders for a member ----------------------------------------------------------


def _read_pages(agent: Agent, rule: Rule) -> list[str]:
    return [
        reverse("agents:list"),
        reverse("agents:detail", args=[agent.public_id]),
        reverse("agents:rule_edit", args=[agent.public_id, rule.public_id]),
        reverse("agents:simulate", args=[agent.public_id]),
        reverse("agents:policy_download", args=[agent.public_id]),
        reverse("agents:org_keys"),
        reverse("agents:audit"),
    ]


@pytest.mark.parametrize("persona", ["alice", "bob", "vera"])
def test_every_agent_page_renders_for_a_member(client, request, persona, rule, keys):
    _as(client, request.getfixturevalue(persona))
    for url in _read_pages(rule.agent, rule):
        assert client.get(url).status_code == HTTPStatus.OK, url


def test_the_pages_need_a_login(client, rule):
    for url in _read_pages(rule.agent, rule):
        assert client.get(url).status_code == HTTPStatus.FOUND, url


def test_the_nav_links_to_the_agents_page(client, alice, org_a):
    page = _page(_as(client, alice).get(reverse("agents:list")))
    assert f'href="{reverse("agents:list")}">Agents</a>' in page


def test_the_list_shows_each_agent_with_its_rule_count_and_last_use(client, vera, rule, keys):
    ApiKey.objects.filter(pk=keys.live_key.pk).update(last_used_at=timezone.now())
    response = _as(client, vera).get(reverse("agents:list"))
    row = next(a for a in response.context["agents"] if a.pk == rule.agent_id)
    assert row.rule_count == 3
    assert row.last_used_at is not None
    assert rule.agent.public_id in _page(response)


def test_a_viewer_sees_no_write_forms(client, vera, rule):
    page = _page(_as(client, vera).get(reverse("agents:detail", args=[rule.agent.public_id])))
    assert "Add rule" not in page
    assert "Create key" not in page
    assert ">Apply</button>" not in page
    assert "refund limit" in page


# --- Tenancy: outsiders get 404 -----------------------------------------------------------------


def _object_urls(agent: Agent, rule: Rule, key: ApiKey) -> list[tuple[str, str]]:
    agent_id, rule_id = agent.public_id, rule.public_id
    return [
        ("get", reverse("agents:detail", args=[agent_id])),
        ("get", reverse("agents:rule_edit", args=[agent_id, rule_id])),
        ("get", reverse("agents:simulate", args=[agent_id])),
        ("get", reverse("agents:policy_download", args=[agent_id])),
        ("post", reverse("agents:simulate", args=[agent_id])),
        ("post", reverse("agents:settings", args=[agent_id])),
        ("post", reverse("agents:rule_create", args=[agent_id])),
        ("post", reverse("agents:rule_edit", args=[agent_id, rule_id])),
        ("post", reverse("agents:rule_delete", args=[agent_id, rule_id])),
        ("post", reverse("agents:rule_toggle", args=[agent_id, rule_id])),
        ("post", reverse("agents:rule_promote", args=[agent_id, rule_id])),
        ("post", reverse("agents:key_create", args=[agent_id])),
        ("post", reverse("agents:policy_apply", args=[agent_id])),
        ("post", reverse("agents:key_revoke", args=[key.public_id])),
        ("post", reverse("agents:key_rotate", args=[key.public_id])),
    ]


def test_an_outsider_gets_404_for_every_object_of_another_organisation(
    client, charlie, org_c, rule, keys
):
    _as(client, charlie)
    for method, url in _object_urls(rule.agent, rule, keys.live_key):
        assert getattr(client, method)(url).status_code == HTTPStatus.NOT_FOUND, (method, url)
    assert Rule.objects.filter(pk=rule.pk).exists()
    assert ApiKey.objects.get(pk=keys.live_key.pk).revoked_at is None


def test_an_outsider_sees_none_of_another_organisations_agents_or_keys(
    client, charlie, org_c, rule, keys
):
    _as(client, charlie)
    assert rule.agent.name not in _page(client.get(reverse("agents:list")))
    assert keys.org_key.prefix not in _page(client.get(reverse("agents:org_keys")))


def test_a_user_without_an_organisation_gets_404(client, rule):
    from tests.factories import UserFactory

    _as(client, UserFactory(email="nobody@example.com"))
    assert client.get(reverse("agents:list")).status_code == HTTPStatus.NOT_FOUND


# --- Roles: viewers and approvers read, owners and admins write -------------------------------


def _write_urls(agent: Agent, rule: Rule, key: ApiKey) -> list[str]:
    return [
        reverse("agents:create"),
        reverse("agents:org_keys"),
        *[url for method, url in _object_urls(agent, rule, key) if method == "post"][1:],
    ]


@pytest.mark.parametrize("persona", ["bob", "vera"])
def test_a_viewer_or_approver_gets_403_on_every_write(client, request, persona, rule, keys):
    _as(client, request.getfixturevalue(persona))
    for url in _write_urls(rule.agent, rule, keys.live_key):
        response = client.post(url, {"name": "x", "kind": "org", "environment": "live"})
        assert response.status_code == HTTPStatus.FORBIDDEN, url
    assert Agent.objects.filter(organization=rule.organization).count() == 1
    assert Rule.objects.filter(pk=rule.pk, enabled=True).exists()


def test_a_viewer_may_simulate_because_it_changes_nothing(client, vera, rule):
    response = _as(client, vera).post(
        reverse("agents:simulate", args=[rule.agent.public_id]),
        {"action": "kb.search", "arguments": "{}", "environment": "live"},
    )
    assert response.status_code == HTTPStatus.OK


def test_every_form_needs_a_csrf_token(alice, rule):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post(reverse("agents:create"), {"name": "sneaky"})
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert not Agent.objects.filter(name="sneaky").exists()
    page = _page(client.get(reverse("agents:detail", args=[rule.agent.public_id])))
    assert page.count('<form method="post"') == page.count("csrfmiddlewaretoken")


# --- Agents ------------------------------------------------------------------------------------


def test_an_owner_creates_an_agent(client, alice, org_a):
    response = _as(client, alice).post(
        reverse("agents:create"),
        {"name": "billing-bot", "description": "refunds", "default_decision": "block"},
    )
    agent = Agent.objects.get(organization=org_a, name="billing-bot")
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == reverse("agents:detail", args=[agent.public_id])
    assert agent.default_decision == Agent.DefaultDecision.BLOCK
    assert AuditEntry.objects.filter(target_id=agent.public_id, source="web").exists()


def test_a_duplicate_agent_name_is_shown_on_the_name_field(client, alice, support_bot):
    response = _as(client, alice).post(
        reverse("agents:create"), {"name": "support-bot", "default_decision": "allow"}
    )
    assert response.status_code == HTTPStatus.CONFLICT
    assert response.context["form"].errors["name"] == [
        "An agent named 'support-bot' already exists."
    ]


def test_the_free_plan_agent_limit_is_refused_with_a_message_naming_the_plan(
    client, alice, org_a, support_bot
):
    Organization.objects.filter(pk=org_a.pk).update(plan=plan("free"))
    response = _as(client, alice).post(
        reverse("agents:create"), {"name": "second-bot", "default_decision": "allow"}
    )
    page = _page(response)
    assert response.status_code == HTTPStatus.PAYMENT_REQUIRED
    assert 'role="alert"' in page
    assert "The Free plan allows 1 agent; the Pro plan or higher allows more." in page
    assert not Agent.objects.filter(name="second-bot").exists()


def test_an_owner_changes_the_agent_settings(client, alice, support_bot):
    response = _as(client, alice).post(
        reverse("agents:settings", args=[support_bot.public_id]),
        {"name": "helpdesk-bot", "description": "d", "default_decision": "block"},
    )
    support_bot.refresh_from_db()
    assert response.status_code == HTTPStatus.FOUND
    assert (support_bot.name, support_bot.is_active) == ("helpdesk-bot", False)
    assert support_bot.default_decision == "block"


# --- Rules -------------------------------------------------------------------------------------


def test_an_owner_adds_a_rule_with_every_field(client, alice, org_a, support_bot):
    Organization.objects.filter(pk=org_a.pk).update(plan=plan("business"))
    response = _as(client, alice).post(
        reverse("agents:rule_create", args=[support_bot.public_id]),
        _rule_post(
            name="big refunds",
            description="over budget",
            action="stripe.refund",
            effect="requires_approval",
            when='customer.tier ne vip\namount gt 10\nregion in ["eu", "us"]',
            max_amount="100",
            limit_kind="sum",
            limit_sum="amount",
            limit_over="2000",
            limit_per="1d",
            environments=["live"],
            approval_timeout="30m",
            approvals_required="2",
        ),
    )
    assert response.status_code == HTTPStatus.FOUND
    rule = Rule.objects.get(agent=support_bot, name="big refunds")
    assert rule.document["when"] == [
        {"field": "customer.tier", "op": "ne", "value": "vip"},
        {"field": "amount", "op": "gt", "value": 10},
        {"field": "region", "op": "in", "value": ["eu", "us"]},
    ]
    assert rule.document["max_amount"] == 100
    assert rule.document["limit"] == {"sum": "amount", "over": 2000, "per": "1d"}
    assert rule.document["environments"] == ["live"]
    assert rule.document["approval"] == {"timeout": "30m", "approvals_required": 2}
    assert rule.description == rule.document["description"] == "over budget"


def test_a_count_limit_rule_is_saved(client, alice, support_bot):
    _as(client, alice).post(
        reverse("agents:rule_create", args=[support_bot.public_id]),
        _rule_post(
            name="bulk mail",
            action="email.bulk",
            limit_kind="count",
            limit_count="5",
            limit_per="1h",
        ),
    )
    assert Rule.objects.get(name="bulk mail").document["limit"] == {"count": 5, "per": "1h"}


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"action": "stripe..refund"}, "action", "invalid action pattern"),
        ({"when": "amount between 5"}, "when", "when[0].op"),
        ({"when": "amount"}, "when", "Line 1"),
        ({"max_amount": "lots"}, "max_amount", "must be a number"),
        (
            {"limit_kind": "count", "limit_count": "5", "limit_per": "soon"},
            "limit_per",
            "invalid duration",
        ),
        ({"approval_timeout": "forever"}, "approval_timeout", "invalid duration"),
        ({"environments": []}, "environments", "Choose test, live or both."),
    ],
)
def test_an_invalid_rule_shows_the_field_error_and_saves_nothing(
    client, alice, support_bot, overrides, field, message
):
    response = _as(client, alice).post(
        reverse("agents:rule_create", args=[support_bot.public_id]), _rule_post(**overrides)
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    errors = response.context["rule_form"].errors[field]
    assert any(message in error for error in errors), errors
    assert message in _page(response)
    assert not Rule.objects.filter(agent=support_bot).exists()


def test_a_duplicate_rule_name_is_shown_on_the_name_field(client, alice, rule):
    response = _as(client, alice).post(
        reverse("agents:rule_create", args=[rule.agent.public_id]), _rule_post(name=rule.name)
    )
    assert response.status_code == HTTPStatus.CONFLICT
    assert response.context["rule_form"].errors["name"]
    assert Rule.objects.filter(agent=rule.agent).count() == 3


def test_a_requires_approval_rule_on_free_is_refused_naming_the_plan(
    client, alice, org_a, support_bot
):
    Organization.objects.filter(pk=org_a.pk).update(plan=plan("free"))
    response = _as(client, alice).post(
        reverse("agents:rule_create", args=[support_bot.public_id]),
        _rule_post(effect="requires_approval"),
    )
    assert response.status_code == HTTPStatus.PAYMENT_REQUIRED
    errors = response.context["rule_form"].errors["effect"]
    assert "need the Pro plan or higher" in errors[0]
    assert "need the Pro plan or higher" in _page(response)
    assert not Rule.objects.filter(agent=support_bot).exists()


def test_a_quorum_below_business_is_refused_naming_the_plan(client, alice, support_bot):
    response = _as(client, alice).post(
        reverse("agents:rule_create", args=[support_bot.public_id]),
        _rule_post(effect="requires_approval", approvals_required="2"),
    )
    assert response.status_code == HTTPStatus.PAYMENT_REQUIRED
    assert "Business plan" in response.context["rule_form"].errors["approvals_required"][0]
    assert not Rule.objects.filter(agent=support_bot).exists()


def test_the_edit_page_shows_the_rule_as_it_is_stored(client, alice, support_bot):
    stored = add_rule(
        support_bot,
        name="vip",
        action="crm.discount",
        effect="block",
        when=[{"field": "customer.tier", "op": "ne", "value": "vip"}],
        limit={"count": 5, "per": "1h"},
        approval={"timeout": "30m"},
    )
    response = _as(client, alice).get(
        reverse("agents:rule_edit", args=[support_bot.public_id, stored.public_id])
    )
    initial = response.context["form"].initial
    assert initial["when"] == "customer.tier ne vip"
    assert (initial["limit_kind"], initial["limit_count"], initial["limit_per"]) == (
        "count",
        5,
        "1h",
    )
    assert initial["approval_timeout"] == "30m"


def test_an_owner_edits_a_rule_and_an_emptied_field_is_removed(client, alice, rule):
    response = _as(client, alice).post(
        reverse("agents:rule_edit", args=[rule.agent.public_id, rule.public_id]),
        _rule_post(name="refund limit", action="stripe.refund", effect="block", max_amount=""),
    )
    rule.refresh_from_db()
    assert response.status_code == HTTPStatus.FOUND
    assert (rule.effect, "max_amount" in rule.document) == ("block", False)


def test_an_invalid_edit_keeps_the_stored_rule(client, alice, rule):
    response = _as(client, alice).post(
        reverse("agents:rule_edit", args=[rule.agent.public_id, rule.public_id]),
        _rule_post(name="refund limit", action="", effect="block"),
    )
    rule.refresh_from_db()
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert rule.effect == "requires_approval"


def test_an_owner_disables_and_enables_a_rule(client, alice, rule):
    url = reverse("agents:rule_toggle", args=[rule.agent.public_id, rule.public_id])
    _as(client, alice).post(url, {"enabled": "0"})
    rule.refresh_from_db()
    assert rule.enabled is False
    client.post(url, {"enabled": "1"})
    rule.refresh_from_db()
    assert rule.enabled is True


def test_an_owner_deletes_a_rule(client, alice, rule):
    response = _as(client, alice).post(
        reverse("agents:rule_delete", args=[rule.agent.public_id, rule.public_id])
    )
    assert response.status_code == HTTPStatus.FOUND
    assert not Rule.objects.filter(pk=rule.pk).exists()


# --- Keys --------------------------------------------------------------------------------------


def test_a_new_key_is_shown_exactly_once_and_stored_only_as_a_hash(client, alice, support_bot):
    _as(client, alice)
    response = client.post(
        reverse("agents:key_create", args=[support_bot.public_id]),
        {"environment": "test", "name": "laptop"},
    )
    raw = response.context["raw_key"]
    key = ApiKey.objects.get(agent=support_bot, name="laptop")
    assert response.status_code == HTTPStatus.OK
    assert response["Cache-Control"] == "no-store"
    assert raw.startswith("wdn_test_") and raw in _page(response)
    assert key.hashed_key == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in {key.name, key.prefix, key.hashed_key}
    later = _page(client.get(reverse("agents:detail", args=[support_bot.public_id])))
    assert key.prefix in later
    assert raw not in later


def test_an_owner_revokes_a_key(client, alice, keys):
    response = _as(client, alice).post(reverse("agents:key_revoke", args=[keys.live_key.public_id]))
    keys.live_key.refresh_from_db()
    assert response.status_code == HTTPStatus.FOUND
    assert keys.live_key.revoked_at is not None
    assert "revoked" in _page(client.get(response["Location"]))


def test_rotating_a_key_shows_the_new_one_once_and_keeps_the_old_for_the_grace(client, alice, keys):
    before = timezone.now()
    response = _as(client, alice).post(
        reverse("agents:key_rotate", args=[keys.live_key.public_id]), {"grace_seconds": "3600"}
    )
    raw = response.context["raw_key"]
    old = ApiKey.objects.get(pk=keys.live_key.pk)
    assert raw.startswith("wdn_live_") and raw in _page(response)
    assert old.replaced_by.hashed_key == hashlib.sha256(raw.encode()).hexdigest()
    assert before + timedelta(minutes=59) < old.expires_at <= timezone.now() + timedelta(hours=1)
    assert raw not in _page(
        client.get(reverse("agents:detail", args=[keys.live_key.agent.public_id]))
    )


def test_rotating_an_already_rotated_key_is_refused_with_a_message(client, alice, keys):
    url = reverse("agents:key_rotate", args=[keys.live_key.public_id])
    _as(client, alice).post(url, {"grace_seconds": "3600"})
    response = client.post(url, {"grace_seconds": "0"}, follow=True)
    assert "already rotated" in _page(response)
    assert ApiKey.objects.filter(agent=keys.live_key.agent, environment="live").count() == 2


def test_an_owner_creates_an_approver_key_shown_once(client, alice, org_a):
    _as(client, alice)
    response = client.post(reverse("agents:org_keys"), {"kind": "approver", "name": "ops"})
    raw = response.context["raw_key"]
    assert raw.startswith("wdn_apv_") and raw in _page(response)
    assert raw not in _page(client.get(reverse("agents:org_keys")))
    assert ApiKey.objects.get(name="ops").kind == ApiKey.Kind.APPROVER


def test_the_org_keys_page_lists_org_and_approver_keys_only(client, vera, keys):
    page = _page(_as(client, vera).get(reverse("agents:org_keys")))
    assert keys.org_key.prefix in page
    assert keys.approver_key.prefix in page
    assert keys.live_key.prefix not in page


# --- Policy as code ----------------------------------------------------------------------------


def test_the_detail_page_holds_the_yaml_export(client, alice, rule):
    response = _as(client, alice).get(reverse("agents:detail", args=[rule.agent.public_id]))
    assert response.context["policy_form"].initial["document"] == services.policy_export(
        agent=rule.agent
    )


def test_the_policy_downloads_as_yaml(client, vera, rule):
    response = _as(client, vera).get(reverse("agents:policy_download", args=[rule.agent.public_id]))
    assert response["Content-Type"].startswith("application/yaml")
    assert "attachment" in response["Content-Disposition"]
    assert response.content.decode() == services.policy_export(agent=rule.agent)


def test_applying_a_policy_replaces_the_rules(client, alice, rule):
    document = (
        "agent: support-bot\ndefault: block\nrules:\n"
        "  - name: no deletes\n    action: 'database.*.delete'\n    effect: block\n"
    )
    response = _as(client, alice).post(
        reverse("agents:policy_apply", args=[rule.agent.public_id]), {"document": document}
    )
    agent = Agent.objects.get(pk=rule.agent_id)
    assert response.status_code == HTTPStatus.FOUND
    assert agent.default_decision == "block"
    assert list(agent.rules.values_list("name", flat=True)) == ["no deletes"]


def test_a_policy_with_an_error_changes_nothing_and_lists_the_rule_and_field(client, alice, rule):
    document = (
        "agent: support-bot\ndefault: block\nrules:\n"
        "  - name: fine\n    action: kb.search\n    effect: allow\n"
        "  - name: broken\n    action: stripe.refund\n    effect: maybe\n"
    )
    response = _as(client, alice).post(
        reverse("agents:policy_apply", args=[rule.agent.public_id]), {"document": document}
    )
    page = _page(response)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "<code>rules[1].effect</code> (rule <strong>broken</strong>, line 9)" in page
    assert "Nothing was changed" in page
    assert "effect: maybe" in page  # the text typed is kept for correcting
    agent = Agent.objects.get(pk=rule.agent_id)
    assert agent.default_decision == "allow"
    assert sorted(agent.rules.values_list("name", flat=True)) == [
        "no deletes",
        "refund limit",
        "search ok",
    ]


def test_a_policy_for_another_agent_is_refused(client, alice, rule):
    response = _as(client, alice).post(
        reverse("agents:policy_apply", args=[rule.agent.public_id]),
        {"document": "agent: someone-else\nrules: []\n"},
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "someone-else" in _page(response)
    assert Rule.objects.filter(agent=rule.agent).count() == 3


# --- Simulation --------------------------------------------------------------------------------


def test_simulate_shows_the_decision_and_the_matched_rules_and_records_nothing(client, alice, rule):
    entries = AuditEntry.objects.count()
    response = _as(client, alice).post(
        reverse("agents:simulate", args=[rule.agent.public_id]),
        {"action": "stripe.refund", "arguments": '{"amount": 150}', "environment": "live"},
    )
    page = _page(response)
    assert response.context["result"]["decision"] == "requires_approval"
    assert "amount 150 exceeds max_amount 100" in page
    assert "<strong>refund limit</strong>" in page
    assert AuditEntry.objects.count() == entries


def test_simulate_refuses_arguments_that_are_not_an_object(client, alice, rule):
    response = _as(client, alice).post(
        reverse("agents:simulate", args=[rule.agent.public_id]),
        {"action": "stripe.refund", "arguments": "[1, 2]", "environment": "live"},
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.context["form"].errors["arguments"]


# --- Audit log ---------------------------------------------------------------------------------


@pytest.fixture
def checks_logged(org_a, support_bot) -> list[AuditEntry]:
    def check(action: str, decision: str) -> AuditEntry:
        return audit_record(
            organization=org_a,
            kind=AuditEntry.Kind.CHECK,
            agent=support_bot,
            agent_public_id=support_bot.public_id,
            action=action,
            decision=decision,
        )

    return [
        check("stripe.refund", "allow"),
        check("stripe.refund", "block"),
        check("kb.search", "allow"),
    ]


def _audit_ids(response) -> set[str]:
    return {entry.public_id for entry in response.context["page"]}


def test_the_audit_page_lists_the_organisations_entries(client, vera, checks_logged):
    response = _as(client, vera).get(reverse("agents:audit"))
    assert {e.public_id for e in checks_logged} <= _audit_ids(response)


def test_the_audit_page_filters_by_action_and_decision(client, vera, checks_logged):
    response = _as(client, vera).get(
        reverse("agents:audit"), {"action": "stripe.refund", "decision": "block"}
    )
    assert _audit_ids(response) == {checks_logged[1].public_id}


def test_the_audit_page_filters_by_kind_and_agent(client, vera, support_bot, checks_logged):
    response = _as(client, vera).get(
        reverse("agents:audit"), {"kind": "config", "agent": support_bot.public_id}
    )
    assert _audit_ids(response) == set()
    response = client.get(
        reverse("agents:audit"), {"kind": "check", "agent": support_bot.public_id}
    )
    assert _audit_ids(response) == {e.public_id for e in checks_logged}


def test_the_audit_page_filters_by_date_range(client, vera, checks_logged):
    today = timezone.now().date()
    _as(client, vera)
    assert (
        len(_audit_ids(client.get(reverse("agents:audit"), {"since": today, "until": today}))) >= 3
    )
    yesterday = today - timedelta(days=1)
    response = client.get(reverse("agents:audit"), {"until": yesterday})
    assert _audit_ids(response) == set()


def test_the_audit_page_links_to_the_exports_with_its_filters(client, vera, support_bot):
    response = _as(client, vera).get(
        reverse("agents:audit"), {"kind": "check", "agent": support_bot.public_id}
    )
    csv_url = response.context["csv_url"]
    assert csv_url.startswith(reverse("api-audit-export") + "?format=csv")
    assert f"agent={support_bot.public_id}" in csv_url
    export = client.get(csv_url)
    assert export.status_code == HTTPStatus.OK
    assert export["Content-Type"].startswith("text/csv")


def test_the_audit_page_is_paginated(client, vera, org_a):
    for index in range(55):
        audit_record(organization=org_a, kind=AuditEntry.Kind.LOG, action=f"a.{index}")
    _as(client, vera)
    first = client.get(reverse("agents:audit"), {"kind": "log"})
    second = client.get(reverse("agents:audit"), {"kind": "log", "page": 2})
    assert len(first.context["page"]) == 50
    assert len(second.context["page"]) == 5
    assert "kind=log&amp;page=2" in _page(first)


def test_the_audit_page_shows_no_entries_of_another_organisation(
    client, charlie, org_c, checks_logged
):
    response = _as(client, charlie).get(reverse("agents:audit"))
    assert not _audit_ids(response) & {e.public_id for e in checks_logged}


# --- The full language in the rule form ---------------------------------------------------

NESTED_WHEN = """\
any:
  - {field: amount, op: gt, value: 1000}
  - all:
      - {field: currency, op: ne, value: USD}
      - not: {field: customer.tier, op: eq, value: vip}
"""


def test_nested_conditions_written_as_yaml_are_saved(client, alice, support_bot):
    response = _as(client, alice).post(
        reverse("agents:rule_create", args=[support_bot.public_id]),
        _rule_post(
            name="large or foreign",
            action="stripe.refund",
            when=NESTED_WHEN,
            unless="$metadata.role ieq finance",
            message="Finance reviews these.",
            limit_kind="sum",
            limit_sum="amount",
            limit_over="500",
            limit_per="1d",
            limit_by="customer_id",
        ),
    )
    assert response.status_code == HTTPStatus.FOUND
    rule = Rule.objects.get(name="large or foreign")
    assert rule.document["when"]["any"][1]["all"][1] == {
        "not": {"field": "customer.tier", "op": "eq", "value": "vip"}
    }
    assert rule.document["unless"] == [{"field": "$metadata.role", "op": "ieq", "value": "finance"}]
    assert rule.document["message"] == "Finance reviews these."
    assert rule.document["limit"]["by"] == "customer_id"


def test_a_mistake_deep_in_yaml_conditions_is_shown_with_its_path_and_line(
    client, alice, support_bot
):
    response = _as(client, alice).post(
        reverse("agents:rule_create", args=[support_bot.public_id]),
        _rule_post(name="bad", when=NESTED_WHEN.replace("op: eq", "op: equals")),
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    (error,) = response.context["rule_form"].errors["when"]
    assert error.startswith("when.any[1].all[1].not.op (line 5): unknown operator 'equals'")
    assert not Rule.objects.filter(name="bad").exists()


def test_a_line_of_the_simple_syntax_is_named_in_the_error(client, alice, support_bot):
    response = _as(client, alice).post(
        reverse("agents:rule_create", args=[support_bot.public_id]),
        _rule_post(name="bad", when="customer.tier ne vip\n\namount bigger 10"),
    )
    (error,) = response.context["rule_form"].errors["when"]
    assert error.startswith("when[1].op (line 3): unknown operator 'bigger'")


def test_the_edit_form_shows_nested_conditions_as_yaml_that_saves_unchanged(
    client, alice, support_bot
):
    rule = add_rule(
        support_bot,
        name="nested",
        action="stripe.refund",
        effect="block",
        when={
            "any": [{"field": "a", "op": "eq", "value": 1}, {"field": "b", "op": "eq", "value": 2}]
        },
    )
    page = _as(client, alice).get(
        reverse("agents:rule_edit", args=[support_bot.public_id, rule.public_id])
    )
    shown = page.context["form"].initial["when"]
    assert shown.startswith("any:")
    before = dict(rule.document)
    response = client.post(
        reverse("agents:rule_edit", args=[support_bot.public_id, rule.public_id]),
        _rule_post(name="nested", action="stripe.refund", when=shown),
    )
    assert response.status_code == HTTPStatus.FOUND
    rule.refresh_from_db()
    assert rule.document == before


def test_editing_a_rule_on_the_page_keeps_its_routing_redaction_and_grants(
    client, alice, support_bot
):
    approval = {
        "timeout": "30m",
        "approvers": ["group:finance", "user:bob@example.com"],
        "on_timeout": "escalate",
        "escalate_to": ["role:owner"],
        "escalate_timeout": "1h",
        "slack_channel": "#finance-approvals",
        "redact": ["card_number"],
        "grants": ["identical", "amount"],
    }
    stored = add_rule(
        support_bot,
        name="big",
        action="stripe.refund",
        effect="requires_approval",
        approval=approval,
    )
    url = reverse("agents:rule_edit", args=[support_bot.public_id, stored.public_id])
    initial = _as(client, alice).get(url).context["form"].initial
    assert initial["approvers"] == "group:finance, user:bob@example.com"
    assert initial["grants"] == ["identical", "amount"]
    post = _rule_post(
        name="big",
        action="stripe.refund",
        effect="requires_approval",
        approval_timeout="45m",
        **{
            key: initial[key]
            for key in (
                "approvers",
                "on_timeout",
                "escalate_to",
                "escalate_timeout",
                "slack_channel",
                "redact",
                "grants",
            )
        },
    )
    assert client.post(url, post).status_code == HTTPStatus.FOUND
    stored.refresh_from_db()
    assert stored.document["approval"] == {**approval, "timeout": "45m"}


def test_a_bad_approver_on_the_rule_page_is_a_form_error_on_that_field(client, alice, rule):
    response = _as(client, alice).post(
        reverse("agents:rule_edit", args=[rule.agent.public_id, rule.public_id]),
        _rule_post(
            name="refund limit",
            action="stripe.refund",
            effect="requires_approval",
            approvers="role:viewer",
        ),
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "role must be one of" in str(response.context["form"].errors["approvers"])
