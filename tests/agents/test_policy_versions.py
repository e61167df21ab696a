"""Policy versions: every change of an agent's policy is a numbered version (who, when, note,
what changed); versions are listed, read, compared and restored through the API and the
dashboard; each check's audit row names the version that decided it.

Alice owns org A (support-bot), Vera views there; Charlie is an outsider (org C).
"""

from __future__ import annotations

import importlib
import json
from http import HTTPStatus
from typing import Any

import pytest
import yaml
from django.apps import apps as django_apps
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.models import Organization
from agents import runtime, services
from agents.models import Agent, PolicyVersion, Rule
from audit.models import AuditEntry
from tests.agents.conftest import add_rule
from tests.factories import plan

pytestmark = pytest.mark.django_db


def send(client: Client, method: str, url: str, body: Any = None, **extra: Any):
    data = json.dumps(body) if body is not None else None
    return getattr(client, method)(url, data=data, content_type="application/json", **extra)


def base(agent: Agent) -> str:
    return f"/api/v1/agents/{agent.public_id}"


def versions(agent: Agent) -> list[PolicyVersion]:
    return list(PolicyVersion.objects.filter(agent=agent).order_by("number"))


def latest(agent: Agent) -> PolicyVersion:
    return PolicyVersion.objects.filter(agent=agent).order_by("-number").first()


def check(client: Client, key: str, action: str, arguments: dict[str, Any] | None = None) -> dict:
    response = send(
        client,
        "post",
        "/api/v1/check",
        {"action": action, "arguments": arguments or {}},
        HTTP_X_API_KEY=key,
    )
    assert response.status_code == HTTPStatus.OK, response.content
    return response.json()


REFUND = {
    "name": "refund limit",
    "action": "stripe.refund",
    "effect": "requires_approval",
    "max_amount": 100,
}


# --- A version for every kind of change -----------------------------------------------------


def test_a_new_agent_starts_at_version_1_with_its_empty_policy(support_bot, alice):
    (first,) = versions(support_bot)
    assert first.number == 1
    assert first.actor_user == alice
    assert first.actor_label == "alice@example.com"
    assert first.document == {"agent": "support-bot", "default": "allow", "rules": []}
    assert first.summary == "first version: 0 rules, default allow"


def test_adding_changing_disabling_and_deleting_a_rule_each_make_a_version(
    client, alice, support_bot
):
    client.force_login(alice)
    rules = f"{base(support_bot)}/rules"
    created = send(client, "post", rules, {**REFUND, "note": "refunds need a human"})
    assert created.status_code == HTTPStatus.CREATED, created.content
    assert "note" not in created.json()
    rule_url = f"{rules}/{created.json()['id']}"
    send(client, "patch", rule_url, {"max_amount": 200, "note": "raised"})
    send(client, "patch", rule_url, {"enabled": False})
    send(client, "patch", rule_url, {"enabled": True})
    assert client.delete(f"{rule_url}?note=not+needed").status_code == HTTPStatus.NO_CONTENT

    made = versions(support_bot)
    assert [v.number for v in made] == [1, 2, 3, 4, 5, 6]
    assert [v.summary for v in made[1:]] == [
        "rule 'refund limit' added",
        "rule 'refund limit' changed (max_amount)",
        "rule 'refund limit' disabled",
        "rule 'refund limit' enabled",
        "rule 'refund limit' deleted",
    ]
    assert [v.note for v in made[1:]] == ["refunds need a human", "raised", "", "", "not needed"]
    assert {v.actor_label for v in made} == {"alice@example.com"}
    assert {v.source for v in made[1:]} == {"api"}
    assert made[2].document["rules"][0]["max_amount"] == 200
    assert made[3].document["rules"][0]["enabled"] is False
    assert made[5].document["rules"] == []


def test_a_change_that_changes_nothing_makes_no_version(client, alice, support_bot):
    rule = add_rule(support_bot, **REFUND)
    client.force_login(alice)
    send(client, "patch", f"{base(support_bot)}/rules/{rule.public_id}", {"max_amount": 100})
    send(client, "patch", base(support_bot), {"description": "answers customers"})
    assert [v.number for v in versions(support_bot)] == [1, 2]


