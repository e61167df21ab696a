"""Answers that carry a secret (an API key, a webhook signing secret) are never cached."""

from __future__ import annotations

import json
from http import HTTPStatus

import pytest

from agents import services as agent_services
from agents.models import Agent
from webhooks import services as webhook_services


def no_store(response) -> bool:
    directives = {d.strip() for d in response.get("Cache-Control", "").split(",")}
    return "no-store" in directives


@pytest.fixture
def alice_client(client, alice, org_a):
    client.force_login(alice)
    return client


def post(client, path: str, body: dict | None = None):
    return client.post(path, json.dumps(body or {}), content_type="application/json")


def test_creating_an_api_key_is_answered_no_store(alice_client):
    response = post(alice_client, "/api/v1/keys", {"kind": "org"})
    assert response.status_code == HTTPStatus.CREATED
    assert response.json()["key"]
    assert no_store(response)


def test_rotating_an_api_key_is_answered_no_store(alice_client, alice, org_a):
    agent = Agent.objects.create(organization=org_a, name="bot")
    api_key, _raw = agent_services.api_key_create(
        organization=org_a, kind="agent", agent=agent, environment="test", actor=alice
    )
    response = post(alice_client, f"/api/v1/keys/{api_key.public_id}/rotate")
    assert response.status_code == HTTPStatus.CREATED
    assert response.json()["key"]
    assert no_store(response)


def test_creating_a_webhook_endpoint_is_answered_no_store(alice_client):
    response = post(alice_client, "/api/v1/webhooks/endpoints", {"url": "https://e.com/hook"})
    assert response.status_code == HTTPStatus.CREATED
    assert response.json()["secret"]
    assert no_store(response)


def test_rotating_a_webhook_secret_is_answered_no_store(alice_client, org_a):
    endpoint = webhook_services.endpoint_create(
        actor=None, organization=org_a, url="https://e.com/h"
    ).endpoint
    response = post(alice_client, f"/api/v1/webhooks/endpoints/{endpoint.public_id}/rotate")
    assert response.status_code == HTTPStatus.OK
    assert response.json()["secret"]
    assert no_store(response)


def test_the_webhook_pages_that_show_a_secret_are_no_store(alice_client, org_a):
    created = alice_client.post(
        "/webhooks/new/",
        {"url": "https://e.com/hook", "format": "standard", "events": ["approval.approved"]},
    )
    assert created.status_code == HTTPStatus.OK
    assert b"whsec_" in created.content
    assert no_store(created)
    endpoint = org_a.webhook_endpoints.get()
    rotated = alice_client.post(f"/webhooks/{endpoint.public_id}/rotate/")
    assert b"whsec_" in rotated.content
    assert no_store(rotated)


def test_reading_an_endpoint_is_cacheable_as_before(alice_client, org_a):
    endpoint = webhook_services.endpoint_create(
        actor=None, organization=org_a, url="https://e.com/h"
    ).endpoint
    response = alice_client.get(f"/api/v1/webhooks/endpoints/{endpoint.public_id}")
    assert not no_store(response)
