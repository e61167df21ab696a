"""Staff changes in the Django admin and the operator's warden_bootstrap are audited in the
organisation's log: plans, settings, roles, removals, invitations."""

from __future__ import annotations

import json
from http import HTTPStatus
from io import StringIO

import pytest
from django.core.management import call_command

from accounts import services
from accounts.models import Invitation, Membership
from accounts.permissions import OperatorOnly
from audit.models import AuditEntry
from tests.factories import UserFactory, plan

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(db):
    return UserFactory(email="staff@example.com", is_staff=True, is_superuser=True)


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


def config_entries(organization, verb: str) -> list[AuditEntry]:
    return list(
        AuditEntry.objects.filter(
            organization=organization, kind=AuditEntry.Kind.CONFIG, data__verb=verb
        ).order_by("created_at", "id")
    )


def change_organization(staff_client, org, **changes):
    data = {
        "name": org.name,
        "plan": org.plan_id,
        "default_approval_timeout": org.default_approval_timeout,
        "time_zone": org.time_zone,
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
        **changes,
    }
    return staff_client.post(f"/admin/accounts/organization/{org.pk}/change/", data)


def test_a_plan_change_in_the_admin_names_the_staff_member(staff_client, staff, org_a):
    response = change_organization(staff_client, org_a, plan=plan("enterprise").pk)
    assert response.status_code == HTTPStatus.FOUND
    (entry,) = config_entries(org_a, "change plan")
    assert (entry.actor_user, entry.source) == (staff, "admin")
    assert entry.data["before"]["plan"] != entry.data["after"]["plan"]
    org_a.refresh_from_db()
    assert org_a.plan.slug == "enterprise"


def test_a_settings_change_in_the_admin_is_audited_with_before_and_after(
    staff_client, staff, org_a
):
    response = change_organization(staff_client, org_a, name="Acme Ltd", time_zone="Europe/Paris")
    assert response.status_code == HTTPStatus.FOUND
    (entry,) = config_entries(org_a, "update")
    assert (entry.actor_user, entry.source) == (staff, "admin")
    assert entry.data["before"]["name"] == "Acme"
    assert entry.data["after"] == {
        "name": "Acme Ltd",
        "default_approval_timeout": org_a.default_approval_timeout,
        "time_zone": "Europe/Paris",
    }
    assert not config_entries(org_a, "change plan")


def test_the_members_inline_of_an_organisation_cannot_change_a_role(staff_client, org_a, bob):
    membership = Membership.objects.get(user=bob, organization=org_a)
    response = change_organization(
        staff_client,
        org_a,
        **{
            "memberships-TOTAL_FORMS": "1",
            "memberships-INITIAL_FORMS": "1",
            "memberships-0-id": membership.pk,
            "memberships-0-organization": org_a.pk,
            "memberships-0-user": bob.pk,
            "memberships-0-role": "owner",
        },
    )
    assert response.status_code == HTTPStatus.FOUND
    membership.refresh_from_db()
    assert membership.role == "approver"
    assert not AuditEntry.objects.filter(organization=org_a).exists()


def test_a_bad_setting_in_the_admin_is_a_form_error_and_changes_nothing(staff_client, org_a):
    response = change_organization(staff_client, org_a, time_zone="Mars/Olympus")
    assert response.status_code == HTTPStatus.OK
    assert "Unknown time zone" in response.content.decode()
    org_a.refresh_from_db()
    assert org_a.time_zone == "UTC"
    assert not AuditEntry.objects.filter(organization=org_a).exists()


def test_a_role_change_in_the_admin_is_audited(staff_client, staff, org_a, bob):
    membership = Membership.objects.get(user=bob, organization=org_a)
    response = staff_client.post(
        f"/admin/accounts/membership/{membership.pk}/change/", {"role": "admin"}
    )
    assert response.status_code == HTTPStatus.FOUND
    (entry,) = config_entries(org_a, "change role")
    assert (entry.actor_user, entry.source) == (staff, "admin")
    assert (entry.data["before"]["role"], entry.data["after"]["role"]) == ("approver", "admin")


def test_the_admin_cannot_demote_the_last_owner(staff_client, org_a, alice):
    membership = Membership.objects.get(user=alice, organization=org_a)
    response = staff_client.post(
        f"/admin/accounts/membership/{membership.pk}/change/", {"role": "viewer"}
    )
    assert response.status_code == HTTPStatus.OK
    assert "at least one owner" in response.content.decode()
    membership.refresh_from_db()
    assert membership.role == "owner"


