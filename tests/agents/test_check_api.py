"""The native check API: decisions, running totals, idempotency, actions and outcomes."""

from __future__ import annotations

import json
from http import HTTPStatus

import pytest
from django.test import Client

from approvals.models import ApprovalRequest
from audit.models import AuditEntry
from tests.agents.conftest import add_rule

pytestmark = pytest.mark.django_db


def check(client: Client, key: str, body: dict, **headers: str):
    return client.post(
        "/api/v1/check",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_X_API_KEY=key,
        **headers,
    )


def test_a_call_no_rule_matches_is_allowed_with_no_policy_configured(client, keys):
    response = check(client, keys.live, {"action": "email.send", "arguments": {"to": "x"}})
    assert response.status_code == HTTPStatus.OK
    body = response.json()
    assert body["decision"] == "allow"
    assert body["status"] == "allowed"
    assert body["reason"] == "no_policy_configured"
    assert body["rule"] is None
    assert body["environment"] == "live"
    assert body["action_id"].startswith("act_")


def test_every_check_writes_one_audit_row_with_the_call(client, keys, refund_rules):
    response = check(
        client, keys.test, {"action": "kb.search", "arguments": {"q": "x"}, "session_id": "s1"}
    )
    entry = AuditEntry.objects.get(public_id=response.json()["action_id"])
    assert entry.kind == AuditEntry.Kind.CHECK
    assert entry.action == "kb.search"
    assert entry.arguments == {"q": "x"}
    assert entry.decision == "allow"
    assert entry.rule_name == "search ok"
    assert entry.environment == "test"
    assert entry.session_id == "s1"
    assert entry.actor_key_id == keys.test_key.pk
    assert entry.latency_us is not None


def test_a_blocked_action_answers_block_naming_the_rule(client, keys, refund_rules):
    body = check(client, keys.live, {"action": "database.users.delete"}).json()
    assert body["decision"] == "block"
    assert body["status"] == "blocked"
    assert body["rule"] == "no deletes"
    assert body["message"]


def test_a_refund_under_the_limit_is_allowed(client, keys, refund_rules):
    body = check(client, keys.live, {"action": "stripe.refund", "arguments": {"amount": 50}}).json()
    assert body["decision"] == "allow"
    assert "within max_amount 100" in body["reason"]


def test_a_refund_over_the_limit_is_held_for_approval(client, keys, refund_rules):
    body = check(
        client, keys.live, {"action": "stripe.refund", "arguments": {"amount": 150}}
    ).json()
    assert body["decision"] == "requires_approval"
    assert body["status"] == "pending"
    assert body["reason"] == "amount 150 exceeds max_amount 100 of rule 'refund limit'"
    assert body["expires_at"]
    approval = ApprovalRequest.objects.get(action_id=body["action_id"])
    assert approval.status == ApprovalRequest.Status.PENDING
    assert approval.arguments == {"amount": 150}


def test_a_count_limit_applies_once_the_window_is_full(client, keys, support_bot):
    add_rule(
        support_bot,
        name="bulk mail",
        action="email.bulk",
        effect="block",
        limit={"count": 2, "per": "1h"},
    )
    decisions = [check(client, keys.live, {"action": "email.bulk"}).json() for _ in range(3)]
    assert [d["decision"] for d in decisions] == ["allow", "allow", "block"]
    assert "3rd call in 1h exceeds limit of 2" in decisions[2]["reason"]


def test_a_sum_limit_adds_up_allowed_calls_in_the_window(client, keys, support_bot):
    add_rule(
        support_bot,
        name="daily refunds",
        action="stripe.refund",
        effect="block",
        limit={"sum": "amount", "over": 100, "per": "1d"},
    )
    first = check(client, keys.live, {"action": "stripe.refund", "arguments": {"amount": 60}})
    second = check(client, keys.live, {"action": "stripe.refund", "arguments": {"amount": 30}})
    third = check(client, keys.live, {"action": "stripe.refund", "arguments": {"amount": 20}})
    assert first.json()["decision"] == "allow"
    assert second.json()["decision"] == "allow"
    assert third.json()["decision"] == "block"
    assert "total 110 in 1d would exceed 100" in third.json()["reason"]


