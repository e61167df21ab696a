"""The webhook API: owners and admins manage, members read, outsiders get 404."""

from __future__ import annotations

from http import HTTPStatus

import pytest

from accounts.models import Plan
from tests.conftest import PASSWORD
from tests.webhooks.conftest import approval_data
from webhooks import services
from webhooks.models import Delivery

BASE = "/api/v1/webhooks"


def login(client, user):
    assert client.login(email=user.email, password=PASSWORD)
    return client


@pytest.fixture
def alice_client(client, alice, org_a):
    return login(client, alice)


def create(client, **body):
    payload = {"url": "https://example.com/hook", "events": ["approval.approved"], **body}
    return client.post(f"{BASE}/endpoints", payload, content_type="application/json")


def test_owner_creates_an_endpoint_and_sees_the_secret_once(alice_client):
    response = create(alice_client, format="arden")
    assert response.status_code == HTTPStatus.CREATED
    body = response.json()
    assert body["secret"].startswith("whsk_")
    assert body["format"] == "arden"
    listed = alice_client.get(f"{BASE}/endpoints").json()["results"]
    assert [e["id"] for e in listed] == [body["id"]]
    assert "secret" not in listed[0]
    assert "secret" not in alice_client.get(f"{BASE}/endpoints/{body['id']}").json()


def test_bad_url_is_a_400_naming_the_field(alice_client):
    response = create(alice_client, url="ftp://example.com")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["field"] == "url"
    assert response.json()["code"] == "invalid"


REFUSED_URLS = [
    ("https://localhost/hook", "127.0.0.1"),  # resolved by the system's resolver
    ("https://127.0.0.1/hook", "127.0.0.1"),
    ("https://10.20.30.40/hook", "10.20.30.40"),
    ("https://169.254.169.254/latest/meta-data", "169.254.169.254"),
    ("https://169.254.10.20/hook", "169.254.10.20"),
    ("https://[::1]/hook", "::1"),
]


@pytest.fixture
def private_refused(settings):
    settings.WARDEN_WEBHOOKS_ALLOW_PRIVATE = False


def assert_refused_without_the_address(response, address: str) -> None:
    assert response.status_code == HTTPStatus.BAD_REQUEST
    body = response.json()
    assert body["field"] == "url"
    assert "not allowed" in body["detail"]
    assert address not in response.content.decode()


@pytest.mark.parametrize(("url", "address"), REFUSED_URLS)
def test_creating_an_endpoint_whose_url_resolves_to_a_private_address_is_refused(
    alice_client, private_refused, url, address
):
    response = create(alice_client, url=url)
    assert_refused_without_the_address(response, address)
    assert alice_client.get(f"{BASE}/endpoints").json()["results"] == []


@pytest.mark.parametrize(("url", "address"), REFUSED_URLS)
def test_changing_an_endpoint_url_to_a_private_address_is_refused(
    alice_client, settings, url, address
):
    endpoint_id = create(alice_client).json()["id"]
    settings.WARDEN_WEBHOOKS_ALLOW_PRIVATE = False
    response = alice_client.patch(
        f"{BASE}/endpoints/{endpoint_id}", {"url": url}, content_type="application/json"
    )
    assert_refused_without_the_address(response, address)
    detail = alice_client.get(f"{BASE}/endpoints/{endpoint_id}").json()
    assert detail["url"] == "https://example.com/hook"


def test_an_endpoint_url_on_a_public_address_is_accepted(alice_client, private_refused):
    response = create(alice_client, url="https://93.184.215.14/hook")
    assert response.status_code == HTTPStatus.CREATED


def test_an_endpoint_url_whose_host_does_not_resolve_is_refused(alice_client, private_refused):
    response = create(alice_client, url="https://no-such-host.invalid/hook")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["field"] == "url"


def test_private_addresses_are_accepted_when_the_setting_allows_them(alice_client, settings):
    settings.WARDEN_WEBHOOKS_ALLOW_PRIVATE = True
    response = create(alice_client, url="https://10.20.30.40/hook")
    assert response.status_code == HTTPStatus.CREATED


def test_free_plan_gets_plan_required(alice_client, org_a):
    org_a.plan = Plan.objects.get(slug="free")
    org_a.save()
    response = create(alice_client)
    assert response.status_code == HTTPStatus.PAYMENT_REQUIRED
    assert response.json()["code"] == "plan_required"
    assert "Pro" in response.json()["detail"]


def test_approver_can_read_but_not_create(client, bob, org_a):
    login(client, bob)
    assert client.get(f"{BASE}/endpoints").status_code == HTTPStatus.OK
    assert create(client).status_code == HTTPStatus.FORBIDDEN


def test_outsider_gets_404_for_another_orgs_endpoint_and_delivery(client, charlie, org_c, org_a):
    endpoint = services.endpoint_create(
        actor=None, organization=org_a, url="https://e.com/"
    ).endpoint
    event = services.event_emit(
        organization=org_a, event_type="approval.approved", data=approval_data()
    )
    delivery = event.deliveries.get()
    login(client, charlie)
    for method, url in [
        ("get", f"{BASE}/endpoints/{endpoint.public_id}"),
        ("patch", f"{BASE}/endpoints/{endpoint.public_id}"),
        ("delete", f"{BASE}/endpoints/{endpoint.public_id}"),
        ("post", f"{BASE}/endpoints/{endpoint.public_id}/rotate"),
        ("post", f"{BASE}/endpoints/{endpoint.public_id}/test"),
        ("get", f"{BASE}/endpoints/{endpoint.public_id}/deliveries"),
        ("get", f"{BASE}/deliveries/{delivery.public_id}"),
        ("post", f"{BASE}/deliveries/{delivery.public_id}/resend"),
    ]:
        response = getattr(client, method)(url, {}, content_type="application/json")
        assert response.status_code == HTTPStatus.NOT_FOUND, (method, url)
        assert response.json()["code"] == "not_found"


