"""`warden_policy import --actor EMAIL`: the import is recorded as that member's, not the
system's; an actor who could not make the change through the API is refused."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from agents.models import Agent
from audit.models import AuditEntry

pytestmark = pytest.mark.django_db

POLICY = """\
agent: support-bot
default: block
rules:
- name: reads
  action: kb.*
  effect: allow
"""


@pytest.fixture
def policy_file(tmp_path):
    path = tmp_path / "support-bot.yaml"
    path.write_text(POLICY)
    return str(path)


def import_entry() -> AuditEntry:
    return AuditEntry.objects.get(kind="config", data__verb="imported policy for")


def test_an_import_with_an_actor_is_recorded_as_theirs(alice, org_a, policy_file):
    call_command(
        "warden_policy", "import", policy_file, "--org", org_a.name, "--actor", alice.email
    )
    entry = import_entry()
    assert (entry.actor_user, entry.actor_label, entry.source) == (alice, alice.email, "command")
    assert entry.data["after"]["rules"][0]["name"] == "reads"
    # The agent the import created is theirs too.
    created = AuditEntry.objects.get(kind="config", target_type="agent", data__verb="created")
    assert created.actor_user == alice


def test_the_actor_is_found_whatever_the_case_of_the_address(alice, org_a, policy_file):
    call_command(
        "warden_policy", "import", policy_file, "--org", org_a.name, "--actor", "Alice@Example.COM"
    )
    assert import_entry().actor_user == alice


def test_an_import_without_an_actor_is_the_systems(org_a, policy_file):
    call_command("warden_policy", "import", policy_file, "--org", org_a.name)
    entry = import_entry()
    assert (entry.actor_user, entry.actor_label) == (None, "system")


@pytest.mark.parametrize(
    ("persona", "message"),
    [
        ("vera", "may not manage agents"),  # a viewer of Acme
        ("bob", "may not manage agents"),  # an approver of Acme
        ("charlie", "no active member"),  # owner of another organisation
    ],
)
def test_an_actor_who_could_not_import_through_the_api_is_refused(
    request, org_a, org_c, policy_file, persona, message
):
    user = request.getfixturevalue(persona)
    with pytest.raises(CommandError, match=message):
        call_command(
            "warden_policy", "import", policy_file, "--org", org_a.name, "--actor", user.email
        )
    assert not Agent.objects.filter(organization=org_a).exists()
    assert not AuditEntry.objects.filter(organization=org_a).exists()


def test_an_unknown_or_inactive_actor_is_refused(alice, org_a, policy_file):
    with pytest.raises(CommandError, match="no active member"):
        call_command(
            "warden_policy", "import", policy_file, "--org", org_a.name, "--actor", "x@example.com"
        )
    alice.is_active = False
    alice.save(update_fields=["is_active"])
    with pytest.raises(CommandError, match="no active member"):
        call_command(
            "warden_policy", "import", policy_file, "--org", org_a.name, "--actor", alice.email
        )
    assert not Agent.objects.filter(organization=org_a).exists()
