from __future__ import annotations

from http import HTTPStatus

import pytest
from django.urls import reverse

from accounts import services
from accounts.models import Membership, Organization
from audit.models import AuditEntry
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_in_two(alice, org_a, org_c):
    """Alice owns Acme and is also a viewer in Charlie's organisation."""
    MembershipFactory(user=alice, organization=org_c, role=Membership.Role.VIEWER)
    alice.current_organization = org_a
    alice.save()
    return alice


def settings_url(org) -> str:
    return reverse("organization_settings", kwargs={"org_id": org.public_id})


def test_the_dashboard_needs_a_login(client):
    response = client.get(reverse("dashboard"))
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"].startswith(reverse("account_login"))


def test_the_dashboard_shows_the_current_organisation_its_plan_and_members(client, alice, org_a):
    client.force_login(alice)
    response = client.get(reverse("dashboard"))
    assert response.status_code == HTTPStatus.OK
    assert b"Acme" in response.content
    assert b"Pro" in response.content
    assert b"3 members" in response.content


def test_a_user_without_organisation_is_offered_to_create_one(client, db):
    from tests.factories import UserFactory

    client.force_login(UserFactory())
    response = client.get(reverse("dashboard"))
    assert b"Create an organisation" in response.content


def test_a_user_creates_another_organisation_and_switches_to_it(client, alice, org_a):
    client.force_login(alice)
    response = client.post(reverse("organization_new"), {"name": "Side Project"})
    assert response.status_code == HTTPStatus.FOUND
    alice.refresh_from_db()
    assert alice.current_organization.name == "Side Project"
    assert alice.current_organization.plan.slug == "free"


def test_the_switcher_lists_every_organisation_of_the_user(client, alice_in_two):
    client.force_login(alice_in_two)
    response = client.get(reverse("dashboard"))
    assert b"Charlie Co" in response.content
    assert reverse("organization_switch").encode() in response.content


def test_a_member_switches_organisation(client, alice_in_two, org_c):
    client.force_login(alice_in_two)
    response = client.post(reverse("organization_switch"), {"organization": org_c.public_id})
    assert response.status_code == HTTPStatus.FOUND
    alice_in_two.refresh_from_db()
    assert alice_in_two.current_organization == org_c
    assert b"Charlie Co</h1>" in client.get(reverse("dashboard")).content


def test_switching_to_an_organisation_you_are_not_in_is_404(client, bob, org_c, org_a):
    client.force_login(bob)
    response = client.post(reverse("organization_switch"), {"organization": org_c.public_id})
    assert response.status_code == HTTPStatus.NOT_FOUND
    bob.refresh_from_db()
    assert bob.current_organization != org_c


def test_switching_follows_only_safe_next_urls(client, alice_in_two, org_c):
    client.force_login(alice_in_two)
    response = client.post(
        reverse("organization_switch"),
        {"organization": org_c.public_id, "next": "https://evil.example/"},
    )
    assert response["Location"] == reverse("dashboard")


def test_the_current_organisation_falls_back_when_membership_is_gone(alice, org_a, org_c):
    from accounts.selectors import organization_current_for_user

    alice.current_organization = org_c  # not a member
    alice.save()
    assert organization_current_for_user(user=alice) == org_a


def test_an_owner_changes_the_name_and_default_approval_timeout(client, alice, org_a):
    client.force_login(alice)
    response = client.post(
        settings_url(org_a), {"name": "Acme Ltd", "default_approval_timeout_minutes": 15}
    )
    assert response.status_code == HTTPStatus.FOUND
    org_a.refresh_from_db()
    assert org_a.name == "Acme Ltd"
    assert org_a.default_approval_timeout == 15 * 60


def test_an_owner_sets_the_time_zone_rules_read_the_hour_in(client, alice, org_a):
    client.force_login(alice)
    response = client.post(
        settings_url(org_a),
        {"name": "Acme", "default_approval_timeout_minutes": 60, "time_zone": "Asia/Tokyo"},
    )
    assert response.status_code == HTTPStatus.FOUND
    org_a.refresh_from_db()
    assert org_a.time_zone == "Asia/Tokyo"
    assert AuditEntry.objects.filter(
        kind="config", target_id=org_a.public_id, data__after__time_zone="Asia/Tokyo"
    ).exists()


def test_an_unknown_time_zone_is_a_form_error(client, alice, org_a):
    client.force_login(alice)
    response = client.post(
        settings_url(org_a),
        {"name": "Acme", "default_approval_timeout_minutes": 60, "time_zone": "Mars/Olympus"},
    )
    assert response.status_code == HTTPStatus.OK
    assert b"errorlist" in response.content
    org_a.refresh_from_db()
    assert org_a.time_zone == "UTC"


def test_a_zero_minute_timeout_is_refused_with_a_form_error(client, alice, org_a):
    client.force_login(alice)
    response = client.post(
        settings_url(org_a), {"name": "Acme", "default_approval_timeout_minutes": 0}
    )
    assert response.status_code == HTTPStatus.OK
    assert b"errorlist" in response.content
    org_a.refresh_from_db()
    assert org_a.default_approval_timeout == 3600


@pytest.mark.parametrize("persona", ["bob", "vera", "dana"])
def test_only_owners_change_organisation_settings(client, org_a, persona, request):
    client.force_login(request.getfixturevalue(persona))
    response = client.post(
        settings_url(org_a), {"name": "Hijacked", "default_approval_timeout_minutes": 5}
    )
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert Organization.objects.get(pk=org_a.pk).name == "Acme"


def test_an_outsider_gets_404_on_organisation_settings(client, charlie, org_a):
    client.force_login(charlie)
    assert client.get(settings_url(org_a)).status_code == HTTPStatus.NOT_FOUND


def test_organisation_update_rejects_an_empty_name(alice, org_a):
    with pytest.raises(services.ValidationFailed):
        services.organization_update(
            actor=alice, organization=org_a, name="  ", default_approval_timeout=600
        )


def test_a_user_turns_approval_emails_off_on_the_profile_page(client, bob):
    client.force_login(bob)
    response = client.post(reverse("profile"), {"name": "Bob"})
    assert response.status_code == HTTPStatus.FOUND
    bob.refresh_from_db()
    assert bob.notify_approvals is False
    assert bob.name == "Bob"


def test_a_user_turns_approval_emails_back_on(client, bob):
    bob.notify_approvals = False
    bob.save()
    client.force_login(bob)
    client.post(reverse("profile"), {"name": "", "notify_approvals": "on"})
    bob.refresh_from_db()
    assert bob.notify_approvals is True


def test_commands_refuse_an_organisation_name_that_several_organisations_share(db, alice):
    from django.core.management import CommandError, call_command

    from accounts.services import organization_create

    organization_create(owner=alice, name="Twin")
    organization_create(owner=alice, name="Twin")
    with pytest.raises(CommandError, match="Several organisations are named 'Twin'"):
        call_command("warden_audit", "export", "--org", "Twin")
