"""The Django admin cannot point an endpoint at an address the API would refuse."""

from __future__ import annotations

from http import HTTPStatus

import pytest

from webhooks import services


@pytest.fixture
def staff_client(client, alice):
    alice.is_staff = alice.is_superuser = True
    alice.save(update_fields=["is_staff", "is_superuser"])
    client.force_login(alice)
    return client


def change(staff_client, endpoint, url: str):
    return staff_client.post(
        f"/admin/webhooks/endpoint/{endpoint.pk}/change/",
        {
            "organization": endpoint.organization_id,
            "url": url,
            "description": "",
            "events": '["approval.approved"]',
            "format": endpoint.format,
            "enabled": "on",
            "disabled_reason": "",
        },
    )


def test_changing_the_url_to_a_private_address_in_the_admin_is_refused(
    staff_client, settings, org_a
):
    endpoint = services.endpoint_create(
        actor=None, organization=org_a, url="https://e.com/hook"
    ).endpoint
    settings.WARDEN_WEBHOOKS_ALLOW_PRIVATE = False
    response = change(staff_client, endpoint, "https://10.20.30.40/hook")
    assert response.status_code == HTTPStatus.OK  # the form again, with the error
    assert "not allowed" in response.content.decode()
    endpoint.refresh_from_db()
    assert endpoint.url == "https://e.com/hook"


def test_changing_the_url_to_a_public_address_in_the_admin_works(staff_client, settings, org_a):
    endpoint = services.endpoint_create(
        actor=None, organization=org_a, url="https://e.com/hook"
    ).endpoint
    settings.WARDEN_WEBHOOKS_ALLOW_PRIVATE = False
    response = change(staff_client, endpoint, "https://93.184.215.14/hook")
    assert response.status_code == HTTPStatus.FOUND
    endpoint.refresh_from_db()
    assert endpoint.url == "https://93.184.215.14/hook"
