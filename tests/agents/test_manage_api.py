"""Agents, rules, keys and policy documents through the API, for members with the right role;
other organisations get 404."""

from __future__ import annotations

import json
from http import HTTPStatus

import pytest
import yaml

from accounts.models import Organization
from agents import services
from agents.models import Agent, ApiKey, Rule
from audit.models import AuditEntry
from tests.agents.conftest import add_rule
from tests.factories import plan

pytestmark = pytest.mark.django_db


def send(client, method, url, body=None, **extra):
    data = json.dumps(body) if body is not None else None
    return getattr(client, method)(url, data=data, content_type="application/json", **extra)


# --- Agents ---------------------------------------------------------------------------------


def test_an_owner_creates_an_agent_and_the_change_is_audited(client, alice, org_a):
    client.force_login(alice)
    response = send(client, "post", "/api/v1/agents", {"name": "billing-bot", "default": "block"})
    assert response.status_code == HTTPStatus.CREATED
    assert response.json()["id"].startswith("agt_")
    entry = AuditEntry.objects.get(kind="config", target_type="agent")
    assert entry.actor_user == alice
    assert entry.data["after"]["name"] == "billing-bot"


def test_a_viewer_can_list_agents_but_not_create_them(client, vera, support_bot):
    client.force_login(vera)
    assert client.get("/api/v1/agents").json()["results"][0]["name"] == "support-bot"
    response = send(client, "post", "/api/v1/agents", {"name": "x"})
    assert response.status_code == HTTPStatus.FORBIDDEN


def test_an_outsider_gets_404_for_another_orgs_agent(client, charlie, org_c, support_bot):
    client.force_login(charlie)
    assert client.get(f"/api/v1/agents/{support_bot.public_id}").status_code == 404
    response = send(client, "patch", f"/api/v1/agents/{support_bot.public_id}", {"name": "x"})
    assert response.status_code == HTTPStatus.NOT_FOUND


def test_the_free_plan_allows_one_agent(client, alice, org_a):
    Organization.objects.filter(pk=org_a.pk).update(plan=plan("free"))
    client.force_login(alice)
    assert send(client, "post", "/api/v1/agents", {"name": "one"}).status_code == 201
    response = send(client, "post", "/api/v1/agents", {"name": "two"})
    assert response.status_code == HTTPStatus.PAYMENT_REQUIRED
    assert response.json()["code"] == "plan_required"
    assert "Pro" in response.json()["detail"]


def test_deactivating_an_agent_keeps_it(client, alice, support_bot):
    client.force_login(alice)
    response = client.delete(f"/api/v1/agents/{support_bot.public_id}")
    assert response.json()["is_active"] is False
    assert Agent.objects.filter(pk=support_bot.pk, is_active=False).exists()


# --- Rules ----------------------------------------------------------------------------------


def test_a_rule_is_created_and_read_back_in_document_form(client, alice, support_bot):
    client.force_login(alice)
    body = {
        "name": "refund limit",
        "action": "stripe.refund",
        "effect": "requires_approval",
        "max_amount": 100,
        "approval": {"timeout": "30m"},
    }
    created = send(client, "post", f"/api/v1/agents/{support_bot.public_id}/rules", body)
    assert created.status_code == HTTPStatus.CREATED
    rule = created.json()
    assert rule["max_amount"] == 100
    assert rule["approval"] == {"timeout": "30m"}
    listed = client.get(f"/api/v1/agents/{support_bot.public_id}/rules").json()["results"]
    assert [r["id"] for r in listed] == [rule["id"]]


@pytest.mark.parametrize(
    "name",
    [
        "bad\tbot",
        "bad\nbot",
        "bell\x07",
        "esc\x1b[31mred",
        "del\x7f",
        "c1\x85bot",
        "rtl\u202ebot",
        "zero\u200bwidth",
        "line\u2028sep",
    ],
)
def test_an_agent_name_with_control_characters_is_a_400(client, alice, support_bot, name):
    client.force_login(alice)
    created = send(client, "post", "/api/v1/agents", {"name": name})
    assert created.status_code == HTTPStatus.BAD_REQUEST
    assert created.json()["field"] == "name"
    renamed = send(client, "patch", f"/api/v1/agents/{support_bot.public_id}", {"name": name})
    assert renamed.status_code == HTTPStatus.BAD_REQUEST
    assert renamed.json()["field"] == "name"
    assert list(Agent.objects.values_list("name", flat=True)) == ["support-bot"]


