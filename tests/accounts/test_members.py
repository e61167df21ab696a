from __future__ import annotations

from http import HTTPStatus

import pytest
from django.urls import reverse

from accounts import services
from accounts.models import Membership
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db
Role = Membership.Role


def membership(user, org) -> Membership:
    return Membership.objects.get(user=user, organization=org)


def role_url(org, user) -> str:
    return reverse("member_role", kwargs={"org_id": org.public_id, "user_id": user.public_id})


def remove_url(org, user) -> str:
    return reverse("member_remove", kwargs={"org_id": org.public_id, "user_id": user.public_id})


def test_the_members_page_lists_every_member(client, alice, org_a):
    client.force_login(alice)
    response = client.get(reverse("members", kwargs={"org_id": org_a.public_id}))
    assert response.status_code == HTTPStatus.OK
    for email in (b"alice@example.com", b"bob@example.com", b"vera@example.com"):
        assert email in response.content


def test_a_viewer_sees_members_but_no_invitation_form(client, vera, org_a):
    client.force_login(vera)
    response = client.get(reverse("members", kwargs={"org_id": org_a.public_id}))
    assert response.status_code == HTTPStatus.OK
    assert b"Send invitation" not in response.content


def test_an_outsider_gets_404_on_the_members_page(client, charlie, org_a):
    client.force_login(charlie)
    response = client.get(reverse("members", kwargs={"org_id": org_a.public_id}))
    assert response.status_code == HTTPStatus.NOT_FOUND


def test_an_outsider_gets_404_changing_a_role(client, charlie, org_a, bob):
    client.force_login(charlie)
    response = client.post(role_url(org_a, bob), {"role": "owner"})
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert membership(bob, org_a).role == Role.APPROVER


def test_a_member_of_another_organisation_is_not_found_through_mine(client, charlie, org_c, bob):
    client.force_login(charlie)
    response = client.post(remove_url(org_c, bob))
    assert response.status_code == HTTPStatus.NOT_FOUND


def test_an_owner_changes_a_role_on_the_members_page(client, alice, bob, org_a):
    client.force_login(alice)
    response = client.post(role_url(org_a, bob), {"role": "admin"})
    assert response.status_code == HTTPStatus.FOUND
    assert membership(bob, org_a).role == Role.ADMIN


def test_an_owner_removes_a_member(client, alice, vera, org_a):
    client.force_login(alice)
    client.post(remove_url(org_a, vera))
    assert not Membership.objects.filter(user=vera, organization=org_a).exists()


def test_an_approver_cannot_change_roles(client, bob, vera, org_a):
    client.force_login(bob)
    response = client.post(role_url(org_a, vera), {"role": "admin"})
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert membership(vera, org_a).role == Role.VIEWER


def test_an_admin_manages_non_owners(dana, vera, org_a):
    services.membership_change_role(
        actor=dana, membership=membership(vera, org_a), role=Role.APPROVER
    )
    assert membership(vera, org_a).role == Role.APPROVER


def test_an_admin_cannot_demote_an_owner(dana, alice, org_a):
    with pytest.raises(services.RoleForbidden):
        services.membership_change_role(
            actor=dana, membership=membership(alice, org_a), role=Role.VIEWER
        )


def test_an_admin_cannot_promote_anyone_to_owner(dana, vera, org_a):
    with pytest.raises(services.RoleForbidden):
        services.membership_change_role(
            actor=dana, membership=membership(vera, org_a), role=Role.OWNER
        )


def test_the_last_owner_cannot_be_demoted(alice, org_a):
    with pytest.raises(services.LastOwnerError):
        services.membership_change_role(
            actor=alice, membership=membership(alice, org_a), role=Role.ADMIN
        )
    assert membership(alice, org_a).role == Role.OWNER


def test_the_last_owner_cannot_be_removed_or_leave(alice, org_a):
    with pytest.raises(services.LastOwnerError):
        services.membership_remove(actor=alice, membership=membership(alice, org_a))
    assert Membership.objects.filter(user=alice, organization=org_a).exists()


def test_the_last_owner_refusal_is_a_visible_message_on_the_page(client, alice, org_a):
    client.force_login(alice)
    response = client.post(role_url(org_a, alice), {"role": "viewer"}, follow=True)
    assert b"at least one owner" in response.content
    assert membership(alice, org_a).role == Role.OWNER


def test_an_owner_can_step_down_once_another_owner_exists(alice, bob, org_a):
    services.membership_change_role(actor=alice, membership=membership(bob, org_a), role="owner")
    services.membership_change_role(actor=alice, membership=membership(alice, org_a), role="admin")
    assert membership(alice, org_a).role == Role.ADMIN


def test_any_member_can_leave(client, vera, org_a):
    client.force_login(vera)
    response = client.post(remove_url(org_a, vera))
    assert response.status_code == HTTPStatus.FOUND
    assert not Membership.objects.filter(user=vera, organization=org_a).exists()


def test_leaving_the_current_organisation_falls_back_to_another(vera, org_a):
    other = UserFactory()
    from tests.factories import OrganizationFactory

    second = OrganizationFactory(name="Second")
    MembershipFactory(user=other, organization=second, role=Role.OWNER)
    MembershipFactory(user=vera, organization=second, role=Role.VIEWER)
    vera.current_organization = org_a
    vera.save()
    services.membership_remove(actor=vera, membership=membership(vera, org_a))
    vera.refresh_from_db()
    assert vera.current_organization is None
    from accounts.selectors import organization_current_for_user

    assert organization_current_for_user(user=vera) == second
