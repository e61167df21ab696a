"""The delivery log on an endpoint's page: filters by status and event, readable bodies."""

from __future__ import annotations

import json
from http import HTTPStatus

import pytest

from tests.conftest import PASSWORD
from webhooks import services
from webhooks.models import Attempt, Delivery, Event


def login(client, user):
    assert client.login(email=user.email, password=PASSWORD)
    return client


def delivery(endpoint, *, event_type: str, status: str, body: dict | None = None) -> Delivery:
    event = Event.objects.create(
        organization=endpoint.organization, event_type=event_type, data=body or {}
    )
    made = Delivery.objects.create(event=event, endpoint=endpoint, status=status, attempt_count=1)
    Attempt.objects.create(
        delivery=made,
        number=1,
        request_url=endpoint.url,
        request_body=json.dumps(body or {"id": event.public_id}, separators=(",", ":")),
        response_status=200 if status == "succeeded" else 500,
        response_body="<html>Internal error</html>",
    )
    return made


@pytest.fixture
def endpoint(org_a):
    return services.endpoint_create(
        actor=None, organization=org_a, url="https://e.com/x", events=list(services.EVENT_TYPES)
    ).endpoint


@pytest.fixture
def three_deliveries(endpoint):
    return {
        "ok": delivery(endpoint, event_type="approval.approved", status="succeeded"),
        "failed": delivery(endpoint, event_type="approval.rejected", status="failed"),
        "pending": delivery(endpoint, event_type="log.pending_approval", status="pending"),
    }


def shown(response) -> set[str]:
    return {d.public_id for d in response.context["deliveries"]}


def test_the_delivery_log_filters_by_status(client, vera, endpoint, three_deliveries):
    login(client, vera)
    response = client.get(f"/webhooks/{endpoint.public_id}/?status=failed")
    assert response.status_code == HTTPStatus.OK
    assert shown(response) == {three_deliveries["failed"].public_id}


def test_the_delivery_log_filters_by_event(client, vera, endpoint, three_deliveries):
    login(client, vera)
    response = client.get(f"/webhooks/{endpoint.public_id}/?event=log.pending_approval")
    assert shown(response) == {three_deliveries["pending"].public_id}


def test_the_delivery_log_combines_status_and_event_filters(
    client, vera, endpoint, three_deliveries
):
    login(client, vera)
    page = f"/webhooks/{endpoint.public_id}/"
    assert shown(client.get(page, {"status": "failed", "event": "approval.rejected"})) == {
        three_deliveries["failed"].public_id
    }
    assert shown(client.get(page, {"status": "failed", "event": "approval.approved"})) == set()
    empty = client.get(page, {"status": "pending", "event": "approval.approved"})
    assert "No deliveries match." in empty.content.decode()


def test_an_unknown_filter_value_is_ignored_not_an_error(client, vera, endpoint, three_deliveries):
    login(client, vera)
    response = client.get(f"/webhooks/{endpoint.public_id}/", {"status": "nope", "event": "x.y"})
    assert response.status_code == HTTPStatus.OK
    assert shown(response) == {d.public_id for d in three_deliveries.values()}
    assert response.context["filters"] == {"status": "", "event": ""}


def test_the_chosen_filters_stay_selected(client, vera, endpoint, three_deliveries):
    login(client, vera)
    page = client.get(
        f"/webhooks/{endpoint.public_id}/", {"status": "failed", "event": "approval.rejected"}
    ).content.decode()
    assert '<option value="failed" selected>' in page
    assert '<option value="approval.rejected" selected>' in page


def test_an_attempt_body_is_pretty_printed(client, vera, endpoint):
    delivery(
        endpoint,
        event_type="approval.approved",
        status="succeeded",
        body={"data": {"arguments": {"amount": 420}}},
    )
    login(client, vera)
    page = client.get(f"/webhooks/{endpoint.public_id}/").content.decode()
    assert "{\n  &quot;data&quot;: {\n    &quot;arguments&quot;: {\n" in page
    assert '<pre class="body">' in page


def test_a_body_that_is_not_json_is_shown_as_it_came(client, vera, endpoint, three_deliveries):
    login(client, vera)
    page = client.get(f"/webhooks/{endpoint.public_id}/").content.decode()
    assert "&lt;html&gt;Internal error&lt;/html&gt;" in page


def test_an_outsider_gets_404_on_a_filtered_delivery_log(client, charlie, org_c, endpoint):
    login(client, charlie)
    response = client.get(f"/webhooks/{endpoint.public_id}/", {"status": "failed"})
    assert response.status_code == HTTPStatus.NOT_FOUND
