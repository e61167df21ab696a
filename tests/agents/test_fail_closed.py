"""Fail closed, through the HTTP API: what an agent sends (names, types, encodings, signs)
never turns a held or blocked call into an allowed one."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

import pytest
from django.test import Client

from audit.models import AuditEntry
from tests.agents.conftest import add_rule

pytestmark = pytest.mark.django_db


def post(client: Client, path: str, key: str, body: Any):
    return client.post(
        path, data=json.dumps(body), content_type="application/json", HTTP_X_API_KEY=key
    )


def native(client: Client, key: str, action: str, arguments: dict | None = None) -> dict:
    response = post(client, "/api/v1/check", key, {"action": action, "arguments": arguments or {}})
    assert response.status_code == HTTPStatus.OK, response.content
    return response.json()


# --- Action names ----------------------------------------------------------------------------


@pytest.fixture
def no_deletes(support_bot):
    return add_rule(support_bot, name="no deletes", action="database.*.delete", effect="block")


@pytest.mark.parametrize(
    "action", ["Database.users.delete", "DATABASE.USERS.DELETE", "database.Users.delete"]
)
def test_an_action_in_another_case_matches_the_rule(client, keys, no_deletes, action):
    body = native(client, keys.live, action)
    assert (body["decision"], body["rule"]) == ("block", "no deletes")
    assert AuditEntry.objects.get(public_id=body["action_id"]).action == action  # as sent


CHECK_ENDPOINTS = [
    ("/api/v1/check", "action", lambda action: {"action": action}),
    ("/policy/check", "tool_name", lambda action: {"tool_name": action, "kwargs": {}}),
    (
        "/sdk/check",
        "action",
        lambda action: {"agent_id": "support-bot", "action": action, "context": {}},
    ),
    (
        "/sdk/log",
        "action",
        lambda action: {"agent_id": "support-bot", "action": action, "status": "success"},
    ),
]
BAD_ACTIONS = [
    "database.users.delete ",
    " database.users.delete",
    "database.users\tdelete",
    "database.users.delete\n",
    "database..delete",
    "database.*.delete",
    "d\u0430tabase.users.delete",  # Cyrillic a
    "a" * 201,
    "",
    5,
    None,
]


@pytest.mark.parametrize(("path", "field", "body"), CHECK_ENDPOINTS, ids=lambda v: str(v)[:20])
@pytest.mark.parametrize("action", BAD_ACTIONS, ids=repr)
def test_a_malformed_action_name_is_refused_naming_the_field(
    client, keys, no_deletes, path, field, body, action
):
    key = keys.org if path.startswith("/sdk") else keys.live
    before = AuditEntry.objects.count()
    response = post(client, path, key, body(action))
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["field"] == field
    assert AuditEntry.objects.count() == before


def test_a_rule_pattern_with_whitespace_is_refused(client, alice, support_bot):
    client.force_login(alice)
    response = client.post(
        f"/api/v1/agents/{support_bot.public_id}/rules",
        data=json.dumps({"name": "x", "action": "database.*.delete ", "effect": "block"}),
        content_type="application/json",
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["field"] == "action"


# --- Types, encodings and signs -------------------------------------------------------------


@pytest.fixture
def big_refunds(support_bot):
    return add_rule(
        support_bot,
        name="big refunds",
        action="stripe.refund",
        effect="requires_approval",
        when=[{"field": "amount", "op": "gt", "value": 1000}],
    )


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        (5000, "rule 'big refunds' requires approval"),
        (5000.0, "rule 'big refunds' requires approval"),
        ("5000", "rule 'big refunds' requires approval"),
        ("5e3", "rule 'big refunds' requires approval"),
        ({"value": 5000}, "amount is not a number, so rule 'big refunds' applies"),
        ([5000], "amount is not a number, so rule 'big refunds' applies"),
        ("abc", "amount is not a number, so rule 'big refunds' applies"),
        (None, "amount is not a number, so rule 'big refunds' applies"),
        (True, "amount is not a number, so rule 'big refunds' applies"),
    ],
)
def test_an_amount_in_any_form_is_held(client, keys, big_refunds, amount, reason):
    body = native(client, keys.live, "stripe.refund", {"amount": amount})
    assert (body["decision"], body["reason"]) == ("requires_approval", reason)


def test_a_missing_amount_is_held_saying_so(client, keys, big_refunds):
    body = native(client, keys.live, "stripe.refund", {"Amount": 5000})
    assert (body["decision"], body["reason"]) == (
        "requires_approval",
        "amount is missing, so rule 'big refunds' applies",
    )


def test_a_small_amount_is_still_allowed(client, keys, big_refunds):
    assert native(client, keys.live, "stripe.refund", {"amount": "50"})["decision"] == "allow"


@pytest.mark.parametrize("amount", [-150, "-150", -0.5, "-1e9"])
def test_a_negative_amount_is_never_within_max_amount(client, keys, support_bot, amount):
    add_rule(
        support_bot,
        name="refund limit",
        action="stripe.refund",
        effect="requires_approval",
        max_amount=100,
    )
    body = native(client, keys.live, "stripe.refund", {"amount": amount})
    assert body["decision"] == "requires_approval"
    assert "is negative" in body["reason"]


def test_a_negative_amount_never_lowers_a_running_total(client, keys, support_bot):
    add_rule(
        support_bot,
        name="daily refunds",
        action="stripe.refund",
        effect="block",
        limit={"sum": "amount", "over": 2000, "per": "1d"},
    )
    refund = native(client, keys.live, "stripe.refund", {"amount": -1000000})
    assert refund["decision"] == "block"
    assert refund["reason"].startswith("amount -1000000 is negative")
    assert native(client, keys.live, "stripe.refund", {"amount": 1500})["decision"] == "allow"
    over = native(client, keys.live, "stripe.refund", {"amount": 600})
    assert over["decision"] == "block"
    assert "total 2100 in 1d would exceed 2000" in over["reason"]


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_a_non_finite_amount_is_refused_before_any_rule_reads_it(client, keys, support_bot, token):
    add_rule(support_bot, name="cap", action="stripe.refund", effect="block", max_amount=100)
    response = client.post(
        "/api/v1/check",
        data='{"action": "stripe.refund", "arguments": {"amount": TOKEN}}'.replace("TOKEN", token),
        content_type="application/json",
        HTTP_X_API_KEY=keys.live,
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert not AuditEntry.objects.filter(kind="check").exists()


# --- Through the compatible APIs ------------------------------------------------------------


def test_the_arden_api_holds_a_stringly_typed_amount(client, keys, big_refunds):
    response = post(
        client,
        "/policy/check",
        keys.live,
        {"tool_name": "Stripe.Refund", "kwargs": {"amount": "5000"}},
    )
    assert response.json()["decision"] == "requires_approval"


def test_the_agentwarden_api_holds_a_wrapped_amount(client, keys, big_refunds):
    response = post(
        client,
        "/sdk/check",
        keys.org,
        {"agent_id": "support-bot", "action": "stripe.refund", "context": {"amount": {"v": 1}}},
    )
    body = response.json()
    assert (body["allowed"], body["requires_approval"]) == (False, True)


# --- The rule's message ---------------------------------------------------------------------


def test_the_deciding_rules_message_reaches_the_agent_and_the_reviewer(client, keys, support_bot):
    add_rule(
        support_bot,
        name="big refunds",
        action="stripe.refund",
        effect="requires_approval",
        message="Refunds over 1,000 need a finance reviewer.",
        when=[{"field": "amount", "op": "gt", "value": 1000}],
    )
    body = native(client, keys.live, "stripe.refund", {"amount": 5000})
    assert body["message"] == "Refunds over 1,000 need a finance reviewer."
    assert body["reason"] == "rule 'big refunds' requires approval"
    arden = post(
        client,
        "/policy/check",
        keys.live,
        {"tool_name": "stripe.refund", "kwargs": {"amount": 5000}},
    ).json()
    assert arden["message"] == "Refunds over 1,000 need a finance reviewer."
    entry = AuditEntry.objects.get(public_id=body["action_id"])
    assert entry.data["message"] == "Refunds over 1,000 need a finance reviewer."


def test_without_a_message_the_agent_is_told_the_reason(client, keys, no_deletes):
    body = native(client, keys.live, "database.users.delete")
    assert body["message"] == "blocked by rule 'no deletes'"
