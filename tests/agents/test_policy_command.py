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
    with pytest.raises(CommandError, match=r"refund limit.*max_amount"):
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
