"""Redis is not on the path of a decision: with Redis refusing every connection (cache,
broker, wake-ups), checks, decisions and status reads answer as usual, in JSON.

tests/core/test_redis_outage_live.py kills a real Redis under the real web server and worker."""

from __future__ import annotations

import json
from http import HTTPStatus

import pytest

from accounts.models import Plan
from approvals.models import ApprovalRequest
from audit.models import AuditEntry
from webhooks.models import Delivery
from webhooks.services import EVENT_TYPES, endpoint_create

pytestmark = [pytest.mark.django_db, pytest.mark.redis]

HELD = {"action": "stripe.refund", "arguments": {"amount": 150}}
ALLOWED = {"action": "kb.search", "arguments": {}}


def check(client, key: str, body: dict, **headers: str):
    return client.post(
        "/api/v1/check",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_X_API_KEY=key,
        **headers,
    )


@pytest.fixture
def rate_limited(org_a):
    """A plan with a request rate, so every check counts in the rate limiter."""
    Plan.objects.filter(pk=org_a.plan_id).update(api_requests_per_minute=1000)


def test_checks_answer_while_redis_is_down(
    client, keys, refund_rules, rate_limited, redis_down, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as queued:  # the approver email
        allowed = check(client, keys.live, ALLOWED)
        held = check(client, keys.live, HELD)
    assert queued
    assert (allowed.status_code, held.status_code) == (HTTPStatus.OK, HTTPStatus.OK)
    assert allowed.json()["decision"] == "allow"
    assert held.json()["decision"] == "requires_approval"
    assert ApprovalRequest.objects.filter(action_id=held.json()["action_id"]).exists()


def test_an_idempotent_replay_comes_from_the_database_while_redis_is_down(
    client, keys, refund_rules, redis_down
):
    first = check(client, keys.live, HELD, HTTP_IDEMPOTENCY_KEY="k1")
    second = check(client, keys.live, HELD, HTTP_IDEMPOTENCY_KEY="k1")
    conflict = check(client, keys.live, ALLOWED, HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == second.status_code == HTTPStatus.OK
    assert second.json() == first.json()
    assert conflict.status_code == HTTPStatus.CONFLICT
    assert conflict.json()["code"] == "idempotency_mismatch"
    assert AuditEntry.objects.filter(kind="check").count() == 1


def test_the_rate_limit_counts_in_the_process_while_redis_is_down(client, keys, org_a, redis_down):
    Plan.objects.filter(pk=org_a.plan_id).update(api_requests_per_minute=2)
    statuses = [check(client, keys.live, ALLOWED).status_code for _ in range(3)]
    assert statuses == [HTTPStatus.OK, HTTPStatus.OK, HTTPStatus.TOO_MANY_REQUESTS]
    limited = check(client, keys.live, ALLOWED)
    assert limited.json()["code"] == "rate_limited"
    assert 1 <= int(limited["Retry-After"]) <= 60


def test_a_decision_and_the_status_reads_work_while_redis_is_down(
    client,
    keys,
    refund_rules,
    rate_limited,
    redis_down,
    org_a,
    django_capture_on_commit_callbacks,
):
    # The decision's event queues a delivery.
    endpoint_create(
        actor=None,
        organization=org_a,
        url="http://127.0.0.1:9/hook",
        fmt="standard",
        events=EVENT_TYPES,
    )
    action_id = check(client, keys.live, HELD).json()["action_id"]
    with django_capture_on_commit_callbacks(execute=True) as queued:  # wake-ups, delivery
        decided = client.post(
            f"/api/v1/actions/{action_id}/approve",
            data="{}",
            content_type="application/json",
            HTTP_X_API_KEY=keys.approver,
        )
    assert queued
    assert decided.status_code == HTTPStatus.OK, decided.content
    assert Delivery.objects.filter(event__action_id=action_id).exists()
    status = client.get(f"/api/v1/actions/{action_id}", HTTP_X_API_KEY=keys.live)
    waited = client.get(f"/api/v1/actions/{action_id}?wait=5", HTTP_X_API_KEY=keys.live)
    arden = client.get(f"/status/{action_id}", HTTP_X_API_KEY=keys.live)
    assert status.json()["status"] == waited.json()["status"] == "approved"
    assert arden.status_code == HTTPStatus.OK
    assert arden["Content-Type"] == "application/json"
