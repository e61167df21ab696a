"""Backtest: an agent's recorded calls replayed against a candidate policy, through
``POST /api/v1/agents/{id}/policy/backtest``, ``warden_policy backtest`` and the policy
editor's "Test against the last 7 days". Compared with a hand-computed expectation,
including a running total that runs out part-way through the period."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from http import HTTPStatus
from typing import Any

import pytest
import yaml
from django.core.management import CommandError, call_command
from django.db.models import Sum
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from freezegun import freeze_time

from agents import services
from agents.backtest import MAX_CALLS
from agents.models import Agent, LimitBucket, LimitCounter, Rule
from audit.models import AuditEntry
from tests.agents.conftest import add_rule, keys_for

pytestmark = pytest.mark.django_db

CANDIDATE = """\
agent: support-bot
rules:
  - name: daily refund budget
    action: stripe.refund
    effect: requires_approval
    limit: {sum: amount, over: 1500, per: 1d}
  - name: no deletes
    action: "database.*.delete"
    effect: block
  - name: maybe block searches
    action: kb.search
    effect: block
    mode: shadow
"""


def check(client: Client, key: str, action: str, **arguments: Any) -> str:
    response = client.post(
        "/api/v1/check",
        data=json.dumps({"action": action, "arguments": arguments}),
        content_type="application/json",
        HTTP_X_API_KEY=key,
    )
    assert response.status_code == HTTPStatus.OK, response.content
    return response.json()["action_id"]


def backtest(client: Client, agent: Agent, body: dict[str, Any]) -> Any:
    return client.post(
        f"/api/v1/agents/{agent.public_id}/policy/backtest",
        data=json.dumps(body),
        content_type="application/json",
    )


@pytest.fixture
def period(client, support_bot, keys, org_a, alice) -> dict[str, Any]:
    """The recorded traffic (the agent has no rules: everything was allowed):

    T0 - 2h  refund 300        before the period: the candidate's 1d window still holds it
    T0 + 1h  refund 400        300 + 400 = 700   within 1500: allow
    T0 + 2h  refund 500        1200              allow
    T0 + 3h  kb.search         no rule           allow
    T0 + 4h  refund 600        1800 > 1500       requires_approval (not counted)
    T0 + 5h  users.delete      no deletes        block
    T0 + 6h  refund 50         1250              allow
    T0 + 30h refund 5000       after the period: not replayed
    and another agent's refund inside the period, not replayed either.
    """
    t0 = (timezone.now() - timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    other = services.agent_create(organization=org_a, actor=alice, name="other-bot")
    other_key = keys_for(other, alice).live
    ids = {}
    plan = [
        (-2, "before", "stripe.refund", {"amount": 300}),
        (1, "r400", "stripe.refund", {"amount": 400}),
        (2, "r500", "stripe.refund", {"amount": 500}),
        (3, "search", "kb.search", {}),
        (4, "r600", "stripe.refund", {"amount": 600}),
        (5, "delete", "database.users.delete", {}),
        (6, "r50", "stripe.refund", {"amount": 50}),
        (30, "after", "stripe.refund", {"amount": 5000}),
    ]
    for hours, name, action, arguments in plan:
        with freeze_time(t0 + timedelta(hours=hours)):
            ids[name] = check(client, keys.live, action, **arguments)
    with freeze_time(t0 + timedelta(hours=2, minutes=30)):
        check(client, other_key, "stripe.refund", amount=1000)
    return {"t0": t0, "since": t0, "until": t0 + timedelta(hours=24), "ids": ids}


def expected(ids: dict[str, str]) -> dict[str, Any]:
    return {
        "calls": 6,
        "changed": 2,
        "transitions": {"allow->block": 1, "allow->requires_approval": 1},
        "by_rule": [
            {"rule": "daily refund budget", "scope": "agent", "matched": 4, "changed": 1},
            {"rule": "no deletes", "scope": "agent", "matched": 1, "changed": 1},
        ],
        "samples_": [
            (
                ids["r600"],
                "stripe.refund",
                {"amount": 600},
                "allow",
                "requires_approval",
                "daily refund budget",
                "amount total 1800 in 1d would exceed 1500 of rule 'daily refund budget'",
            ),
            (
                ids["delete"],
                "database.users.delete",
                {},
                "allow",
                "block",
                "no deletes",
                "blocked by rule 'no deletes'",
            ),
        ],
    }


def summary(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "calls": result["calls"],
        "changed": result["changed"],
        "transitions": result["transitions"],
        "by_rule": result["by_rule"],
        "samples_": [
            (
                s["action_id"],
                s["action"],
                s["arguments"],
                s["was"],
                s["would_be"],
                s["rule"],
                s["reason"],
            )
            for s in result["samples"]
        ],
    }


def test_the_backtest_matches_the_hand_computed_replay(client, alice, support_bot, period):
    client.force_login(alice)
    response = backtest(
        client,
        support_bot,
        {
            "policy": CANDIDATE,
            "since": period["since"].isoformat(),
            "until": period["until"].isoformat(),
        },
    )
    assert response.status_code == HTTPStatus.OK, response.content
    result = response.json()
    assert summary(result) == expected(period["ids"])
    assert result["truncated"] is False
    assert result["limit"] == MAX_CALLS


def test_calls_the_candidate_allows_count_towards_its_budget(client, alice, support_bot, period):
    """300 (before the period) + 400 + 500 + 600 = 1800 fits a budget of 1800 exactly, and
    then the 50 does not."""
    client.force_login(alice)
    result = backtest(
        client,
        support_bot,
        {
            "policy": CANDIDATE.replace("over: 1500", "over: 1800"),
            "since": period["since"].isoformat(),
            "until": period["until"].isoformat(),
        },
    ).json()
    assert result["transitions"] == {"allow->block": 1, "allow->requires_approval": 1}
    held = next(s for s in result["samples"] if s["would_be"] == "requires_approval")
    assert held["action_id"] == period["ids"]["r50"]
    assert held["reason"] == (
        "amount total 1850 in 1d would exceed 1800 of rule 'daily refund budget'"
    )


def test_a_json_object_candidate_is_read_like_put(client, alice, support_bot, period):
    client.force_login(alice)
    response = backtest(
        client,
        support_bot,
        {
            "policy": yaml.safe_load(CANDIDATE),
            "since": period["since"].isoformat(),
            "until": period["until"].isoformat(),
        },
    )
    assert summary(response.json()) == expected(period["ids"])


def test_the_limit_bounds_the_calls_replayed(client, alice, support_bot, period):
    client.force_login(alice)
    response = backtest(
        client,
        support_bot,
        {"policy": CANDIDATE, "since": period["since"].isoformat(), "limit": 3},
    )
    result = response.json()
    assert (result["calls"], result["truncated"], result["limit"]) == (3, True, 3)
    assert result["changed"] == 0


def test_a_backtest_records_nothing_and_changes_nothing(client, alice, support_bot, period):
    add_rule(support_bot, name="kept", action="stripe.refund", effect="allow")
    support_bot.refresh_from_db()
    before = (
        AuditEntry.objects.count(),
        LimitCounter.objects.count(),
        LimitBucket.objects.aggregate(Sum("count")),
        list(Rule.objects.values_list("name", "document")),
        support_bot.policy_revision,
    )
    client.force_login(alice)
    assert (
        backtest(
            client, support_bot, {"policy": CANDIDATE, "since": period["since"].isoformat()}
        ).status_code
        == HTTPStatus.OK
    )
    support_bot.refresh_from_db()
    after = (
        AuditEntry.objects.count(),
        LimitCounter.objects.count(),
        LimitBucket.objects.aggregate(Sum("count")),
        list(Rule.objects.values_list("name", "document")),
        support_bot.policy_revision,
    )
    assert after == before


def test_organisation_rules_take_part_as_they_would_after_put(client, alice, org_a, period):
    add_rule(None, organization=org_a, name="org searches", action="kb.search", effect="block")
    agent = Agent.objects.get(name="support-bot")
    client.force_login(alice)
    result = backtest(
        client,
        agent,
        {
            "policy": CANDIDATE,
            "since": period["since"].isoformat(),
            "until": period["until"].isoformat(),
        },
    ).json()
    assert result["transitions"] == {"allow->block": 2, "allow->requires_approval": 1}
    assert result["by_rule"][-1] == {
        "rule": "org searches",
        "scope": "org",
        "matched": 1,
        "changed": 1,
    }


def test_an_invalid_candidate_gets_the_same_400_as_put(client, alice, support_bot):
    client.force_login(alice)
    broken = CANDIDATE.replace("effect: block\n  - name: maybe", "effect: blok\n  - name: maybe")
    assert broken != CANDIDATE
    put = client.put(
        f"/api/v1/agents/{support_bot.public_id}/policy",
        data=broken,
        content_type="application/yaml",
    )
    response = backtest(client, support_bot, {"policy": broken, "since": "7d"})
    assert put.status_code == response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json() == put.json()
    assert response.json()["field"] == "rules[1].effect"


def test_a_candidate_for_another_agent_is_refused_as_put_refuses_it(client, alice, support_bot):
    client.force_login(alice)
    response = backtest(
        client,
        support_bot,
        {"policy": CANDIDATE.replace("agent: support-bot", "agent: other"), "since": "7d"},
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["field"] == "agent"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"since": "7d"}, "policy"),
        ({"policy": 5, "since": "7d"}, "policy"),
        ({"policy": CANDIDATE}, "since"),
        ({"policy": CANDIDATE, "since": "last tuesday"}, "since"),
        ({"policy": CANDIDATE, "since": "2026-01-02T00:00:00Z", "until": "2026-01-01"}, "until"),
        ({"policy": CANDIDATE, "since": "7d", "limit": MAX_CALLS + 1}, "limit"),
        ({"policy": CANDIDATE, "since": "7d", "limit": "10"}, "limit"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(client, alice, support_bot, body, field):
    client.force_login(alice)
    response = backtest(client, support_bot, body)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["field"] == field


def test_a_viewer_may_backtest_because_it_changes_nothing(client, vera, support_bot):
    client.force_login(vera)
    response = backtest(client, support_bot, {"policy": CANDIDATE, "since": "7d"})
    assert response.status_code == HTTPStatus.OK
    assert response.json()["calls"] == 0


def test_an_agent_key_cannot_backtest(client, support_bot, keys):
    response = client.post(
        f"/api/v1/agents/{support_bot.public_id}/policy/backtest",
        data=json.dumps({"policy": CANDIDATE, "since": "7d"}),
        content_type="application/json",
        HTTP_X_API_KEY=keys.live,
    )
    assert response.status_code == HTTPStatus.FORBIDDEN


def test_an_outsider_gets_404_for_another_orgs_agent(client, charlie, org_c, support_bot):
    client.force_login(charlie)
    response = backtest(client, support_bot, {"policy": CANDIDATE, "since": "7d"})
    assert response.status_code == HTTPStatus.NOT_FOUND
    page = client.post(
        reverse("agents:policy_backtest", args=[support_bot.public_id]),
        {"document": CANDIDATE, "days": "7"},
    )
    assert page.status_code == HTTPStatus.NOT_FOUND


# --- The command ----------------------------------------------------------------------------------


def test_the_command_gives_the_same_answer_as_the_api(
    client, alice, org_a, support_bot, period, tmp_path, capsys
):
    source = tmp_path / "candidate.yaml"
    source.write_text(CANDIDATE)
    window = ["--since", period["since"].isoformat(), "--until", period["until"].isoformat()]
    call_command(
        "warden_policy",
        "backtest",
        str(source),
        "--org",
        org_a.public_id,
        "--agent",
        "support-bot",
        *window,
        "--json",
    )
    printed = json.loads(capsys.readouterr().out)
    client.force_login(alice)
    answered = backtest(
        client,
        support_bot,
        {
            "policy": CANDIDATE,
            "since": period["since"].isoformat(),
            "until": period["until"].isoformat(),
        },
    ).json()
    assert printed == answered
    assert summary(printed) == expected(period["ids"])
    call_command(
        "warden_policy",
        "backtest",
        str(source),
        "--org",
        org_a.name,
        "--agent",
        "support-bot",
        *window,
    )
    text = capsys.readouterr().out
    assert "6 call(s) of support-bot" in text
    assert "2 answer(s) would change" in text
    assert "allow->requires_approval: 1" in text


def test_the_command_takes_a_relative_since(org_a, support_bot, period, tmp_path, capsys):
    source = tmp_path / "candidate.yaml"
    source.write_text(CANDIDATE)
    call_command(
        "warden_policy",
        "backtest",
        str(source),
        "--org",
        org_a.name,
        "--agent",
        "support-bot",
        "--since",
        "7d",
        "--json",
    )
    result = json.loads(capsys.readouterr().out)
    assert result["calls"] == 8  # every call of the agent: all within the last 7 days
    assert datetime.fromisoformat(result["since"]) < period["t0"] - timedelta(days=3)


def test_the_command_says_what_is_wrong_with_a_bad_candidate(org_a, support_bot, tmp_path):
    source = tmp_path / "bad.yaml"
    source.write_text(CANDIDATE.replace("over: 1500", "over: lots"))
    with pytest.raises(CommandError, match=r"rules\[0\]\.limit\.over"):
        call_command(
            "warden_policy",
            "backtest",
            str(source),
            "--org",
            org_a.name,
            "--agent",
            "support-bot",
            "--since",
            "7d",
        )


# --- The policy editor ----------------------------------------------------------------------------


def test_the_policy_editor_tests_the_unsaved_document_against_the_last_7_days(
    client, alice, support_bot, period
):
    rules_before = list(Rule.objects.values_list("pk", flat=True))
    client.force_login(alice)
    response = client.post(
        reverse("agents:policy_backtest", args=[support_bot.public_id]),
        {"document": CANDIDATE, "days": "7"},
    )
    assert response.status_code == HTTPStatus.OK
    result = response.context["backtest"]
    assert (result["calls"], result["days"]) == (8, 7)
    assert result["transitions"] == {"allow->block": 1, "allow->requires_approval": 2}
    page = response.content.decode()
    assert "Tested against the last 7 days" in page
    assert "allow-&gt;requires_approval" in page
    assert period["ids"]["delete"] in page  # a sample, linked to its action page
    assert response.context["policy_form"]["document"].value() == CANDIDATE
    assert list(Rule.objects.values_list("pk", flat=True)) == rules_before


def test_the_policy_editor_shows_a_bad_documents_errors_and_tests_nothing(
    client, alice, support_bot
):
    client.force_login(alice)
    response = client.post(
        reverse("agents:policy_backtest", args=[support_bot.public_id]),
        {"document": CANDIDATE.replace("over: 1500", "over: lots"), "days": "7"},
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.context["backtest"] is None
    assert response.context["policy_errors"][0].path == "rules[0].limit.over"


def test_the_schema_describes_the_backtest_endpoint(client):
    schema = yaml.safe_load(client.get("/api/schema/").content)
    operation = schema["paths"]["/api/v1/agents/{agent_id}/policy/backtest"]["post"]
    assert operation["operationId"] == "agents_policy_backtest"
