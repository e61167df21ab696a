from __future__ import annotations

import pytest
from allauth.account.models import EmailAddress
from django.core.cache import cache

from accounts.models import Membership
from tests.conftest import PASSWORD
from tests.factories import MembershipFactory, UserFactory


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    # allauth keeps rate-limit counters in the cache; each test starts with none.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def dana(org_a):
    """Dana is an admin in Alice's organisation."""
    user = UserFactory(email="dana@example.com")
    MembershipFactory(user=user, organization=org_a, role=Membership.Role.ADMIN)
    return user


def verify_email(user) -> None:
    EmailAddress.objects.update_or_create(
        user=user, email=user.email, defaults={"verified": True, "primary": True}
    )


@pytest.fixture
def login(client):
    """Log a persona in through the session (no rate limits, no email step)."""

    def _login(user):
        client.force_login(user)
        return client

    return _login


@pytest.fixture
def password() -> str:
    return PASSWORD