def test_removing_a_member_in_the_admin_is_audited(staff_client, staff, org_a, vera):
    membership = Membership.objects.get(user=vera, organization=org_a)
    response = staff_client.post(
        f"/admin/accounts/membership/{membership.pk}/delete/", {"post": "yes"}
    )
    assert response.status_code == HTTPStatus.FOUND
    assert not Membership.objects.filter(pk=membership.pk).exists()
    (entry,) = config_entries(org_a, "remove")
    assert (entry.actor_user, entry.source) == (staff, "admin")
    assert entry.data["before"]["role"] == "viewer"


def test_deleting_a_user_in_the_admin_records_their_removal_from_each_organisation(
    staff_client, staff, org_a, bob
):
    response = staff_client.post(f"/admin/accounts/user/{bob.pk}/delete/", {"post": "yes"})
    assert response.status_code == HTTPStatus.FOUND
    (entry,) = config_entries(org_a, "remove")
    assert entry.actor_user == staff
    assert entry.data["before"]["user"]


def test_the_last_owner_cannot_be_deleted_in_the_admin(staff_client, org_a, alice):
    response = staff_client.post(f"/admin/accounts/user/{alice.pk}/delete/", {"post": "yes"})
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert Membership.objects.filter(user=alice, organization=org_a).exists()


def test_revoking_invitations_in_the_admin_is_audited(staff_client, staff, org_a, alice):
    invitation = services.invitation_create(
        actor=alice, organization=org_a, email="dana@example.com", role="viewer"
    )
    response = staff_client.post(
        "/admin/accounts/invitation/",
        {"action": "revoke", "_selected_action": [invitation.pk]},
    )
    assert response.status_code == HTTPStatus.FOUND
    invitation.refresh_from_db()
    assert invitation.revoked_at is not None
    (entry,) = config_entries(org_a, "revoke")
    assert (entry.actor_user, entry.source) == (staff, "admin")


def test_invitations_and_memberships_are_not_added_by_hand_in_the_admin(staff_client):
    for model in ("invitation", "membership", "organization"):
        response = staff_client.get(f"/admin/accounts/{model}/add/")
        assert response.status_code == HTTPStatus.FORBIDDEN
    assert not Invitation.objects.exists()


def test_an_operator_change_by_a_member_who_is_not_staff_is_refused(alice, org_a):
    with pytest.raises(OperatorOnly):
        services.organization_update(
            actor=alice,
            organization=org_a,
            name="Hijacked",
            default_approval_timeout=600,
            as_operator=True,
        )


# --- warden_bootstrap --plan ---------------------------------------------------------------


def bootstrap(*args: str) -> dict:
    out = StringIO()
    call_command("warden_bootstrap", *args, "--json", stdout=out)
    return json.loads(out.getvalue())


def test_bootstrap_plan_on_an_existing_organisation_is_audited(org_a, alice):
    bootstrap("--org", org_a.name, "--email", alice.email, "--plan", "enterprise")
    (entry,) = config_entries(org_a, "change plan")
    assert (entry.actor_user, entry.actor_label, entry.source) == (None, "system", "bootstrap")
    assert entry.data["before"]["plan"] == str(plan("pro"))
    assert entry.data["after"]["plan"] == str(plan("enterprise"))


def test_bootstrap_with_the_same_plan_records_nothing_new(org_a, alice):
    bootstrap("--org", org_a.name, "--email", alice.email, "--plan", "pro")
    assert not AuditEntry.objects.filter(organization=org_a).exists()


def test_bootstrap_making_someone_owner_of_an_existing_organisation_is_audited(org_a, bob):
    bootstrap("--org", org_a.name, "--email", bob.email)
    (entry,) = config_entries(org_a, "change role")
    assert entry.source == "bootstrap"
    assert (entry.data["before"]["role"], entry.data["after"]["role"]) == ("approver", "owner")


def test_bootstrap_creating_an_organisation_records_its_creation(db):
    result = bootstrap("--org", "Demo", "--email", "demo@example.com", "--plan", "pro")
    entry = AuditEntry.objects.get(organization__public_id=result["org"]["id"], data__verb="create")
    assert (entry.actor_user, entry.actor_label, entry.source) == (None, "system", "bootstrap")
