from __future__ import annotations

import re
from datetime import timedelta
from http import HTTPStatus

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone
from freezegun import freeze_time

from accounts import services
from accounts.forms import PENDING_INVITATION_SESSION_KEY
from accounts.models import Invitation, Membership, User
from tests.accounts.conftest import verify_email

pytestmark = pytest.mark.django_db
NEW_PASSWORD = "a sturdy new passphrase 42"


@pytest.fixture
def invite(alice, org_a, django_capture_on_commit_callbacks):
    def _invite(email="nina@example.com", role=Membership.Role.APPROVER):
        with django_capture_on_commit_callbacks(execute=True):
            invitation = services.invitation_create(
                actor=alice, organization=org_a, email=email, role=role
            )
        return invitation

    return _invite


def link_path(message) -> str:
    return re.search(r"https?://[^/\s]+(/invitations/[^\s]+/)", message.body).group(1)


def test_an_owner_invites_by_email_and_the_email_carries_a_link(invite):
    invitation = invite()
    assert mail.outbox[0].to == ["nina@example.com"]
    assert "Acme" in mail.outbox[0].subject
    assert link_path(mail.outbox[0]) == reverse(
        "invitation_accept", kwargs={"token": services.invitation_token(invitation)}
    )


def test_inviting_through_the_members_page_sends_the_email(
    client, alice, org_a, django_capture_on_commit_callbacks
):
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("invitation_create", kwargs={"org_id": org_a.public_id}),
            {"email": "Nina@Example.com", "role": "approver"},
        )
    assert response.status_code == HTTPStatus.FOUND
    assert Invitation.objects.get(email="nina@example.com").role == "approver"
    assert mail.outbox[0].to == ["nina@example.com"]


