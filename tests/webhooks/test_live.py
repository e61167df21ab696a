"""End to end with a real Celery worker process, real Redis and a real HTTP receiver."""

from __future__ import annotations

import hashlib
import hmac
import json

import ardenpy
import pytest
from django.db import transaction
from standardwebhooks.webhooks import Webhook

from tests.live import Answer, broker_switched, wait_until
from tests.webhooks.conftest import approval_data
from webhooks import services
from webhooks.models import Delivery

pytestmark = [pytest.mark.postgres, pytest.mark.live]


@pytest.fixture
def celery_worker_settings() -> str:
    return "tests.webhooks.worker_settings"


@pytest.fixture
def celery_worker_env(request) -> dict[str, str]:
    """A test that asks for ``private_redis`` gets a worker whose broker is that server."""
    if "private_redis" in request.fixturenames:
        return {"REDIS_URL": request.getfixturevalue("private_redis").url}
    return {}


def emit(org, event_type="approval.approved", action_id="act_1"):
    with transaction.atomic():
        return services.event_emit(
            organization=org, event_type=event_type, data=approval_data(action_id)
        )


def all_succeeded(count: int) -> bool:
    return Delivery.objects.filter(status=Delivery.Status.SUCCEEDED).count() == count


@pytest.mark.redis
def test_standard_delivery_through_the_worker_verifies_with_standardwebhooks(
    celery_worker, org_a, make_endpoint, webhook_receiver
):
    created = make_endpoint(webhook_receiver.url())
    event = emit(org_a)
    (request,) = webhook_receiver.wait_for(1)
    payload = Webhook(created.secret).verify(request.body, request.headers)
    assert payload["id"] == event.public_id


@pytest.mark.redis
def test_arden_delivery_through_the_worker_is_accepted_by_ardenpy(
    celery_worker, org_a, make_endpoint, webhook_receiver
):
    from ardenpy import guard

    created = make_endpoint(webhook_receiver.url(), fmt="arden")
    approved = []
    guard._webhook_callbacks["act_live"] = {"on_approval": approved.append, "on_denial": None}
    emit(org_a, action_id="act_live")
    (request,) = webhook_receiver.wait_for(1)
    assert ardenpy.verify_webhook_signature(
        request.body,
        request.headers["X-Arden-Timestamp"],
        request.headers["X-Arden-Signature"],
        created.secret,
    )
    ardenpy.handle_webhook(request.body, request.headers, signing_key=created.secret)
    assert approved[0].action_id == "act_live"


@pytest.mark.redis
def test_agentwarden_delivery_through_the_worker_carries_a_valid_signature(
    celery_worker, org_a, make_endpoint, webhook_receiver
):
    created = make_endpoint(webhook_receiver.url(), fmt="agentwarden")
    event = emit(org_a)
    (request,) = webhook_receiver.wait_for(1)
    ts = request.headers["X-AgentWarden-Timestamp"]
    signed = f"{ts}.".encode() + request.body
    expected = "sha256=" + hmac.new(created.secret.encode(), signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, request.headers["X-AgentWarden-Signature"])
    assert request.headers["X-AgentWarden-Event-Id"] == event.public_id
    assert json.loads(request.body)["event"] == "approval.approved"


@pytest.mark.redis
def test_receiver_failing_twice_gets_the_event_on_the_third_attempt(
    celery_worker, org_a, make_endpoint, webhook_receiver
):
    make_endpoint(webhook_receiver.url())
    webhook_receiver.fail_times(2)
    event = emit(org_a)
    requests = webhook_receiver.wait_for(3)
    wait_until(lambda: all_succeeded(1), what="the delivery to succeed")
    assert {r.headers["webhook-id"] for r in requests} == {event.public_id}
    assert Delivery.objects.get().attempt_count == 3


@pytest.mark.redis
def test_slow_endpoint_does_not_hold_back_another(
    celery_worker, org_a, make_endpoint, webhook_receiver
):
    make_endpoint(webhook_receiver.url("/slow"))
    make_endpoint(webhook_receiver.url("/fast"))
    webhook_receiver.always(Answer(sleep=3), path="/slow")
    for n in range(6):
        emit(org_a, action_id=f"act_{n}")
    webhook_receiver.wait_for(6, path="/fast", timeout=20)
    assert len(webhook_receiver.received("/slow")) < 6


@pytest.mark.redis
def test_lost_wake_up_is_delivered_by_the_sweeper(
    celery_worker, org_a, make_endpoint, webhook_receiver
):
    make_endpoint(webhook_receiver.url())
    with broker_switched("redis://127.0.0.1:1/0"):  # nothing listens: the wake-up is lost
        event = emit(org_a)
    (request,) = webhook_receiver.wait_for(1)
    assert request.headers["webhook-id"] == event.public_id


@pytest.mark.redis
def test_sigkilled_worker_and_redis_restart_lose_no_event(
    private_redis, celery_worker, org_a, make_endpoint, webhook_receiver
):
    make_endpoint(webhook_receiver.url())
    webhook_receiver.always(Answer(sleep=1.5))
    with broker_switched(private_redis.url):
        events = [emit(org_a, action_id=f"act_{n}") for n in range(20)]
        webhook_receiver.wait_for(3, timeout=30)
        celery_worker.kill()
        received = {r.headers["webhook-id"] for r in webhook_receiver.received()}
        unfinished = Delivery.objects.exclude(status=Delivery.Status.SUCCEEDED)
        in_flight = received & set(unfinished.values_list("event__public_id", flat=True))
        private_redis.kill()  # queued wake-ups are lost with it
        events += [emit(org_a, action_id=f"act_late_{n}") for n in range(10)]  # broker down
        private_redis.start()
        webhook_receiver.always(Answer())
        celery_worker.start()
        wait_until(lambda: all_succeeded(30), timeout=120, what="all 30 deliveries")
    ids = [r.headers["webhook-id"] for r in webhook_receiver.received()]
    assert set(ids) == {e.public_id for e in events}
    duplicated = {i for i in ids if ids.count(i) > 1}
    assert duplicated <= in_flight