def test_a_new_default_is_a_new_version(client, alice, support_bot):
    client.force_login(alice)
    response = send(client, "patch", base(support_bot), {"default": "block", "note": "deny"})
    assert response.status_code == HTTPStatus.OK
    version = latest(support_bot)
    assert (version.number, version.summary, version.note) == (2, "default allow -> block", "deny")
    assert version.document["default"] == "block"


POLICY = """\
agent: support-bot
default: block
lists:
  domains:
  - example.com
rules:
- name: refund limit
  action: stripe.refund
  effect: requires_approval
  max_amount: 100
- name: no deletes
  action: database.*.delete
  effect: block
"""


def test_a_put_of_the_policy_is_one_version_with_its_note(client, alice, support_bot):
    client.force_login(alice)
    url = f"{base(support_bot)}/policy"
    put = client.put(f"{url}?note=first+import", data=POLICY, content_type="application/yaml")
    assert put.status_code == HTTPStatus.OK, put.content
    assert put.json()["policy_version"] == 2
    version = latest(support_bot)
    assert version.note == "first import"
    assert version.summary == (
        "default allow -> block; list 'domains' added; rule 'refund limit' added; "
        "rule 'no deletes' added"
    )
    # The version is the document GET .../policy answers, in YAML and in JSON.
    assert client.get(f"{url}/versions/2").content.decode() == client.get(url).content.decode()
    assert (
        client.get(f"{url}/versions/2?format=json").json()
        == client.get(f"{url}?format=json").json()
    )
    # The same document again changes nothing, and makes no version.
    again = client.put(url, data=POLICY, content_type="application/yaml")
    assert again.json()["policy_version"] == 2
    assert len(versions(support_bot)) == 2