@pytest.mark.parametrize("name", ["Support Bot", "caf\u00e9-bot", "\u65e5\u672c", "bot \U0001f916"])
def test_an_agent_name_may_hold_spaces_and_any_script(client, alice, org_a, name):
    client.force_login(alice)
    response = send(client, "post", "/api/v1/agents", {"name": name})
    assert response.status_code == HTTPStatus.CREATED
    assert response.json()["name"] == name


def test_a_bad_rule_names_the_field(client, alice, support_bot):
    client.force_login(alice)
    body = {
        "name": "x",
        "action": "a",
        "effect": "block",
        "when": [{"field": "f", "op": "zz", "value": 1}],
    }
    response = send(client, "post", f"/api/v1/agents/{support_bot.public_id}/rules", body)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["field"] == "when[0].op"


def test_a_rule_is_updated_and_deleted(client, alice, support_bot):
    rule = add_rule(support_bot, name="r", action="a", effect="block")
    client.force_login(alice)
    url = f"/api/v1/agents/{support_bot.public_id}/rules/{rule.public_id}"
    assert send(client, "patch", url, {"effect": "allow"}).json()["effect"] == "allow"
    assert client.delete(url).status_code == HTTPStatus.NO_CONTENT
    assert not Rule.objects.filter(pk=rule.pk).exists()
    verbs = list(AuditEntry.objects.filter(target_type="rule").values_list("data__verb", flat=True))
    assert sorted(verbs) == ["created", "deleted", "updated"]


def test_org_wide_rules_have_their_own_endpoint(client, alice, org_a):
    client.force_login(alice)
    created = send(client, "post", "/api/v1/rules", {"name": "w", "action": "*", "effect": "allow"})
    assert created.json()["scope"] == "org"
    assert len(client.get("/api/v1/rules").json()["results"]) == 1


def test_requires_approval_rules_are_refused_on_free(client, alice, org_a, support_bot):
    Organization.objects.filter(pk=org_a.pk).update(plan=plan("free"))
    client.force_login(alice)
    body = {"name": "r", "action": "a", "effect": "requires_approval"}
    response = send(client, "post", f"/api/v1/agents/{support_bot.public_id}/rules", body)
    assert response.status_code == HTTPStatus.PAYMENT_REQUIRED
    assert "Pro" in response.json()["detail"]


def test_a_quorum_is_refused_below_business(client, alice, support_bot):
    client.force_login(alice)
    body = {
        "name": "r",
        "action": "a",
        "effect": "requires_approval",
        "approval": {"approvals_required": 2},
    }
    response = send(client, "post", f"/api/v1/agents/{support_bot.public_id}/rules", body)
    assert response.status_code == HTTPStatus.PAYMENT_REQUIRED
    assert "Business" in response.json()["detail"]


def test_an_outsider_cannot_see_or_change_another_orgs_rules(client, charlie, org_c, support_bot):
    rule = add_rule(support_bot, name="r", action="a", effect="block")
    client.force_login(charlie)
    assert client.get(f"/api/v1/rules/{rule.public_id}").status_code == 404
    assert client.delete(f"/api/v1/rules/{rule.public_id}").status_code == 404


# --- Keys -----------------------------------------------------------------------------------


def test_a_key_secret_is_shown_once_and_stored_hashed(client, alice, support_bot):
    client.force_login(alice)
    body = {"kind": "agent", "agent": support_bot.public_id, "environment": "test"}
    created = send(client, "post", "/api/v1/keys", body).json()
    assert created["key"].startswith("wdn_test_")
    assert len(created["key"]) >= len("wdn_test_") + 32
    stored = ApiKey.objects.get(public_id=created["id"])
    assert created["key"] not in stored.hashed_key
    listed = client.get("/api/v1/keys").json()["results"]
    assert all("key" not in k for k in listed)
    assert "hashed_key" not in json.dumps(
        AuditEntry.objects.filter(target_type="apikey").values_list("data", flat=True)[0]
    )


@pytest.mark.parametrize(("kind", "prefix"), [("org", "wdn_org_"), ("approver", "wdn_apv_")])
def test_org_and_approver_keys_have_their_prefix(client, alice, org_a, kind, prefix):
    client.force_login(alice)
    assert send(client, "post", "/api/v1/keys", {"kind": kind}).json()["key"].startswith(prefix)


