"""Bad input gets a clear 4xx {code, detail, field}; never a 500, never an allow."""

from __future__ import annotations

import json
from http import HTTPStatus

import pytest
from django.db import connection
from django.test import override_settings

from accounts.models import Plan
from audit.models import AuditEntry

pytestmark = pytest.mark.django_db


def post(client, key, body, url="/api/v1/check", **extra):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(url, data=data, content_type="application/json", HTTP_X_API_KEY=key, **extra)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "action"),
        ({"action": 5}, "action"),
        ({"action": ""}, "action"),
        ({"action": "a" * 201}, "action"),
        ({"action": "x", "arguments": [1, 2]}, "arguments"),
        ({"action": "x", "arguments": "amount=5"}, "arguments"),
        ({"action": "x", "session_id": 7}, "session_id"),
        ({"action": "x", "metadata": "m"}, "metadata"),
        ({"action": "x", "agent": 3}, "agent"),
    ],
)
def test_a_malformed_check_is_a_400_naming_the_field(client, keys, body, field):
    response = post(client, keys.live, body)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json() == {
        "code": "invalid",
        "detail": response.json()["detail"],
        "field": field,
    }
    assert not AuditEntry.objects.filter(kind="check").exists()


@pytest.mark.parametrize("raw", [b"{not json", b"[1,2]", b"", b'"text"', b"NaN"])
def test_a_body_that_is_not_a_json_object_is_a_400(client, keys, raw):
    response = post(client, keys.live, raw)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["code"] in {"invalid", "invalid_json"}


@override_settings(WARDEN_MAX_BODY_BYTES=1024)
def test_a_body_over_the_size_limit_is_a_413(client, keys):
    response = post(client, keys.live, {"action": "x", "arguments": {"blob": "x" * 2000}})
    assert response.status_code == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    assert response.json()["code"] == "too_large"


@override_settings(WARDEN_MAX_BODY_BYTES=1024)
def test_a_declared_content_length_over_the_limit_is_a_413(client, keys):
    response = post(client, keys.live, {"action": "x"}, CONTENT_LENGTH="999999")
    assert response.status_code == HTTPStatus.REQUEST_ENTITY_TOO_LARGE


def test_a_missing_key_is_a_401(client):
    response = client.post("/api/v1/check", data="{}", content_type="application/json")
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json()["code"] == "unauthenticated"


def test_an_unknown_key_is_a_401(client, keys):
    response = post(client, "wdn_live_" + "x" * 40, {"action": "x"})
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json()["code"] == "unauthenticated"


def test_the_plans_request_rate_is_enforced_with_retry_after(client, keys, org_a):
    Plan.objects.filter(pk=org_a.plan_id).update(api_requests_per_minute=3)
    statuses = [post(client, keys.live, {"action": "x"}).status_code for _ in range(3)]
    response = post(client, keys.live, {"action": "x"})
    assert statuses == [200, 200, 200]
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert response.json()["code"] == "rate_limited"
    assert 1 <= int(response["Retry-After"]) <= 60


def test_an_unreachable_database_is_a_503_never_an_allow(client, keys):
    post(client, keys.live, {"action": "x"})  # warm the key and policy caches

    def refuse(execute, sql, params, many, context):
        from django.db import OperationalError

        raise OperationalError("connection refused")

    with connection.execute_wrapper(refuse):
        response = post(client, keys.live, {"action": "x"})
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.json()["code"] == "unavailable"


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("/policy/check", {"kwargs": {}}, "tool_name"),
        ("/policy/check", {"tool_name": "x", "kwargs": [1]}, "kwargs"),
        ("/policy/check", {"tool_name": "x", "args": "a"}, "args"),
        ("/policy/check", {"tool_name": "x", "metadata": {"session_id": 5}}, "metadata.session_id"),
        ("/sdk/check", {"action": "x"}, "agent_id"),
        ("/sdk/check", {"agent_id": "support-bot", "action": "x", "context": [1]}, "context"),
        ("/sdk/log", {"agent_id": "support-bot", "action": "x", "status": "meh"}, "status"),
        (
            "/token-usage",
            {"model": "gpt-4o", "prompt_tokens": -1, "completion_tokens": 1},
            "prompt_tokens",
        ),
        (
            "/api/v1/token-usage",
            {"model": "gpt-4o", "prompt_tokens": "1", "completion_tokens": 1},
            "prompt_tokens",
        ),
    ],
)
def test_compatible_endpoints_reject_bad_fields_with_a_400(client, keys, url, body, field):
    key = keys.org if url.startswith("/sdk") else keys.live
    response = post(client, key, body, url=url)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["field"] == field


@pytest.mark.parametrize("session_id", [[], {}, 0, False, ["s1"], 7])
def test_an_arden_session_id_that_is_not_a_string_is_a_400(client, keys, session_id):
    body = {"tool_name": "kb.search", "kwargs": {}, "metadata": {"session_id": session_id}}
    response = post(client, keys.live, body, url="/policy/check")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["field"] == "metadata.session_id"
    assert not AuditEntry.objects.filter(kind="check").exists()


def test_an_arden_null_session_id_is_no_session(client, keys):
    body = {"tool_name": "kb.search", "kwargs": {}, "metadata": {"session_id": None}}
    response = post(client, keys.live, body, url="/policy/check")
    assert response.status_code == HTTPStatus.OK
    assert AuditEntry.objects.get(kind="check").session_id == ""


@pytest.mark.parametrize("url", ["/api/v1/check", "/policy/check"])
@pytest.mark.parametrize("idempotency_key", ["a\x00b", "line\nbreak", "\x1b[31m"])
def test_an_idempotency_key_with_control_characters_is_a_400(client, keys, url, idempotency_key):
    body = {"action": "kb.search", "tool_name": "kb.search"}
    response = post(client, keys.live, body, url=url, HTTP_IDEMPOTENCY_KEY=idempotency_key)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["field"] == "Idempotency-Key"
    assert not AuditEntry.objects.filter(kind="check").exists()