def test_a_bad_note_is_a_400_naming_it_and_changes_nothing(client, alice, support_bot):
    client.force_login(alice)
    response = send(client, "post", f"{base(support_bot)}/rules", {**REFUND, "note": 7})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["field"] == "note"
    long_note = "x" * 1001
    response = client.put(
        f"{base(support_bot)}/policy?note={long_note}", data=POLICY, content_type="application/yaml"
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["field"] == "note"
    assert not Rule.objects.filter(agent=support_bot).exists()
    assert len(versions(support_bot)) == 1


def test_the_import_command_makes_a_version_with_its_note(tmp_path, org_a, support_bot):
    source = tmp_path / "policy.yaml"
    source.write_text(POLICY)
    call_command("warden_policy", "import", str(source), "--org", org_a.name, "--note", "from git")
    version = latest(support_bot)
    assert (version.number, version.note, version.source) == (2, "from git", "command")
    assert version.actor_label == "command"
    assert [rule["name"] for rule in version.document["rules"]] == ["refund limit", "no deletes"]


def test_an_organisation_wide_rule_makes_a_version_for_every_agent(client, alice, org_a):
    bots = [
        services.agent_create(organization=org_a, actor=alice, name=name)
        for name in ("bot-a", "bot-b")
    ]
    client.force_login(alice)
    response = send(
        client,
        "post",
        "/api/v1/rules",
        {"name": "no wires", "action": "bank.wire", "effect": "block", "note": "policy 7"},
    )
    assert response.status_code == HTTPStatus.CREATED, response.content
    for bot in bots:
        version = latest(bot)
        assert version.number == 2
        assert version.summary == "organisation-wide rule 'no wires' added"
        assert version.note == "policy 7"
        assert version.organization_rules == [
            {"name": "no wires", "action": "bank.wire", "effect": "block"}
        ]
        assert version.document == versions(bot)[0].document  # its own rules did not change
    diff = client.get(f"{base(bots[0])}/policy/versions/2/diff").json()["diff"]
    assert "+++ version 2: organisation-wide rules\n" in diff
    assert "+  action: bank.wire\n" in diff


# --- Reading, listing, comparing ------------------------------------------------------------


def _five_versions(agent: Agent) -> None:
    rule = add_rule(agent, **REFUND)
    for amount in (200, 300, 400):
        services.rule_update(rule=rule, data={"max_amount": amount}, actor=None)


def test_versions_are_listed_newest_first_with_who_when_and_what(client, alice, support_bot):
    _five_versions(support_bot)
    client.force_login(alice)
    body = client.get(f"{base(support_bot)}/policy/versions").json()
    assert [v["number"] for v in body["results"]] == [5, 4, 3, 2, 1]
    assert body["next"] is None
    newest = body["results"][0]
    assert newest["summary"] == "rule 'refund limit' changed (max_amount)"
    assert newest["actor"] == "system"
    assert newest["source"] == "api"
    assert newest["note"] is None
    assert newest["restored_from"] is None
    assert newest["created_at"]
    assert body["results"][-1]["actor"] == "alice@example.com"


def test_the_version_list_is_paginated_by_keyset(client, alice, support_bot):
    _five_versions(support_bot)
    client.force_login(alice)
    url: str | None = f"{base(support_bot)}/policy/versions?limit=2"
    pages = []
    while url:
        body = client.get(url).json()
        pages.append([v["number"] for v in body["results"]])
        url = body["next"]
    assert pages == [[5, 4], [3, 2], [1]]


@pytest.mark.parametrize(
    ("query", "field"),
    [("limit=0", "limit"), ("limit=101", "limit"), ("limit=x", "limit"), ("before=-1", "before")],
)
def test_bad_pagination_is_a_400_naming_the_parameter(client, alice, support_bot, query, field):
    client.force_login(alice)
    response = client.get(f"{base(support_bot)}/policy/versions?{query}")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["field"] == field


def test_a_diff_shows_what_changed_against_the_version_before(client, alice, support_bot):
    _five_versions(support_bot)
    client.force_login(alice)
    body = client.get(f"{base(support_bot)}/policy/versions/3/diff").json()
    assert (body["number"], body["against"]) == (3, 2)
    assert body["diff"] == (
        "--- version 2: policy\n"
        "+++ version 3: policy\n"
        "@@ -4,4 +4,4 @@\n"
        " - name: refund limit\n"
        "   action: stripe.refund\n"
        "   effect: requires_approval\n"
        "-  max_amount: 100\n"
        "+  max_amount: 200\n"
    )


def test_a_diff_against_another_version_and_as_plain_text(client, alice, support_bot):
    _five_versions(support_bot)
    client.force_login(alice)
    body = client.get(f"{base(support_bot)}/policy/versions/5/diff?against=2").json()
    assert body["against"] == 2
    assert "-  max_amount: 100\n+  max_amount: 400\n" in body["diff"]
    text = client.get(f"{base(support_bot)}/policy/versions/2/diff?against=1&format=diff")
    assert text["Content-Type"].startswith("text/x-diff")
    assert "+- name: refund limit\n" in text.content.decode()
    first = client.get(f"{base(support_bot)}/policy/versions/1/diff").json()
    assert first["against"] is None
    assert first["diff"].startswith("--- nothing: policy\n+++ version 1: policy\n")


@pytest.mark.parametrize("against", ["0", "abc", "99", "", "-1", "1.5"])
def test_a_bad_against_is_a_400_naming_it(client, alice, support_bot, against):
    _five_versions(support_bot)
    client.force_login(alice)
    response = client.get(f"{base(support_bot)}/policy/versions/3/diff?against={against}")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["field"] == "against"


@pytest.mark.parametrize("number", ["0", "7", "x", "99999999999"])
def test_a_missing_version_is_a_404(client, alice, support_bot, number):
    client.force_login(alice)
    for suffix in ("", "/diff"):
        response = client.get(f"{base(support_bot)}/policy/versions/{number}{suffix}")
        assert response.status_code == HTTPStatus.NOT_FOUND
    response = send(client, "post", f"{base(support_bot)}/policy/versions/{number}/restore", {})
    assert response.status_code == HTTPStatus.NOT_FOUND


# --- Restore --------------------------------------------------------------------------------


def test_restoring_a_version_makes_it_the_live_policy_as_a_new_version(
    client, alice, support_bot, keys
):
    client.force_login(alice)
    url = f"{base(support_bot)}/policy"
    client.put(url, data=POLICY, content_type="application/yaml")  # version 2
    rule = Rule.objects.get(agent=support_bot, name="no deletes")
    services.rule_delete(rule=rule, actor=alice)  # version 3
    assert check(client, keys.live, "database.users.delete")["decision"] == "block"  # default
    services.agent_update(agent=support_bot, actor=alice, default_decision="allow")  # version 4
    assert check(client, keys.live, "database.users.delete")["decision"] == "allow"

    response = send(client, "post", f"{url}/versions/2/restore", {"note": "undo the mess"})
    assert response.status_code == HTTPStatus.CREATED, response.content
    body = response.json()
    assert body["number"] == 5
    assert body["restored_from"] == 2
    assert body["note"] == "undo the mess"
    assert body["summary"].startswith("restored version 2: default allow -> block")
    assert client.get(url).content.decode() == client.get(f"{url}/versions/2").content.decode()
    assert client.get(f"{url}/versions/5").content.decode() == POLICY

    decided = check(client, keys.live, "database.users.delete")
    assert (decided["decision"], decided["rule"]) == ("block", "no deletes")
    action = client.get(f"/api/v1/actions/{decided['action_id']}").json()
    assert action["policy_version"] == 5


def test_a_restored_limit_counts_the_calls_already_in_the_log(client, alice, support_bot, keys):
    for _ in range(3):
        assert check(client, keys.live, "kb.search")["decision"] == "allow"
    budget = {"name": "search budget", "action": "kb.search", "effect": "block"}
    rule = add_rule(support_bot, **budget, limit={"count": 5, "per": "1h"})  # version 2
    services.rule_delete(rule=rule, actor=alice)  # version 3: no limit
    for _ in range(3):
        assert check(client, keys.live, "kb.search")["decision"] == "allow"
    client.force_login(alice)
    response = send(client, "post", f"{base(support_bot)}/policy/versions/2/restore")
    assert response.status_code == HTTPStatus.CREATED
    # As for any new limit: the window's six allowed calls are in its budget already.
    decided = check(client, keys.live, "kb.search")
    assert (decided["decision"], decided["rule"]) == ("block", "search budget")


def test_restoring_the_live_version_still_makes_a_new_one(client, alice, support_bot):
    client.force_login(alice)
    response = send(client, "post", f"{base(support_bot)}/policy/versions/1/restore")
    assert response.status_code == HTTPStatus.CREATED
    assert response.json()["summary"] == "restored version 1"
    assert [v.number for v in versions(support_bot)] == [1, 2]


def test_restoring_keeps_the_agents_current_name(client, alice, support_bot):
    add_rule(support_bot, **REFUND)
    services.agent_update(agent=support_bot, actor=alice, name="helpdesk")
    client.force_login(alice)
    response = send(client, "post", f"{base(support_bot)}/policy/versions/2/restore")
    assert response.status_code == HTTPStatus.CREATED
    assert latest(support_bot).document["agent"] == "helpdesk"
    assert Rule.objects.filter(agent=support_bot, name="refund limit").exists()


def test_a_version_the_plan_no_longer_allows_is_refused_as_a_put_would_be(
    client, alice, support_bot
):
    add_rule(support_bot, **REFUND)  # version 2 holds a requires_approval rule
    services.rule_delete(rule=Rule.objects.get(agent=support_bot), actor=alice)
    Organization.objects.filter(pk=support_bot.organization_id).update(plan=plan("free"))
    client.force_login(alice)
    response = send(client, "post", f"{base(support_bot)}/policy/versions/2/restore")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["field"] == "rules[0].effect"
    assert not Rule.objects.filter(agent=support_bot).exists()
    assert len(versions(support_bot)) == 3


def test_a_viewer_reads_versions_but_cannot_restore_them(client, vera, support_bot):
    client.force_login(vera)
    assert client.get(f"{base(support_bot)}/policy/versions").status_code == HTTPStatus.OK
    assert client.get(f"{base(support_bot)}/policy/versions/1").status_code == HTTPStatus.OK
    response = send(client, "post", f"{base(support_bot)}/policy/versions/1/restore")
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert len(versions(support_bot)) == 1


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("get", "/policy/versions"),
        ("get", "/policy/versions/1"),
        ("get", "/policy/versions/1/diff"),
        ("post", "/policy/versions/1/restore"),
    ],
)
def test_an_outsider_gets_404_for_another_orgs_versions(
    client, charlie, org_c, support_bot, method, suffix
):
    client.force_login(charlie)
    response = send(client, method, f"{base(support_bot)}{suffix}")
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert len(versions(support_bot)) == 1


