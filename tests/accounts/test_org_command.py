"""`manage.py warden_org set-plan ORG PLAN`: the operator's way to change a plan (hosted
services refuse owners' own plan changes)."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEntry
from tests.factories import OrganizationFactory, UserFactory, plan

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("warden_org", *args, stdout=out)
    return out.getvalue()


def test_set_plan_by_public_id_changes_the_plan_and_records_it(org_a):
    output = run("set-plan", org_a.public_id, "enterprise")
    org_a.refresh_from_db()
    assert org_a.plan.slug == "enterprise"
    assert "Enterprise" in output
    entry = AuditEntry.objects.get(organization=org_a, kind="config", data__verb="change plan")
    assert (entry.data["before"]["plan"], entry.data["after"]["plan"]) == ("Pro", "Enterprise")
    assert entry.source == "command"
    assert entry.actor_user is None


def test_set_plan_by_name_with_json_output(org_a):
    payload = json.loads(run("set-plan", "Acme", "free", "--json"))
    assert payload == {"id": org_a.public_id, "name": "Acme", "plan": "free", "changed": True}
    org_a.refresh_from_db()
    assert org_a.plan.slug == "free"


def test_set_plan_to_the_current_plan_changes_and_records_nothing(org_a):
    payload = json.loads(run("set-plan", "Acme", "pro", "--json"))
    assert payload["changed"] is False
    assert not AuditEntry.objects.filter(organization=org_a, data__verb="change plan").exists()


def test_set_plan_refuses_an_unknown_plan(org_a):
    with pytest.raises(CommandError):
        run("set-plan", "Acme", "platinum")
    org_a.refresh_from_db()
    assert org_a.plan.slug == "pro"


def test_set_plan_refuses_an_unknown_or_ambiguous_organisation(org_a):
    with pytest.raises(CommandError, match="No organisation"):
        run("set-plan", "Nope", "free")
    OrganizationFactory(name="Acme", plan=plan("pro"))
    with pytest.raises(CommandError, match="public id"):
        run("set-plan", "Acme", "free")


def test_set_plan_with_actor_names_the_staff_operator_in_the_audit_log(org_a):
    operator = UserFactory(email="ops@warden.example", is_staff=True)
    run("set-plan", org_a.public_id, "business", "--actor", "OPS@warden.example")
    entry = AuditEntry.objects.get(organization=org_a, kind="config", data__verb="change plan")
    assert (entry.actor_user, entry.source) == (operator, "command")


@pytest.mark.parametrize("staff", [False, None])
def test_set_plan_refuses_an_actor_who_is_not_an_active_staff_user(org_a, staff):
    if staff is not None:
        UserFactory(email="member@warden.example", is_staff=staff)
    with pytest.raises(CommandError, match="no active staff user"):
        run("set-plan", org_a.public_id, "business", "--actor", "member@warden.example")
    org_a.refresh_from_db()
    assert org_a.plan.slug == "pro"
