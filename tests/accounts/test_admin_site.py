"""The Django admin is the operator's: what a signed-in non-staff person gets, which models
can be added, and the section and model names."""

from __future__ import annotations

from http import HTTPStatus

import pytest
from django.contrib import admin
from django.urls import reverse

from accounts.admin_site import ReadOnlyModelAdmin
from agents.models import TokenUsage
from audit.models import AuditEntry
from tests.factories import UserFactory
from webhooks.models import Attempt, Delivery, Event

pytestmark = pytest.mark.django_db

READ_ONLY_MODELS = [AuditEntry, Event, Delivery, Attempt, TokenUsage]


@pytest.fixture
def staff_client(client, db):
    client.force_login(UserFactory(email="staff@example.com", is_staff=True, is_superuser=True))
    return client


def test_an_owner_who_is_not_staff_gets_a_page_that_says_the_admin_is_the_operators(
    client, alice, org_a
):
    client.force_login(alice)
    response = client.get("/admin/", follow=True)
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert len(response.redirect_chain) == 1  # one hop to the login URL, no loop
    page = response.content.decode()
    assert "alice@example.com, which is not an operator (staff) account" in page
    assert f'href="{reverse("approvals:queue")}"' in page
    assert 'name="password"' not in page


def test_an_owner_who_is_not_staff_gets_the_same_page_from_the_approvals_admin(
    client, alice, org_a
):
    client.force_login(alice)
    response = client.get("/admin/approvals/approvalrequest/", follow=True)
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert "open the approval queue" in response.content.decode()


def test_someone_signed_out_still_gets_the_admin_login_form(client):
    response = client.get("/admin/", follow=True)
    assert response.status_code == HTTPStatus.OK
    assert 'name="password"' in response.content.decode()


def test_staff_get_the_admin_index(staff_client):
    response = staff_client.get("/admin/")
    assert response.status_code == HTTPStatus.OK
    assert "Warden administration" in response.content.decode()


@pytest.mark.parametrize("model", READ_ONLY_MODELS)
def test_records_the_product_writes_cannot_be_added_changed_or_deleted_in_the_admin(
    staff_client, model
):
    opts = model._meta
    assert isinstance(admin.site._registry[model], ReadOnlyModelAdmin) or model is AuditEntry
    add = reverse(f"admin:{opts.app_label}_{opts.model_name}_add")
    assert staff_client.get(add).status_code == HTTPStatus.FORBIDDEN
    changelist = staff_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
    assert changelist.status_code == HTTPStatus.OK
    assert add not in changelist.content.decode()


def test_the_admin_index_offers_add_only_for_what_an_operator_creates(staff_client):
    apps = staff_client.get("/admin/").context["app_list"]
    addable = sorted(
        f"{app['app_label']}.{model['object_name']}"
        for app in apps
        for model in app["models"]
        if model.get("add_url")
    )
    assert addable == [
        "account.EmailAddress",
        "accounts.User",
        "agents.Agent",
        "agents.ModelPrice",
        "agents.Rule",
        "sites.Site",
    ]


def test_the_admin_sections_have_one_name_each_and_deliveries_are_spelt_right(staff_client):
    apps = staff_client.get("/admin/").context["app_list"]
    names = [app["name"] for app in apps]
    assert names == sorted(set(names), key=names.index)  # no section name twice
    assert "Authentication and Authorization" not in names  # groups are not used
    assert set(names) == {
        "Accounts",
        "Agents",
        "Approvals",
        "Audit",
        "Sign-in",
        "Sites",
        "Webhooks",
    }
    webhooks = next(app for app in apps if app["app_label"] == "webhooks")
    assert "Deliveries" in [model["name"] for model in webhooks["models"]]