def test_a_sum_limit_counts_approved_requests(client, keys, support_bot, alice):
    from approvals.services import approval_decide

    add_rule(
        support_bot,
        name="daily refunds",
        action="stripe.refund",
        effect="requires_approval",
        limit={"sum": "amount", "over": 100, "per": "1d"},
    )
    held = check(client, keys.live, {"action": "stripe.refund", "arguments": {"amount": 150}})
    approval_decide(request_or_action_id=held.json()["action_id"], actor_user=alice, approve=True)
    small = check(client, keys.live, {"action": "stripe.refund", "arguments": {"amount": 1}})
    assert small.json()["decision"] == "requires_approval"


def test_org_wide_rules_apply_to_every_agent(client, keys, support_bot, org_a):
    add_rule(None, organization=org_a, name="no wires", action="bank.wire", effect="block")
    assert check(client, keys.live, {"action": "bank.wire"}).json()["rule"] == "no wires"


def test_a_rule_change_takes_effect_on_the_next_check(client, keys, support_bot):
    assert check(client, keys.live, {"action": "crm.export"}).json()["decision"] == "allow"
    add_rule(support_bot, name="no exports", action="crm.export", effect="block")
    assert check(client, keys.live, {"action": "crm.export"}).json()["decision"] == "block"


def test_a_default_deny_agent_blocks_unmatched_calls(client, keys, support_bot, alice):
    from agents import services

    services.agent_update(agent=support_bot, actor=alice, default_decision="block")
    body = check(client, keys.live, {"action": "email.send"}).json()
    assert body["decision"] == "block"
    assert "default is block" in body["reason"]


def test_rules_limited_to_live_do_not_apply_to_test_keys(client, keys, support_bot):
    add_rule(
        support_bot, name="live only", action="crm.discount", effect="block", environments=["live"]
    )
    assert check(client, keys.test, {"action": "crm.discount"}).json()["decision"] == "allow"
    assert check(client, keys.live, {"action": "crm.discount"}).json()["decision"] == "block"


def test_an_org_key_names_the_agent_by_name_or_id(client, keys, support_bot, refund_rules):
    by_name = check(client, keys.org, {"action": "kb.search", "agent": "support-bot"})
    by_id = check(client, keys.org, {"action": "kb.search", "agent": support_bot.public_id})
    assert by_name.json()["rule"] == "search ok"
    assert by_id.json()["rule"] == "search ok"


