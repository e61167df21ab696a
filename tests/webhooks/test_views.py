"""Webhook pages: the secret is shown once; outsiders get 404."""

from __future__ import annotations

from http import HTTPStatus

from tests.conftest import PASSWORD
from webhooks import services
from webhooks.models import Endpoint


def login(client, user):
    assert client.login(email=user.email, password=PASSWORD)
    return client


def test_creating_an_endpoint_shows_its_secret_once(client, alice, org_a):
    login(client, alice)
    response = client.post(
        "/webhooks/new/",
        {"url": "https://example.com/hook", "format": "standard", "events": ["approval.approved"]},
    )
    assert response.status_code == HTTPStatus.OK
    endpoint = Endpoint.objects.get()
    secret = response.context["secret"]
    assert secret.startswith("whsec_")
    assert secret in response.content.decode()
    detail = client.get(f"/webhooks/{endpoint.public_id}/")
    assert secret not in detail.content.decode()


def test_invalid_form_shows_the_error(client, alice, org_a):
    login(client, alice)
    response = client.post("/webhooks/new/", {"url": "nope", "events": ["approval.approved"]})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert Endpoint.objects.count() == 0


def test_member_sees_the_list_and_detail(client, vera, org_a):
    endpoint = services.endpoint_create(
        actor=None, organization=org_a, url="https://e.com/x"
    ).endpoint
    login(client, vera)
    assert "https://e.com/x" in client.get("/webhooks/").content.decode()
    assert client.get(f"/webhooks/{endpoint.public_id}/").status_code == HTTPStatus.OK


def test_viewer_cannot_rotate(client, vera, org_a):
    endpoint = services.endpoint_create(
        actor=None, organization=org_a, url="https://e.com/x"
    ).endpoint
    before = endpoint.secret
    login(client, vera)
    client.post(f"/webhooks/{endpoint.public_id}/rotate/")
    endpoint.refresh_from_db()
    assert endpoint.secret == before


def test_outsider_gets_404_on_detail_and_actions(client, charlie, org_c, org_a):
    endpoint = services.endpoint_create(
        actor=None, organization=org_a, url="https://e.com/x"
    ).endpoint
    login(client, charlie)
    assert client.get(f"/webhooks/{endpoint.public_id}/").status_code == HTTPStatus.NOT_FOUND
    for action in ("test", "rotate", "disable", "delete"):
        response = client.post(f"/webhooks/{endpoint.public_id}/{action}/")
        assert response.status_code == HTTPStatus.NOT_FOUND
    assert Endpoint.objects.filter(pk=endpoint.pk, enabled=True).exists()


def test_owner_sends_a_test_event_from_the_page(client, alice, org_a):
    endpoint = services.endpoint_create(
        actor=None, organization=org_a, url="https://e.com/x"
    ).endpoint
    login(client, alice)
    client.post(f"/webhooks/{endpoint.public_id}/test/")
    assert endpoint.deliveries.get().event.event_type == "webhook.test"


def test_recover_on_the_page_takes_a_utc_time_and_refuses_impossible_ones(client, alice, org_a):
    """The page's recover form reads its start time as the API does: an impossible or
    out-of-range time is a message (never a 500), a time without zone is UTC."""
    endpoint = services.endpoint_create(
        actor=None, organization=org_a, url="https://e.com/x"
    ).endpoint
    login(client, alice)
    url = f"/webhooks/{endpoint.public_id}/recover/"
    for since in ("2026-13-01T00:00", "0001-01-01T00:00+01:00", "yesterday", ""):
        response = client.post(url, {"since": since}, follow=True)
        assert response.status_code == HTTPStatus.OK, since
        assert "Give a start time like" in response.content.decode(), since
    for since in ("2026-01-31T00:00", "2026-01-31T00:00+21:31"):
        response = client.post(url, {"since": since}, follow=True)
        assert "queued again" in response.content.decode(), since
