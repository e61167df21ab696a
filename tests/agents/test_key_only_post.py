"""The per-tool-call endpoints serve POST without DRF's dispatch (agents.http.KeyOnlyPostView):
the key, kind, rate and error answers are the same as everywhere else in the API."""

from __future__ import annotations

import json
from http import HTTPStatus

import pytest
from django.db import connection

from accounts.models import Plan
from agents import services
from audit.models import AuditEntry

pytestmark = pytest.mark.django_db

# One valid body per endpoint, sent with the organisation key (which names the agent).
BODIES = {
    "/api/v1/check": {"action": "kb.search", "agent": "support-bot"},
    "/policy/check": {"tool_name": "kb.search", "kwargs": {}, "agent": "support-bot"},
    "/sdk/check": {"agent_id": "support-bot", "action": "kb.search", "context": {}},
    "/sdk/log": {"agent_id": "support-bot", "action": "kb.search", "status": "success"},
}
PATHS = sorted(BODIES)


def post(client, path, key=None, body=None, **extra):
    headers = {"HTTP_X_API_KEY": key} if key else {}
    data = json.dumps(BODIES[path] if body is None else body)
    return client.post(path, data=data, content_type="application/json", **headers, **extra)


@pytest.mark.parametrize("path", PATHS)
def test_an_org_key_gets_the_endpoints_answer(client, keys, path):
    response = post(client, path, keys.org)
    expected = HTTPStatus.CREATED if path == "/sdk/log" else HTTPStatus.OK
    assert response.status_code == expected, response.content
    assert response["Content-Type"] == "application/json"
    assert AuditEntry.objects.filter(agent__name="support-bot").count() == 1


@pytest.mark.parametrize("path", PATHS)
def test_a_missing_key_is_a_401_with_a_bearer_challenge(client, path):
    response = post(client, path)
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json() == {
        "code": "unauthenticated",
        "detail": "Authentication credentials were not provided.",
        "field": None,
    }
    assert response["WWW-Authenticate"] == 'Bearer realm="warden"'


@pytest.mark.parametrize("path", PATHS)
def test_a_revoked_key_is_a_401_and_records_nothing(client, keys, alice, path):
    services.api_key_revoke(api_key=keys.org_key, actor=alice)
    response = post(client, path, keys.org)
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json()["detail"] == "Unknown, revoked or expired API key."
    assert response["WWW-Authenticate"] == 'Bearer realm="warden"'
    assert not AuditEntry.objects.exclude(kind="config").exists()


@pytest.mark.parametrize("path", PATHS)
def test_an_approver_key_is_a_403(client, keys, path):
    response = post(client, path, keys.approver)
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert response.json() == {
        "code": "forbidden",
        "detail": "This key or account may not do that.",
        "field": None,
    }


@pytest.mark.parametrize("path", PATHS)
def test_the_plan_rate_applies_with_retry_after(client, keys, org_a, path):
    Plan.objects.filter(pk=org_a.plan_id).update(api_requests_per_minute=1)
    assert post(client, path, keys.org).status_code < 300
    response = post(client, path, keys.org)
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert response.json()["code"] == "rate_limited"
    assert 1 <= int(response["Retry-After"]) <= 60


@pytest.mark.parametrize("path", PATHS)
def test_a_database_outage_is_a_503(client, keys, path):
    post(client, path, keys.org)  # warm the key and policy caches

    def refuse(execute, sql, params, many, context):
        from django.db import OperationalError

        raise OperationalError("connection refused")

    with connection.execute_wrapper(refuse):
        response = post(client, path, keys.org)
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.json()["code"] == "unavailable"


def test_a_get_with_a_key_is_a_405_naming_the_method(client, keys):
    response = client.get("/api/v1/check", HTTP_X_API_KEY=keys.live)
    assert response.status_code == HTTPStatus.METHOD_NOT_ALLOWED
    assert response.json()["code"] == "method_not_allowed"


def test_a_get_without_a_key_is_a_401(client):
    response = client.get("/sdk/check")
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response["WWW-Authenticate"] == 'Bearer realm="warden"'


def test_the_check_endpoint_stays_in_the_openapi_schema(client):
    schema = client.get("/api/schema/?format=json").json()
    operation = schema["paths"]["/api/v1/check"]["post"]
    assert operation["operationId"] == "check"
    assert "429" in operation["responses"]