# --- The version that decided a check -------------------------------------------------------


def test_each_check_names_the_version_that_decided_it(client, alice, support_bot, keys):
    first = check(client, keys.live, "stripe.refund", {"amount": 500})
    assert first["decision"] == "allow"
    add_rule(support_bot, **REFUND)
    held = check(client, keys.live, "stripe.refund", {"amount": 500})
    assert held["decision"] == "requires_approval"
    entries = AuditEntry.objects.filter(kind="check").order_by("id")
    assert [entry.policy_version for entry in entries] == [1, 2]
    client.force_login(alice)
    action = client.get(f"/api/v1/actions/{held['action_id']}").json()
    assert action["policy_version"] == 2
    page = client.get(f"/approvals/{held['action_id']}/").content.decode()
    assert f"/agents/{support_bot.public_id}/versions/2/" in page


def test_the_version_costs_a_check_no_query(client, keys, support_bot):
    check(client, keys.live, "kb.search")  # compiles and caches the policy
    with CaptureQueriesContext(connection) as queries:
        check(client, keys.live, "kb.search")
    assert not [q for q in queries if PolicyVersion._meta.db_table in q["sql"]]
    assert AuditEntry.objects.filter(kind="check").latest("id").policy_version == 1


def test_an_agent_without_versions_records_checks_without_one(client, keys, support_bot):
    PolicyVersion.objects.filter(agent=support_bot).delete()
    runtime.caches_clear()
    check(client, keys.live, "kb.search")
    assert AuditEntry.objects.get(kind="check").policy_version is None


