from __future__ import annotations

import re
from http import HTTPStatus

import pytest
from allauth.account.models import EmailAddress
from django.core import mail
from django.urls import reverse

from accounts.models import Membership, Organization, User

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a sturdy new passphrase 42"


def sign_up(client, email="nina@example.com", org="Nina Labs"):
    return client.post(
        reverse("account_signup"),
        {
            "organization_name": org,
            "email": email,
            "password1": NEW_PASSWORD,
            "password2": NEW_PASSWORD,
        },
    )


def confirmation_link(message) -> str:
    return re.search(r"https?://[^/\s]+(/accounts/confirm-email/[^\s]+/)", message.body).group(1)


def test_sign_up_page_asks_for_an_organisation_name(client):
    response = client.get(reverse("account_signup"))
    assert response.status_code == HTTPStatus.OK
    assert b"Organisation name" in response.content


def test_sign_up_creates_an_organisation_on_free_owned_by_the_new_user(client):
    sign_up(client)
    user = User.objects.get(email="nina@example.com")
    organization = Organization.objects.get(name="Nina Labs")
    assert organization.plan.slug == "free"
    assert Membership.objects.get(user=user, organization=organization).role == "owner"
    assert user.current_organization == organization


def test_sign_up_without_an_organisation_name_is_refused(client):
    response = sign_up(client, org="")
    assert response.status_code == HTTPStatus.OK
    assert b"Name the organisation" in response.content
    assert not User.objects.filter(email="nina@example.com").exists()


def test_sign_up_does_not_log_in_before_the_email_is_verified(client):
    response = sign_up(client)
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == reverse("account_email_verification_sent")
    assert client.get(reverse("dashboard")).status_code == HTTPStatus.FOUND  # to login
    assert len(mail.outbox) == 1


def test_logging_in_with_an_unverified_email_does_not_reach_the_dashboard(client):
    sign_up(client)
    client.logout()
    response = client.post(
        reverse("account_login"), {"login": "nina@example.com", "password": NEW_PASSWORD}
    )
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == reverse("account_email_verification_sent")
    assert "_auth_user_id" not in client.session


def test_confirming_the_email_logs_in_and_lands_in_the_new_organisation(client):
    sign_up(client)
    link = confirmation_link(mail.outbox[0])
    response = client.post(link)
    assert response.status_code == HTTPStatus.FOUND
    assert EmailAddress.objects.get(email="nina@example.com").verified
    dashboard = client.get(reverse("dashboard"))
    assert dashboard.status_code == HTTPStatus.OK
    assert b"Nina Labs" in dashboard.content


def test_login_page_renders_inside_the_warden_layout(client):
    response = client.get(reverse("account_login"))
    assert response.status_code == HTTPStatus.OK
    assert b"warden.css" in response.content
    assert b'name="viewport"' in response.content


def test_password_reset_sends_an_email_to_a_known_user(client, alice):
    response = client.post(reverse("account_reset_password"), {"email": alice.email})
    assert response.status_code == HTTPStatus.FOUND
    assert mail.outbox[0].to == [alice.email]
    assert "/accounts/password/reset/key/" in mail.outbox[0].body


def test_verification_emails_come_from_warden_not_example_com(client):
    sign_up(client)
    assert "Warden" in mail.outbox[0].subject
    assert "example.com" not in mail.outbox[0].subject


def test_the_confirmation_link_shows_a_confirm_page_inside_the_warden_layout(client):
    sign_up(client)
    response = client.get(confirmation_link(mail.outbox[0]))
    assert response.status_code == HTTPStatus.OK
    assert b"warden.css" in response.content
    assert b"nina@example.com" in response.content


def test_the_password_change_page_renders_for_a_logged_in_user(client, alice):
    client.force_login(alice)
    response = client.get(reverse("account_change_password"))
    assert response.status_code == HTTPStatus.OK
    assert b"warden.css" in response.content