def test_patch_disables_and_changes_events(alice_client):
    endpoint_id = create(alice_client).json()["id"]
    response = alice_client.patch(
        f"{BASE}/endpoints/{endpoint_id}",
        {"enabled": False, "events": ["approval.rejected"]},
        content_type="application/json",
    )
    assert response.status_code == HTTPStatus.OK
    assert response.json()["enabled"] is False
    assert response.json()["events"] == ["approval.rejected"]


def test_rotate_returns_a_new_secret_and_the_grace_end(alice_client):
    created = create(alice_client).json()
    rotated = alice_client.post(f"{BASE}/endpoints/{created['id']}/rotate").json()
    assert rotated["secret"] != created["secret"]
    assert rotated["previous_secret_expires_at"]


def test_test_event_creates_a_delivery_to_that_endpoint(alice_client):
    endpoint_id = create(alice_client).json()["id"]
    response = alice_client.post(f"{BASE}/endpoints/{endpoint_id}/test")
    assert response.status_code == HTTPStatus.ACCEPTED
    assert response.json()["event_type"] == "webhook.test"
    deliveries = alice_client.get(f"{BASE}/endpoints/{endpoint_id}/deliveries").json()
    assert deliveries["count"] == 1


def test_deliveries_list_includes_attempts(alice_client, webhook_receiver):
    from webhooks import dispatch

    endpoint_id = create(alice_client, url=webhook_receiver.url()).json()["id"]
    delivery_id = alice_client.post(f"{BASE}/endpoints/{endpoint_id}/test").json()["id"]
    dispatch.delivery_attempt(delivery_public_id=delivery_id)
    (item,) = alice_client.get(f"{BASE}/endpoints/{endpoint_id}/deliveries").json()["results"]
    assert item["status"] == "succeeded"
    assert item["attempts"][0]["response_status"] == 200
    assert item["attempts"][0]["request_headers"]["webhook-id"] == item["event_id"]


def test_resend_and_recover(alice_client):
    endpoint_id = create(alice_client).json()["id"]
    delivery_id = alice_client.post(f"{BASE}/endpoints/{endpoint_id}/test").json()["id"]
    Delivery.objects.filter(public_id=delivery_id).update(status="failed")
    response = alice_client.post(
        f"{BASE}/endpoints/{endpoint_id}/recover",
        {"since": "2000-01-01T00:00:00Z"},
        content_type="application/json",
    )
    assert response.json() == {"recovered": 1}
    Delivery.objects.filter(public_id=delivery_id).update(status="failed")
    response = alice_client.post(f"{BASE}/deliveries/{delivery_id}/resend")
    assert response.status_code == HTTPStatus.ACCEPTED
    assert response.json()["status"] == "pending"


@pytest.mark.parametrize(
    "since", ["yesterday", "2026-01-01T00:00:00", "2026-02-30T00:00Z", "0001-01-01T00:00+01:00"]
)
def test_recover_without_a_valid_since_is_a_400(alice_client, since):
    endpoint_id = create(alice_client).json()["id"]
    response = alice_client.post(
        f"{BASE}/endpoints/{endpoint_id}/recover",
        {"since": since},
        content_type="application/json",
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["field"] == "since"


def test_recover_since_a_zone_offset_postgresql_cannot_store_reads_it_in_utc(alice_client):
    endpoint_id = create(alice_client).json()["id"]
    response = alice_client.post(
        f"{BASE}/endpoints/{endpoint_id}/recover",
        {"since": "2026-01-01T00:00:00+21:31"},
        content_type="application/json",
    )
    assert response.status_code == HTTPStatus.ACCEPTED


def test_anonymous_is_refused(client):
    assert client.get(f"{BASE}/endpoints").status_code in (401, 403)


@pytest.mark.parametrize("kind", ["agent", "org", "approver"])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/endpoints"),
        ("post", "/endpoints"),
        ("get", "/endpoints/{endpoint}"),
        ("patch", "/endpoints/{endpoint}"),
        ("delete", "/endpoints/{endpoint}"),
        ("post", "/endpoints/{endpoint}/rotate"),
        ("post", "/endpoints/{endpoint}/test"),
        ("post", "/endpoints/{endpoint}/recover"),
        ("get", "/endpoints/{endpoint}/deliveries"),
        ("get", "/deliveries/dlv_x"),
        ("post", "/deliveries/dlv_x/resend"),
    ],
)
def test_api_keys_get_a_403_on_every_webhook_operation(
    client, org_a, agent_a, make_endpoint, kind, method, path
):
    from tests.approvals.conftest import key_create

    endpoint = make_endpoint("https://example.com/hook").endpoint
    key = key_create(org_a, kind, agent_a)
    url = BASE + path.format(endpoint=endpoint.public_id)
    body = '{"url": "https://example.com/other", "since": "2026-01-01T00:00:00Z"}'
    if method == "get":
        response = client.get(url, HTTP_X_API_KEY=key.raw)
    else:
        response = getattr(client, method)(
            url, data=body, content_type="application/json", HTTP_X_API_KEY=key.raw
        )
    assert response.status_code == HTTPStatus.FORBIDDEN, response.content
    assert response.json()["code"] == "forbidden"
    endpoint.refresh_from_db()
    assert endpoint.url == "https://example.com/hook"