def test_an_org_key_without_agent_is_invalid(client, keys):
    response = check(client, keys.org, {"action": "kb.search"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["field"] == "agent"


def test_an_org_key_naming_an_unknown_agent_gets_404(client, keys):
    response = check(client, keys.org, {"action": "kb.search", "agent": "ghost"})
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert response.json()["code"] == "not_found"


def test_a_deactivated_agent_cannot_check(client, keys, support_bot, alice):
    from agents import services

    services.agent_deactivate(agent=support_bot, actor=alice)
    response = check(client, keys.live, {"action": "kb.search"})
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert response.json()["code"] == "agent_inactive"


def test_an_approver_key_cannot_check(client, keys):
    response = check(client, keys.approver, {"action": "kb.search"})
    assert response.status_code == HTTPStatus.FORBIDDEN


def test_a_bearer_token_is_accepted(client, keys):
    response = client.post(
        "/api/v1/check",
        data=json.dumps({"action": "x"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {keys.live}",
    )
    assert response.status_code == HTTPStatus.OK


# --- Idempotency ----------------------------------------------------------------------------


def test_an_idempotency_key_replays_the_first_answer(client, keys, refund_rules):
    body = {"action": "stripe.refund", "arguments": {"amount": 150}}
    first = check(client, keys.live, body, HTTP_IDEMPOTENCY_KEY="abc")
    second = check(client, keys.live, body, HTTP_IDEMPOTENCY_KEY="abc")
    assert second.json() == first.json()
    assert AuditEntry.objects.filter(kind="check").count() == 1
    assert ApprovalRequest.objects.count() == 1


def test_an_idempotent_replay_survives_a_cleared_cache(client, keys, refund_rules):
    from django.core.cache import cache

    body = {"action": "stripe.refund", "arguments": {"amount": 150}}
    first = check(client, keys.live, body, HTTP_IDEMPOTENCY_KEY="abc").json()
    cache.clear()
    second = check(client, keys.live, body, HTTP_IDEMPOTENCY_KEY="abc").json()
    assert second == first
    assert AuditEntry.objects.filter(kind="check").count() == 1


def test_an_idempotency_key_reused_for_another_request_is_a_conflict(client, keys):
    check(client, keys.live, {"action": "a"}, HTTP_IDEMPOTENCY_KEY="k1")
    response = check(client, keys.live, {"action": "b"}, HTTP_IDEMPOTENCY_KEY="k1")
    assert response.status_code == HTTPStatus.CONFLICT
    assert response.json()["code"] == "idempotency_mismatch"


def test_different_idempotency_keys_create_different_actions(client, keys):
    first = check(client, keys.live, {"action": "a"}, HTTP_IDEMPOTENCY_KEY="k1").json()
    second = check(client, keys.live, {"action": "a"}, HTTP_IDEMPOTENCY_KEY="k2").json()
    assert first["action_id"] != second["action_id"]


# --- Actions and outcomes -------------------------------------------------------------------


def test_the_action_endpoint_reports_a_pending_approval(client, keys, refund_rules):
    held = check(client, keys.live, {"action": "stripe.refund", "arguments": {"amount": 150}})
    action_id = held.json()["action_id"]
    response = client.get(f"/api/v1/actions/{action_id}", HTTP_X_API_KEY=keys.live)
    assert response.status_code == HTTPStatus.OK
    body = response.json()
    assert body["status"] == "pending"
    assert body["arguments"] == {"amount": 150}
    assert body["agent_id"]


def test_waiting_on_an_action_returns_once_it_is_decided(client, keys, refund_rules):
    held = check(client, keys.live, {"action": "stripe.refund", "arguments": {"amount": 150}})
    action_id = held.json()["action_id"]
    ApprovalRequest.objects.filter(action_id=action_id).update(status="approved")
    response = client.get(f"/api/v1/actions/{action_id}?wait=5", HTTP_X_API_KEY=keys.live)
    assert response.json()["status"] == "approved"


@pytest.mark.parametrize("wait", ["-1", "61", "soon"])
def test_a_wait_outside_0_to_60_seconds_is_invalid(client, keys, wait):
    action_id = check(client, keys.live, {"action": "a"}).json()["action_id"]
    response = client.get(f"/api/v1/actions/{action_id}?wait={wait}", HTTP_X_API_KEY=keys.live)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["field"] == "wait"


def test_an_outcome_is_recorded_and_shown_on_the_action(client, keys):
    action_id = check(client, keys.live, {"action": "a"}).json()["action_id"]
    response = client.post(
        f"/api/v1/actions/{action_id}/outcome",
        data=json.dumps({"status": "failed", "error": "card declined"}),
        content_type="application/json",
        HTTP_X_API_KEY=keys.live,
    )
    assert response.status_code == HTTPStatus.CREATED
    assert response.json()["outcome"]["status"] == "failed"
    action = client.get(f"/api/v1/actions/{action_id}", HTTP_X_API_KEY=keys.live).json()
    assert action["outcome"]["error"] == "card declined"


def test_an_outcome_with_an_unknown_status_is_invalid(client, keys):
    action_id = check(client, keys.live, {"action": "a"}).json()["action_id"]
    response = client.post(
        f"/api/v1/actions/{action_id}/outcome",
        data=json.dumps({"status": "great"}),
        content_type="application/json",
        HTTP_X_API_KEY=keys.live,
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["field"] == "status"


def report(client, key, action_id, body):
    return client.post(
        f"/api/v1/actions/{action_id}/outcome",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_X_API_KEY=key,
    )


def test_a_second_different_outcome_for_an_action_is_a_409(client, keys):
    action_id = check(client, keys.live, {"action": "a"}).json()["action_id"]
    first = report(client, keys.live, action_id, {"status": "failed", "error": "timeout"})
    assert first.status_code == HTTPStatus.CREATED
    second = report(client, keys.live, action_id, {"status": "success"})
    assert second.status_code == HTTPStatus.CONFLICT
    assert second.json()["code"] == "conflict"
    assert second.json()["status"] == "failed"
    assert AuditEntry.objects.filter(kind="outcome", action_id=action_id).count() == 1
    action = client.get(f"/api/v1/actions/{action_id}", HTTP_X_API_KEY=keys.live).json()
    assert action["outcome"]["status"] == "failed"


def test_a_retried_identical_outcome_answers_the_recorded_one(client, keys):
    action_id = check(client, keys.live, {"action": "a"}).json()["action_id"]
    body = {"status": "success", "result": {"refund": "re_1"}}
    first = report(client, keys.live, action_id, body)
    again = report(client, keys.live, action_id, body)
    assert again.status_code == HTTPStatus.OK
    assert again.json() == first.json()
    assert AuditEntry.objects.filter(kind="outcome", action_id=action_id).count() == 1


def test_a_member_can_read_an_action(client, keys, alice):
    action_id = check(client, keys.live, {"action": "a"}).json()["action_id"]
    client.force_login(alice)
    assert client.get(f"/api/v1/actions/{action_id}").status_code == HTTPStatus.OK


def test_after_a_downgrade_below_business_a_quorum_rule_blocks_naming_the_plan(
    client, org_a, alice, keys, support_bot
):
    from accounts.models import Plan
    from accounts.services import organization_change_plan

    org_a.plan = Plan.objects.get(slug="business")
    org_a.save(update_fields=["plan"])
    add_rule(
        support_bot,
        name="big transfers",
        action="bank.transfer",
        effect="requires_approval",
        approval={"approvals_required": 2},
    )
    assert check(client, keys.live, {"action": "bank.transfer"}).json()["decision"] == (
        "requires_approval"
    )
    organization_change_plan(
        actor=None, organization=org_a, plan=Plan.objects.get(slug="pro"), as_operator=True
    )
    body = check(client, keys.live, {"action": "bank.transfer"}).json()
    assert body["decision"] == "block"
    assert "needs the Business plan" in body["reason"]
    assert ApprovalRequest.objects.filter(action="bank.transfer").count() == 1


def test_time_conditions_read_the_organisations_time_zone(client, keys, support_bot, org_a):
    from freezegun import freeze_time

    from accounts.models import Organization

    add_rule(
        support_bot,
        name="business hours only",
        action="payments.*",
        effect="block",
        when=[{"field": "$time.hour", "op": "not_in", "value": list(range(9, 17))}],
    )
    with freeze_time("2026-12-02T08:30:00Z"):  # 08:30 in UTC, 17:30 in Tokyo, 09:30 in Paris
        assert check(client, keys.live, {"action": "payments.send"}).json()["decision"] == "block"
        Organization.objects.filter(pk=org_a.pk).update(time_zone="Europe/Paris")
        from agents import runtime

        runtime.organization_forget(org_a.pk)
        assert check(client, keys.live, {"action": "payments.send"}).json()["decision"] == "allow"