def test_a_revoked_key_is_refused_at_once(client, alice, keys):
    assert (
        send(client, "post", "/api/v1/check", {"action": "a"}, HTTP_X_API_KEY=keys.live).status_code
        == 200
    )
    client.force_login(alice)
    client.post(f"/api/v1/keys/{keys.live_key.public_id}/revoke")
    client.logout()
    response = send(client, "post", "/api/v1/check", {"action": "a"}, HTTP_X_API_KEY=keys.live)
    assert response.status_code == HTTPStatus.UNAUTHORIZED


def test_a_rotated_key_works_during_the_grace_period(client, alice, keys):
    client.force_login(alice)
    rotated = send(
        client, "post", f"/api/v1/keys/{keys.live_key.public_id}/rotate", {"grace_seconds": 3600}
    ).json()
    client.logout()
    for key in (keys.live, rotated["key"]):
        response = send(client, "post", "/api/v1/check", {"action": "a"}, HTTP_X_API_KEY=key)
        assert response.status_code == HTTPStatus.OK
    assert rotated["previous"]["replaced_by"] == rotated["id"]


def test_a_rotated_key_stops_after_the_grace_period(client, alice, keys):
    services.api_key_rotate(api_key=keys.live_key, actor=alice, grace_seconds=0)
    response = send(client, "post", "/api/v1/check", {"action": "a"}, HTTP_X_API_KEY=keys.live)
    assert response.status_code == HTTPStatus.UNAUTHORIZED


