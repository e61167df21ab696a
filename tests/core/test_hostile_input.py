"""Hostile input through the HTTP API: every JSON body the API accepts goes through the one
strict reader, so each malformed body gets the same 4xx naming the same field on every
endpoint (never a 5xx); oversized bodies are a JSON 413 everywhere; a NUL in a URL is a
JSON 404 or 400, not a database error.

Run on PostgreSQL too: it is the database that refuses NUL characters and lone surrogates,
which SQLite stores without complaint.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus

import pytest
from django.test import Client

from accounts.models import Plan
from agents import services
from approvals.models import ApprovalRequest
from audit.models import AuditEntry
from tests.agents.conftest import keys_for
from tests.approvals.conftest import request_create
from wardenproject.strictjson import MAX_DEPTH

pytestmark = pytest.mark.django_db


@dataclass
class World:
    agent_key: str
    org_key: str
    approver_key: str
    agent_ref: str
    action_id: str
    pending: ApprovalRequest


@pytest.fixture
def world(org_a, alice) -> World:
    Plan.objects.filter(pk=org_a.plan_id).update(api_requests_per_minute=1_000_000)
    agent = services.agent_create(organization=org_a, actor=alice, name="support-bot")
    keys = keys_for(agent, alice)
    pending = request_create(agent)
    return World(keys.live, keys.org, keys.approver, agent.public_id, pending.action_id, pending)


# (method, path, who): who is the key kind sending it, or "alice" (an owner's session).
ENDPOINTS = [
    ("post", "/api/v1/check", "agent"),
    ("post", "/policy/check", "agent"),
    ("post", "/sdk/check", "org"),
    ("post", "/sdk/log", "org"),
    ("post", "/token-usage", "agent"),
    ("post", "/api/v1/token-usage", "agent"),
    ("post", "/api/v1/actions/{action}/outcome", "agent"),
    ("post", "/api/v1/actions/{action}/claim", "agent"),
    ("post", "/api/v1/actions/{action}/cancel", "agent"),
    ("post", "/approve/{action}", "approver"),
    ("post", "/deny/{action}", "approver"),
    ("post", "/api/v1/actions/{action}/approve", "approver"),
    ("post", "/api/v1/actions/{action}/deny", "approver"),
    ("post", "/api/v1/agents", "alice"),
    ("patch", "/api/v1/agents/{agent}", "alice"),
    ("post", "/api/v1/agents/{agent}/simulate", "alice"),
    ("post", "/api/v1/agents/{agent}/rules", "alice"),
    ("post", "/api/v1/rules", "alice"),
    ("post", "/api/v1/keys", "alice"),
    ("put", "/api/v1/agents/{agent}/policy", "alice"),
    ("post", "/api/v1/agents/{agent}/policy/backtest", "alice"),
    ("post", "/api/v1/webhooks/endpoints", "alice"),
]
ENDPOINT_IDS = [f"{method.upper()} {path}" for method, path, _who in ENDPOINTS]


def send(client: Client, world: World, endpoint: tuple[str, str, str], raw: bytes, alice=None):
    method, path, who = endpoint
    url = path.format(action=world.action_id, agent=world.agent_ref)
    headers = {}
    if who == "alice":
        client.force_login(alice)
    else:
        key = {"agent": world.agent_key, "org": world.org_key, "approver": world.approver_key}
        headers["HTTP_X_API_KEY"] = key[who]
    if method == "get":
        return client.get(url, **headers)
    return getattr(client, method)(url, data=raw, content_type="application/json", **headers)


DEEP = b'{"x": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"

# (raw body, code, field): the same answer from every endpoint.
MALFORMED = {
    "NUL in a value": (
        b'{"x": {"items": [0, 1, {"note": "a\\u0000b"}]}}',
        "invalid",
        "x.items[2].note",
    ),
    "NUL in a key": (b'{"x": {"items": [0, 1, {"no\\u0000te": 1}]}}', "invalid", "x.items[2]"),
    "NUL in a top-level key": (b'{"\\u0000": 1}', "invalid", None),
    "lone high surrogate": (b'{"x": "\\ud800"}', "invalid", "x"),
    "lone low surrogate in a key": (b'{"x": {"\\udc00": 1}}', "invalid", "x"),
    "raw invalid UTF-8": (b'{"x": ["ok", "caf\xe9"]}', "invalid_json", "x[1]"),
    "encoded surrogate": (b'{"x": "\xed\xa0\x80"}', "invalid_json", "x"),
    "1e999": (b'{"x": {"amount": 1e999}}', "invalid", "x.amount"),
    "-1e999": (b'{"x": [-1e999]}', "invalid", "x[0]"),
    "NaN": (b'{"x": NaN}', "invalid_json", "x"),
    "10,000 deep": (DEEP, "invalid", "x" + "[0]" * (MAX_DEPTH - 1)),
}


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=ENDPOINT_IDS)
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_body_is_the_same_400_naming_the_field_on_every_endpoint(
    client, world, alice, endpoint, case
):
    raw, code, field = MALFORMED[case]
    response = send(client, world, endpoint, raw, alice)
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content[:300]
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert (body["code"], body["field"]) == (code, field), body
    world.pending.refresh_from_db()
    assert world.pending.status == ApprovalRequest.Status.PENDING
    assert not (
        AuditEntry.objects.exclude(kind="config").exclude(pk=world.pending.check_entry_id).exists()
    )


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=ENDPOINT_IDS)
@pytest.mark.parametrize(
    "size",
    # Over every endpoint's own limit (WARDEN_MAX_BODY_BYTES, 1 MiB for policy documents)
    # but under Django's DATA_UPLOAD_MAX_MEMORY_SIZE; then over that one too.
    [2 * 1024 * 1024, 3 * 1024 * 1024],
    ids=["2MB", "3MB"],
)
def test_an_oversized_body_is_a_json_413_on_every_endpoint(client, world, alice, endpoint, size):
    raw = b'{"x": "' + b"a" * size + b'"}'
    response = send(client, world, endpoint, raw, alice)
    assert response.status_code == HTTPStatus.REQUEST_ENTITY_TOO_LARGE, response.content[:300]
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "too_large"


def test_a_10mb_body_to_approve_is_a_json_413(client, world):
    raw = b'{"message": "' + b"a" * (10 * 1024 * 1024) + b'"}'
    response = send(client, world, ("post", "/approve/{action}", "approver"), raw)
    assert response.status_code == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    assert response.json()["code"] == "too_large"


@pytest.mark.parametrize(
    ("method", "path", "who"),
    [
        ("get", "/status/act_%00x", "agent"),
        ("get", "/api/v1/actions/act_%00x", "agent"),
        ("post", "/api/v1/actions/act_%00x/outcome", "agent"),
        ("post", "/approve/act_%00x", "approver"),
        ("post", "/deny/%00", "approver"),
        ("post", "/api/v1/actions/act_%00x/approve", "approver"),
        ("get", "/api/v1/agents/support%00bot", "alice"),
        ("get", "/api/v1/agents/support%00bot/rules", "alice"),
        ("get", "/api/v1/rules/rul_%00", "alice"),
        ("get", "/api/v1/keys/key_%00", "alice"),
        ("get", "/api/v1/webhooks/endpoints/whe_%00", "alice"),
        ("get", "/api/v1/webhooks/deliveries/%00", "alice"),
    ],
)
def test_a_nul_in_a_url_id_is_a_json_404(client, world, alice, method, path, who):
    response = send(client, world, (method, path, who), b"{}", alice)
    assert response.status_code == HTTPStatus.NOT_FOUND, response.content[:300]
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/api/v1/keys?agent=support%00bot", "agent"),
        ("/api/v1/token-usage/summary?agent=%00", "agent"),
        ("/api/v1/audit?agent=x%00", "agent"),
        ("/api/v1/approvals?agent=%00", "agent"),
        ("/api/v1/webhooks/endpoints?x%00=1", None),  # a bad name: no field to name
    ],
)
def test_a_nul_in_a_query_parameter_is_a_json_400_naming_it(client, world, alice, path, parameter):
    client.force_login(alice)
    response = client.get(path)
    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content[:300]
    assert response.json()["code"] == "invalid"
    assert response.json()["field"] == parameter


def test_a_nul_in_the_idempotency_key_is_a_400_naming_the_header(client, world):
    response = client.post(
        "/api/v1/check",
        data=b'{"action": "kb.search"}',
        content_type="application/json",
        HTTP_X_API_KEY=world.agent_key,
        HTTP_IDEMPOTENCY_KEY="retry\x00-1",
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["field"] == "Idempotency-Key"


@pytest.mark.parametrize(
    "path", ["/api/v1/nothing-here", "/api/v1/actions", "/sdk/nothing", "/status/"]
)
def test_an_unknown_api_path_is_a_json_404(client, path):
    response = client.get(path)
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert response.json() == {"code": "not_found", "detail": "Not found.", "field": None}


def test_an_unknown_page_keeps_the_html_404(client):
    response = client.get("/no-such-page/")
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert response["Content-Type"].startswith("text/html")