def test_a_new_user_who_signs_up_through_the_link_joins_the_organisation(client, invite, org_a):
    invite()
    path = link_path(mail.outbox[0])
    assert client.get(path).status_code == HTTPStatus.OK
    response = client.post(
        reverse("account_signup"),
        {"email": "nina@example.com", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == path
    response = client.post(path)
    assert response.status_code == HTTPStatus.FOUND
    nina = User.objects.get(email="nina@example.com")
    assert Membership.objects.get(user=nina, organization=org_a).role == "approver"
    assert nina.current_organization == org_a
    assert not nina.organizations.exclude(pk=org_a.pk).exists()


def test_an_existing_user_who_logs_in_through_the_link_joins(client, invite, org_a, charlie):
    verify_email(charlie)
    invite(email=charlie.email, role=Membership.Role.VIEWER)
    path = link_path(mail.outbox[0])
    client.get(path)
    response = client.post(
        reverse("account_login"), {"login": charlie.email, "password": "correct horse battery"}
    )
    assert response["Location"] == path
    client.post(path)
    assert Membership.objects.get(user=charlie, organization=org_a).role == "viewer"
    assert PENDING_INVITATION_SESSION_KEY not in client.session


def test_an_expired_link_is_refused_with_a_visible_message(client, invite, charlie):
    invite(email=charlie.email)
    path = link_path(mail.outbox[0])
    with _later(days=8):
        client.force_login(charlie)
        response = client.post(path)
    assert response.status_code == HTTPStatus.GONE
    assert b"expired" in response.content
    assert not Membership.objects.filter(user=charlie, organization__name="Acme").exists()


def test_a_reused_link_is_refused_with_a_visible_message(client, invite, charlie, bob):
    invite(email=charlie.email)
    path = link_path(mail.outbox[0])
    client.force_login(charlie)
    client.post(path)
    Membership.objects.filter(user=charlie, organization__name="Acme").delete()
    response = client.post(path)
    assert response.status_code == HTTPStatus.GONE
    assert b"already used" in response.content
    assert not Membership.objects.filter(user=charlie, organization__name="Acme").exists()


def test_a_link_for_another_email_is_refused_with_a_clear_error(client, invite, charlie):
    invite(email="nina@example.com")
    path = link_path(mail.outbox[0])
    client.force_login(charlie)
    response = client.post(path)
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert b"This invitation is for nina@example.com" in response.content
    assert not Membership.objects.filter(user=charlie, organization__name="Acme").exists()


def test_accepting_with_the_wrong_account_is_refused_by_the_service(invite, charlie):
    invitation = invite(email="nina@example.com")
    with pytest.raises(services.Forbidden) as caught:
        services.invitation_accept(user=charlie, invitation=invitation)
    assert caught.value.code == "invitation_email_mismatch"


def test_a_revoked_link_is_refused(client, invite, alice, charlie):
    invitation = invite(email=charlie.email)
    services.invitation_revoke(actor=alice, invitation=invitation)
    client.force_login(charlie)
    response = client.get(link_path(mail.outbox[0]))
    assert response.status_code == HTTPStatus.GONE
    assert b"revoked" in response.content


def test_a_tampered_link_is_refused(client, invite):
    invite()
    path = link_path(mail.outbox[0])
    response = client.get(path[:-3] + "xx/")
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert b"not valid" in response.content


def test_inviting_again_replaces_the_pending_invitation(invite):
    first = invite()
    second = invite()
    first.refresh_from_db()
    assert first.revoked_at is not None
    assert second.revoked_at is None


def test_an_approver_cannot_invite(client, bob, org_a):
    client.force_login(bob)
    response = client.post(
        reverse("invitation_create", kwargs={"org_id": org_a.public_id}),
        {"email": "nina@example.com", "role": "viewer"},
    )
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert not Invitation.objects.exists()


def test_an_admin_cannot_invite_an_owner(dana, org_a):
    with pytest.raises(services.RoleForbidden):
        services.invitation_create(
            actor=dana, organization=org_a, email="nina@example.com", role="owner"
        )


def test_an_admin_can_invite_an_approver(dana, org_a):
    invitation = services.invitation_create(
        actor=dana, organization=org_a, email="nina@example.com", role="approver"
    )
    assert invitation.invited_by == dana


def test_an_outsider_gets_404_when_inviting_into_another_organisation(client, charlie, org_a):
    client.force_login(charlie)
    response = client.post(
        reverse("invitation_create", kwargs={"org_id": org_a.public_id}),
        {"email": "nina@example.com", "role": "viewer"},
    )
    assert response.status_code == HTTPStatus.NOT_FOUND


def test_an_outsider_gets_404_when_revoking_an_invitation(client, invite, charlie, org_a):
    invitation = invite()
    client.force_login(charlie)
    response = client.post(
        reverse(
            "invitation_revoke",
            kwargs={"org_id": org_a.public_id, "invitation_id": invitation.public_id},
        )
    )
    assert response.status_code == HTTPStatus.NOT_FOUND
    invitation.refresh_from_db()
    assert invitation.revoked_at is None


def test_an_invitation_of_one_organisation_cannot_be_revoked_through_another(
    client, invite, charlie, org_c
):
    invitation = invite()
    client.force_login(charlie)
    response = client.post(
        reverse(
            "invitation_revoke",
            kwargs={"org_id": org_c.public_id, "invitation_id": invitation.public_id},
        )
    )
    assert response.status_code == HTTPStatus.NOT_FOUND


def _later(days: int):
    return freeze_time(timezone.now() + timedelta(days=days))


def test_the_login_page_says_which_organisation_the_visitor_is_joining(client, invite):
    invite()
    client.get(link_path(mail.outbox[0]))
    response = client.get(reverse("account_login"))
    assert b"Log in to join <strong>Acme</strong>" in response.content


def test_signing_up_with_another_address_than_invited_still_needs_verification(client, invite):
    invite(email="nina@example.com")
    client.get(link_path(mail.outbox[0]))
    response = client.post(
        reverse("account_signup"),
        {"email": "other@example.com", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    assert response["Location"] == reverse("account_email_verification_sent")
    assert "_auth_user_id" not in client.session
