from __future__ import annotations

from http import HTTPStatus

import pytest
from django.urls import reverse

from accounts.models import Invitation, Membership, Organization, Plan, User
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
