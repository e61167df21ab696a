"""warden_policy import/export: the same document comes back out."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from agents.models import Agent, Rule
from tests.agents.test_manage_api import POLICY

pytestmark = pytest.mark.django_db


def test_import_creates_the_agent_and_export_gives_the_document_back(org_a, tmp_path, capsys):
    source = tmp_path / "support-bot.yaml"
    source.write_text(POLICY)
    call_command("warden_policy", "import", str(source), "--org", org_a.name)
    agent = Agent.objects.get(organization=org_a, name="support-bot")
    assert Rule.objects.filter(agent=agent).count() == 4
    capsys.readouterr()
    call_command("warden_policy", "export", "--org", org_a.public_id, "--agent", "support-bot")
    assert capsys.readouterr().out == POLICY


def test_a_bad_document_imports_nothing_and_says_what_is_wrong(org_a, tmp_path):
    source = tmp_path / "bad.yaml"
    source.write_text(POLICY.replace("max_amount: 100", "max_amount: lots"))
    with pytest.raises(
        CommandError, match=r"rules\[0\]\.max_amount \(rule 'refund limit', line \d+\)"
    ):
        call_command("warden_policy", "import", str(source), "--org", org_a.name)
    assert not Agent.objects.filter(name="support-bot").exists()


def test_requires_approval_is_refused_on_the_free_plan(org_a, tmp_path):
    from accounts.models import Organization
    from tests.factories import plan

    Organization.objects.filter(pk=org_a.pk).update(plan=plan("free"))
    source = tmp_path / "p.yaml"
    source.write_text(POLICY)
    with pytest.raises(CommandError, match="Pro plan"):
        call_command("warden_policy", "import", str(source), "--org", org_a.name)


def test_bootstrap_with_an_agent_prints_working_keys(client, capsys):
    import json

    call_command(
        "warden_bootstrap",
        "--org",
        "Boot",
        "--email",
        "boot@example.com",
        "--agent",
        "boot-bot",
        "--json",
    )
    first = json.loads(capsys.readouterr().out)
    call_command(
        "warden_bootstrap",
        "--org",
        "Boot",
        "--email",
        "boot@example.com",
        "--agent",
        "boot-bot",
        "--json",
    )
    second = json.loads(capsys.readouterr().out)
    assert first["agent"]["id"] == second["agent"]["id"]
    assert first["agent"]["live_key"] != second["agent"]["live_key"]
    for key in (first["agent"]["test_key"], second["agent"]["live_key"]):
        response = client.post(
            "/api/v1/check",
            data='{"action": "a"}',
            content_type="application/json",
            HTTP_X_API_KEY=key,
        )
        assert response.status_code == 200
    response = client.post(
        "/sdk/check",
        data='{"agent_id": "boot-bot", "action": "a"}',
        content_type="application/json",
        HTTP_X_API_KEY=first["org_key"],
    )
    assert response.json()["allowed"] is True
    assert first["approver_key"].startswith("wdn_apv_")
