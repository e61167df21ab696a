"""Someone who never got the verification email can ask for it again (and the login page
offers that, with one "Forgot your password?" link)."""

from __future__ import annotations

import re
from http import HTTPStatus

import pytest
from allauth.account.models import EmailAddress
from django.core import mail
from django.core.cache import cache
from django.urls import reverse

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

RESEND = "/verify-email/resend/"


@pytest.fixture(autouse=True)
def _no_rate_limit_left_over():
    cache.clear()  # allauth's rate limits live in the cache
    yield
    cache.clear()


@pytest.fixture
def nina():
    user = UserFactory(email="nina@example.com")
    EmailAddress.objects.create(user=user, email=user.email, verified=False, primary=True)
    return user


def test_an_unverified_user_gets_a_new_verification_link(client, nina):
    response = client.post(RESEND, {"email": "Nina@Example.com"})
    assert response.status_code == HTTPStatus.OK
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["nina@example.com"]
    link = re.search(r"https?://[^/\s]+(/accounts/confirm-email/[^\s]+/)", mail.outbox[0].body)
    assert link is not None
    client.post(link.group(1))
    assert EmailAddress.objects.get(email="nina@example.com").verified


def test_an_unknown_address_gets_the_same_answer_and_no_email(client, nina):
    known = client.post(RESEND, {"email": "nina@example.com"}).content.decode()
    unknown = client.post(RESEND, {"email": "nobody@example.com"}).content.decode()
    assert len(mail.outbox) == 1
    assert known.replace("nina@example.com", "X") == unknown.replace("nobody@example.com", "X")


def test_a_verified_address_gets_no_email(client, alice):
    EmailAddress.objects.create(user=alice, email=alice.email, verified=True, primary=True)
    response = client.post(RESEND, {"email": alice.email})
    assert response.status_code == HTTPStatus.OK
    assert mail.outbox == []


def test_asking_twice_in_a_row_sends_one_email(client, nina):
    client.post(RESEND, {"email": "nina@example.com"})
    client.post(RESEND, {"email": "nina@example.com"})
    assert len(mail.outbox) == 1


def test_a_malformed_address_is_a_400_naming_the_field(client):
    response = client.post(RESEND, {"email": "not an address"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Enter a valid email address." in response.content.decode()
    assert mail.outbox == []


def test_the_login_page_links_to_the_resend_page_and_to_the_reset_once(client):
    page = client.get(reverse("account_login")).content.decode()
    assert page.count("Forgot your password?") == 1
    assert f'href="{RESEND}"' in page


def test_the_verification_sent_page_offers_to_send_it_again(client):
    page = client.get(reverse("account_email_verification_sent")).content.decode()
    assert f'href="{RESEND}"' in page
