from __future__ import annotations

from datetime import timedelta
from http import HTTPStatus

import pytest
from django.urls import reverse
from django.utils import timezone
from freezegun import freeze_time

from accounts.models import Invitation, Membership, Organization, Plan, User
from tests.conftest import PASSWORD
from tests.factories import UserFactory, plan

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, db):
    staff = UserFactory(email="staff@example.com", is_staff=True, is_superuser=True)
    client.force_login(staff)
    return client


@pytest.mark.parametrize("model", [User, Plan, Organization, Membership, Invitation])
def test_every_accounts_model_has_a_searchable_admin_list(staff_client, org_a, model):
    url = reverse(f"admin:accounts_{model._meta.model_name}_changelist")
    assert staff_client.get(url, {"q": "acme"}).status_code == HTTPStatus.OK


def test_staff_sets_any_plan_in_the_admin(staff_client, org_a):
    url = reverse("admin:accounts_organization_change", args=[org_a.pk])
    response = staff_client.get(url)
    assert response.status_code == HTTPStatus.OK
    form = response.context["adminform"].form
    data = {
        "name": org_a.name,
        "plan": plan("enterprise").pk,
        "default_approval_timeout": org_a.default_approval_timeout,
        "time_zone": org_a.time_zone,
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
    }
    assert "plan" in form.fields
    response = staff_client.post(url, data)
    assert response.status_code == HTTPStatus.FOUND
    org_a.refresh_from_db()
    assert org_a.plan.slug == "enterprise"


def test_staff_deletes_an_organisation_with_its_audit_log_in_the_admin(staff_client, org_a, alice):
    from audit.models import AuditEntry
    from audit.services import audit_record

    audit_record(organization=org_a, kind=AuditEntry.Kind.LOG, actor_user=alice, action="x")
    url = reverse("admin:accounts_organization_delete", args=[org_a.pk])
    response = staff_client.post(url, {"post": "yes"})
    assert response.status_code == HTTPStatus.FOUND
    assert not Organization.objects.filter(pk=org_a.pk).exists()
    assert not AuditEntry.objects.filter(organization_id=org_a.pk).exists()
    alice.refresh_from_db()
    assert alice.current_organization_id is None


# --- the admin login: the same failure limits as the site's login ---------------------------


@pytest.fixture
def operator(db):
    return UserFactory(email="operator@example.com", is_staff=True, is_superuser=True)


def admin_login(client, email: str, password: str):
    return client.post(
        reverse("admin:login"), {"username": email, "password": password, "next": "/admin/"}
    )


def test_the_admin_login_works_with_the_right_password_after_a_few_mistakes(client, operator):
    for _ in range(2):
        assert admin_login(client, operator.email, "wrong").status_code == HTTPStatus.OK
    response = admin_login(client, operator.email, PASSWORD)
    assert response.status_code == HTTPStatus.FOUND
    assert client.session["_auth_user_id"] == str(operator.pk)


def test_twenty_wrong_admin_passwords_lock_the_right_one_out(client, operator):
    for _ in range(20):
        admin_login(client, operator.email, "wrong")
    response = admin_login(client, operator.email, PASSWORD)
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert b"Too many failed login attempts" in response.content
    assert "_auth_user_id" not in client.session


def test_the_admin_lockout_ends_when_the_window_has_passed(client, operator):
    with freeze_time(timezone.now()) as clock:
        for _ in range(5):
            admin_login(client, operator.email, "wrong")
        assert admin_login(client, operator.email, PASSWORD).status_code == 429
        clock.tick(timedelta(minutes=4))
        assert admin_login(client, operator.email, PASSWORD).status_code == 429
        clock.tick(timedelta(minutes=1, seconds=1))
        response = admin_login(client, operator.email, PASSWORD)
    assert response.status_code == HTTPStatus.FOUND
    assert client.session["_auth_user_id"] == str(operator.pk)


def test_failures_on_the_site_login_count_against_the_admin_login(client, operator):
    """One budget per account: an attacker cannot spend it once per login form."""
    for _ in range(5):
        client.post(reverse("account_login"), {"login": operator.email, "password": "wrong"})
    response = admin_login(client, operator.email, PASSWORD)
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert "_auth_user_id" not in client.session


def test_failed_admin_logins_from_one_address_are_limited_across_accounts(client, db):
    for n in range(10):
        admin_login(client, f"nobody{n}@example.com", "wrong")
    response = admin_login(client, "someone-else@example.com", "wrong")
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS


def test_the_admin_login_still_refuses_members_who_are_not_staff(client, alice):
    response = admin_login(client, alice.email, PASSWORD)
    assert response.status_code == HTTPStatus.OK
    assert "_auth_user_id" not in client.session
