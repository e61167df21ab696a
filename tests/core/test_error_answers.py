"""How errors are answered: only a lost database connection is 503 ``unavailable``; a
``DataError`` or ``IntegrityError`` is a bug (a logged JSON 500), never an outage; every
answer under /api/, the SDK endpoints and the health probes is JSON, also for unexpected
errors; HTML pages keep HTML error pages."""

from __future__ import annotations

import json
import logging
from http import HTTPStatus

import pytest
from django.db import (
    DataError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
    connection,
)
from django.test import Client

from agents import services
from tests.agents.conftest import keys_for
from tests.approvals.conftest import request_create

pytestmark = pytest.mark.django_db

SERVER_ERROR = {"code": "error", "detail": "Internal server error.", "field": None}


@pytest.fixture
def client() -> Client:
    """A client that gets Django's answer to an unexpected error instead of the exception."""
    return Client(raise_request_exception=False)


@pytest.fixture
def agent_key(org_a, alice) -> str:
    agent = services.agent_create(organization=org_a, actor=alice, name="support-bot")
    return keys_for(agent, alice).live


def check(client: Client, key: str, path: str = "/api/v1/check", body=None):
    data = json.dumps(body or {"action": "kb.search"})
    return client.post(path, data=data, content_type="application/json", HTTP_X_API_KEY=key)


def failing_with(error: Exception):
    def execute(execute, sql, params, many, context):
        raise error

    return execute


@pytest.mark.parametrize(
    "error",
    [DataError("invalid input syntax"), IntegrityError("duplicate key"), ProgrammingError("x")],
    ids=["DataError", "IntegrityError", "ProgrammingError"],
)
@pytest.mark.parametrize("path", ["/api/v1/check", "/policy/check"])
def test_a_database_error_that_is_not_a_lost_connection_is_a_logged_json_500(
    client, agent_key, caplog, error, path
):
    body = {"tool_name": "kb.search"} if path == "/policy/check" else None
    check(client, agent_key, path, body)  # warm the key and policy caches
    with caplog.at_level(logging.ERROR), connection.execute_wrapper(failing_with(error)):
        response = check(client, agent_key, path, body)
    assert response.status_code == HTTPStatus.INTERNAL_SERVER_ERROR
    assert response.json() == SERVER_ERROR
    assert type(error).__name__ in caplog.text  # logged with its traceback


@pytest.mark.parametrize(
    "error",
    [OperationalError("connection refused"), InterfaceError("connection already closed")],
    ids=["OperationalError", "InterfaceError"],
)
def test_a_lost_database_connection_is_a_503(client, agent_key, error):
    check(client, agent_key)
    with connection.execute_wrapper(failing_with(error)):
        response = check(client, agent_key)
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.json()["code"] == "unavailable"


def test_a_data_error_in_a_drf_view_is_a_json_500(client, org_a, alice, caplog):
    agent = services.agent_create(organization=org_a, actor=alice, name="support-bot")
    pending = request_create(agent)
    approver = keys_for(agent, alice).approver
    with connection.execute_wrapper(failing_with(DataError("value too long"))):
        response = client.post(
            f"/approve/{pending.action_id}",
            data="{}",
            content_type="application/json",
            HTTP_X_API_KEY=approver,
        )
    assert response.status_code == HTTPStatus.INTERNAL_SERVER_ERROR
    assert response.json() == SERVER_ERROR


def explode(*args, **kwargs):
    raise RuntimeError("a bug")


@pytest.mark.parametrize(
    ("target", "method", "path", "who"),
    [
        ("agents.checks.check_perform", "post", "/api/v1/check", "agent"),
        ("agents.checks.check_perform", "post", "/policy/check", "agent"),
        ("agents.checks.check_perform", "post", "/sdk/check", "org"),
        ("agents.checks.sdk_log_record", "post", "/sdk/log", "org"),
        ("agents.services.token_usage_record", "post", "/token-usage", "agent"),
        ("audit.selectors.action_detail", "get", "/status/{action}", "agent"),
        ("agents.api.action_detail", "get", "/api/v1/actions/{action}", "agent"),
        ("approvals.api.approval_decide", "post", "/approve/{action}", "approver"),
        ("approvals.api.approval_decide", "post", "/deny/{action}", "approver"),
        ("agents.selectors.agent_list", "get", "/api/v1/agents", "alice"),
        ("webhooks.selectors.endpoint_list", "get", "/api/v1/webhooks/endpoints", "alice"),
        ("wardenproject.health._check_broker", "get", "/readyz", None),
        ("wardenproject.health.JsonResponse", "get", "/healthz", None),
    ],
)
def test_an_unexpected_error_is_a_json_500(
    client, monkeypatch, org_a, alice, target, method, path, who
):
    agent = services.agent_create(organization=org_a, actor=alice, name="support-bot")
    keys = keys_for(agent, alice)
    pending = request_create(agent, environment="live")
    headers = {}
    if who == "alice":
        client.force_login(alice)
    elif who is not None:
        key = {"agent": keys.live, "org": keys.org, "approver": keys.approver}[who]
        headers["HTTP_X_API_KEY"] = key
    body = {
        "action": "kb.search",
        "tool_name": "kb.search",
        "agent_id": "support-bot",
        "status": "success",
        "model": "gpt-4o",
        "prompt_tokens": 1,
        "completion_tokens": 1,
    }
    monkeypatch.setattr(target, explode)
    url = path.format(action=pending.action_id)
    if method == "post":
        response = client.post(url, json.dumps(body), content_type="application/json", **headers)
    else:
        response = client.get(url, **headers)
    assert response.status_code == HTTPStatus.INTERNAL_SERVER_ERROR
    assert response["Content-Type"] == "application/json"
    assert response.json() == SERVER_ERROR


def test_an_unexpected_error_on_a_page_keeps_the_html_500(client, monkeypatch, org_a, alice):
    client.force_login(alice)
    monkeypatch.setattr("accounts.selectors.organization_overview", explode)
    response = client.get("/")
    assert response.status_code == HTTPStatus.INTERNAL_SERVER_ERROR
    assert response["Content-Type"].startswith("text/html")


def test_an_oversized_form_post_to_a_page_keeps_django_s_html_answer(
    client, org_a, alice, settings
):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    client.force_login(alice)
    response = client.post(
        "/profile/", data="x" * 4096, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response["Content-Type"].startswith("text/html")
