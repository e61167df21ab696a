from __future__ import annotations

from http import HTTPStatus

import pytest
from django.conf import settings
from django.urls import reverse

from tests.accounts.conftest import verify_email

pytestmark = pytest.mark.django_db


def attempt(client, email, password):
    return client.post(reverse("account_login"), {"login": email, "password": password})


def test_login_rate_limits_are_configured_for_failures_per_ip_and_per_account():
    assert settings.ACCOUNT_RATE_LIMITS["login_failed"]


def test_login_works_with_the_right_password(client, alice, password):
    verify_email(alice)
    response = attempt(client, alice.email, password)
    assert response.status_code == HTTPStatus.FOUND
    assert client.session["_auth_user_id"] == str(alice.pk)


def test_after_five_failed_logins_even_the_right_password_is_refused(client, alice, password):
    verify_email(alice)
    for _ in range(5):
        response = attempt(client, alice.email, "wrong password")
        assert response.status_code == HTTPStatus.OK
    response = attempt(client, alice.email, password)
    assert b"Too many failed login attempts" in response.content
    assert "_auth_user_id" not in client.session


def test_failed_logins_from_one_address_are_limited_across_accounts(client, db):
    from tests.factories import UserFactory

    users = [UserFactory() for _ in range(11)]
    for user in users[:10]:
        attempt(client, user.email, "wrong password")
    response = attempt(client, users[10].email, "wrong password")
    assert b"Too many failed login attempts" in response.content