def test_existing_agents_get_version_1_of_their_policy_from_the_migration(
    client, alice, support_bot
):
    client.force_login(alice)
    client.put(f"{base(support_bot)}/policy", data=POLICY, content_type="application/yaml")
    add_rule(
        None, organization=support_bot.organization, name="no wires", action="w", effect="block"
    )
    PolicyVersion.objects.all().delete()
    migration = importlib.import_module("agents.migrations.0006_policy_versions")
    migration.first_versions(django_apps, None)
    (first,) = versions(support_bot)
    assert (first.number, first.source) == (1, "migration")
    assert client.get(f"{base(support_bot)}/policy/versions/1").content.decode() == POLICY
    assert first.organization_rules == [{"name": "no wires", "action": "w", "effect": "block"}]


# --- Dashboard ------------------------------------------------------------------------------


def test_the_agent_page_lists_versions_and_the_versions_page_shows_diffs(
    client, alice, support_bot
):
    _five_versions(support_bot)
    client.force_login(alice)
    page = client.get(f"/agents/{support_bot.public_id}/").content.decode()
    assert 'id="versions"' in page
    assert "rule &#x27;refund limit&#x27; changed" in page
    assert f"/agents/{support_bot.public_id}/versions/5/restore/" in page
    listing = client.get(f"/agents/{support_bot.public_id}/versions/").content.decode()
    assert "Version 5" in listing and "Version 1" in listing
    assert '<span class="diff-del">-  max_amount: 300</span>' in listing
    assert '<span class="diff-add">+  max_amount: 400</span>' in listing
    detail = client.get(f"/agents/{support_bot.public_id}/versions/3/").content.decode()
    assert '<span class="diff-add">+  max_amount: 200</span>' in detail