def test_a_negative_grace_is_invalid(client, alice, keys):
    client.force_login(alice)
    response = send(
        client, "post", f"/api/v1/keys/{keys.live_key.public_id}/rotate", {"grace_seconds": -5}
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["field"] == "grace_seconds"


def test_an_outsider_cannot_see_or_revoke_another_orgs_key(client, charlie, org_c, keys):
    client.force_login(charlie)
    assert client.get(f"/api/v1/keys/{keys.live_key.public_id}").status_code == 404
    assert client.post(f"/api/v1/keys/{keys.live_key.public_id}/revoke").status_code == 404
    assert keys.live not in json.dumps(client.get("/api/v1/keys").json())


def test_last_used_is_recorded_but_not_on_every_call(client, keys):
    for _ in range(3):
        send(client, "post", "/api/v1/check", {"action": "a"}, HTTP_X_API_KEY=keys.live)
    keys.live_key.refresh_from_db()
    assert keys.live_key.last_used_at is not None
    first = keys.live_key.last_used_at
    send(client, "post", "/api/v1/check", {"action": "a"}, HTTP_X_API_KEY=keys.live)
    keys.live_key.refresh_from_db()
    assert keys.live_key.last_used_at == first


# --- Tenant isolation of actions and logs ---------------------------------------------------


def test_another_orgs_key_gets_404_for_an_action(client, keys, charlie_keys):
    action_id = send(
        client, "post", "/api/v1/check", {"action": "a"}, HTTP_X_API_KEY=keys.live
    ).json()["action_id"]
    for url in (f"/api/v1/actions/{action_id}", f"/status/{action_id}"):
        assert client.get(url, HTTP_X_API_KEY=charlie_keys.live).status_code == 404
    response = send(
        client,
        "post",
        f"/api/v1/actions/{action_id}/outcome",
        {"status": "success"},
        HTTP_X_API_KEY=charlie_keys.org,
    )
    assert response.status_code == HTTPStatus.NOT_FOUND


def test_another_agents_key_gets_404_for_an_action(client, keys, org_a, alice):
    other = services.agent_create(organization=org_a, actor=alice, name="other-bot")
    _, other_key = services.api_key_create(
        organization=org_a, kind="agent", agent=other, actor=alice
    )
    action_id = send(
        client, "post", "/api/v1/check", {"action": "a"}, HTTP_X_API_KEY=keys.live
    ).json()["action_id"]
    assert client.get(f"/api/v1/actions/{action_id}", HTTP_X_API_KEY=other_key).status_code == 404


def test_an_outsider_cannot_read_another_orgs_action(client, keys, charlie, org_c):
    action_id = send(
        client, "post", "/api/v1/check", {"action": "a"}, HTTP_X_API_KEY=keys.live
    ).json()["action_id"]
    client.force_login(charlie)
    assert client.get(f"/api/v1/actions/{action_id}").status_code == 404


def test_an_org_key_cannot_log_for_another_orgs_agent(client, keys, charlie_bot):
    response = send(
        client,
        "post",
        "/sdk/log",
        {"agent_id": charlie_bot.public_id, "action": "a", "status": "success"},
        HTTP_X_API_KEY=keys.org,
    )
    assert response.status_code == HTTPStatus.NOT_FOUND


# --- Simulation and policy documents --------------------------------------------------------


def test_simulation_answers_the_decision_and_records_nothing(
    client, alice, refund_rules, support_bot
):
    client.force_login(alice)
    before = AuditEntry.objects.count()
    response = send(
        client,
        "post",
        f"/api/v1/agents/{support_bot.public_id}/simulate",
        {"action": "stripe.refund", "arguments": {"amount": 150}},
    )
    body = response.json()
    assert body["decision"] == "requires_approval"
    assert [m["rule"] for m in body["matched"]] == ["refund limit"]
    assert AuditEntry.objects.count() == before


POLICY = """\
agent: support-bot
default: allow
rules:
- name: refund limit
  action: stripe.refund
  effect: requires_approval
  max_amount: 100
- name: no deletes
  action: database.*.delete
  effect: block
- name: daily refund budget
  action: stripe.refund
  effect: requires_approval
  limit:
    sum: amount
    over: 2000
    per: 1d
- name: vip only
  action: crm.discount
  effect: block
  when:
  - field: customer.tier
    op: ne
    value: vip
  environments:
  - live
"""


def test_a_policy_document_round_trips_through_the_api(client, alice, support_bot):
    client.force_login(alice)
    url = f"/api/v1/agents/{support_bot.public_id}/policy"
    put = client.put(url, data=POLICY, content_type="application/yaml")
    assert put.status_code == HTTPStatus.OK
    assert client.get(url).content.decode() == POLICY
    as_json = client.get(url, HTTP_ACCEPT="application/json").json()
    assert as_json == yaml.safe_load(POLICY)


def test_a_bad_policy_document_changes_nothing_and_names_rule_and_field(client, alice, support_bot):
    add_rule(support_bot, name="keep me", action="a", effect="block")
    client.force_login(alice)
    bad = POLICY.replace("effect: block\n", "effect: explode\n", 1)
    response = client.put(
        f"/api/v1/agents/{support_bot.public_id}/policy", data=bad, content_type="application/yaml"
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    body = response.json()
    assert body["rule"] == "no deletes"
    assert body["field"] == "rules[1].effect"
    assert list(Rule.objects.values_list("name", flat=True)) == ["keep me"]


def test_a_json_policy_document_is_accepted(client, alice, support_bot):
    client.force_login(alice)
    document = {
        "agent": "support-bot",
        "default": "block",
        "rules": [{"name": "ok", "action": "kb.*", "effect": "allow"}],
    }
    response = send(client, "put", f"/api/v1/agents/{support_bot.public_id}/policy", document)
    assert response.status_code == HTTPStatus.OK
    support_bot.refresh_from_db()
    assert support_bot.default_decision == "block"


def test_a_viewer_cannot_replace_a_policy(client, vera, support_bot):
    client.force_login(vera)
    response = client.put(
        f"/api/v1/agents/{support_bot.public_id}/policy",
        data=POLICY,
        content_type="application/yaml",
    )
    assert response.status_code == HTTPStatus.FORBIDDEN


def test_token_usage_is_summarised_by_model_and_day(client, keys, alice):
    for model in ("gpt-4o", "gpt-4o", "unknown-model"):
        send(
            client,
            "post",
            "/api/v1/token-usage",
            {"model": model, "prompt_tokens": 100, "completion_tokens": 50, "session_id": "s"},
            HTTP_X_API_KEY=keys.live,
        )
    client.force_login(alice)
    by_model = client.get("/api/v1/token-usage/summary?group_by=model").json()["results"]
    assert [(r["model"], r["calls"]) for r in by_model] == [("gpt-4o", 2), ("unknown-model", 1)]
    assert by_model[1]["total_cost_usd"] == 0
    by_day = client.get("/api/v1/token-usage/summary?group_by=day").json()["results"]
    assert by_day[0]["total_tokens"] == 450
    by_session = client.get("/api/v1/token-usage/summary?group_by=session").json()["results"]
    assert by_session[0]["session"] == "s"