def test_the_dashboard_restores_a_version_after_a_confirmation(client, alice, support_bot):
    _five_versions(support_bot)
    client.force_login(alice)
    url = f"/agents/{support_bot.public_id}/versions/2/restore/"
    confirm = client.get(url)
    assert confirm.status_code == HTTPStatus.OK
    page = confirm.content.decode()
    assert "Restore version 2?" in page
    assert "csrfmiddlewaretoken" in page
    assert '<span class="diff-add">+  max_amount: 100</span>' in page  # from live (400) to 2
    assert latest(support_bot).number == 5  # looking changes nothing

    response = client.post(url, {"note": "back to 100"})
    assert response.status_code == HTTPStatus.FOUND
    restored = latest(support_bot)
    assert (restored.number, restored.restored_from, restored.note) == (6, 2, "back to 100")
    assert restored.source == "web"
    assert Rule.objects.get(agent=support_bot).document["max_amount"] == 100


def test_the_restore_form_needs_a_csrf_token(alice, support_bot):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post(f"/agents/{support_bot.public_id}/versions/1/restore/", {})
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert len(versions(support_bot)) == 1


def test_a_viewer_sees_versions_but_not_the_restore(client, vera, support_bot):
    client.force_login(vera)
    listing = client.get(f"/agents/{support_bot.public_id}/versions/")
    assert listing.status_code == HTTPStatus.OK
    assert "/restore/" not in listing.content.decode()
    url = f"/agents/{support_bot.public_id}/versions/1/restore/"
    assert client.get(url).status_code == HTTPStatus.FORBIDDEN
    assert client.post(url, {}).status_code == HTTPStatus.FORBIDDEN
    assert len(versions(support_bot)) == 1


@pytest.mark.parametrize("suffix", ["versions/", "versions/1/", "versions/1/restore/"])
def test_an_outsider_gets_404_for_another_orgs_version_pages(
    client, charlie, org_c, support_bot, suffix
):
    client.force_login(charlie)
    url = f"/agents/{support_bot.public_id}/{suffix}"
    assert client.get(url).status_code == HTTPStatus.NOT_FOUND
    assert client.post(url, {}).status_code in (HTTPStatus.NOT_FOUND, HTTPStatus.METHOD_NOT_ALLOWED)
    assert len(versions(support_bot)) == 1


def test_the_yaml_of_a_version_reads_back_as_its_document(client, alice, support_bot):
    client.force_login(alice)
    client.put(f"{base(support_bot)}/policy", data=POLICY, content_type="application/yaml")
    text = client.get(f"{base(support_bot)}/policy/versions/2").content.decode()
    assert yaml.safe_load(text) == latest(support_bot).document


def test_the_dashboards_policy_editor_keeps_its_note_with_the_version(client, alice, support_bot):
    client.force_login(alice)
    response = client.post(
        f"/agents/{support_bot.public_id}/policy/",
        {"document": POLICY, "note": "from the editor"},
    )
    assert response.status_code == HTTPStatus.FOUND
    version = latest(support_bot)
    assert (version.number, version.note, version.source) == (2, "from the editor", "web")


@pytest.mark.parametrize(
    "body",
    ["[1]", '{"note": 5}', '{"note": "a\\u0000b"}', '{"note": "%s"}' % ("x" * 1001), "{"],
)
def test_a_bad_restore_body_is_a_400_and_restores_nothing(client, alice, support_bot, body):
    add_rule(support_bot, **REFUND)
    client.force_login(alice)
    response = client.post(
        f"{base(support_bot)}/policy/versions/1/restore", data=body, content_type="application/json"
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["code"] in ("invalid", "invalid_json")
    assert len(versions(support_bot)) == 2


def test_a_note_with_control_characters_is_refused_and_changes_nothing(client, alice, support_bot):
    client.force_login(alice)
    response = client.put(
        f"{base(support_bot)}/policy?note=a%07b", data=POLICY, content_type="application/yaml"
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["field"] == "note"
    assert not Rule.objects.filter(agent=support_bot).exists()
    assert len(versions(support_bot)) == 1


def test_the_summary_names_the_keys_a_change_touched(client, alice, support_bot):
    rule = add_rule(support_bot, **REFUND)
    client.force_login(alice)
    url = f"{base(support_bot)}/rules/{rule.public_id}"
    send(client, "patch", url, {"effect": "block", "max_amount": None, "enabled": False})
    assert latest(support_bot).summary == (
        "rule 'refund limit' changed (effect, max_amount) and disabled"
    )
