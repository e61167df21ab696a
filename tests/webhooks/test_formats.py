"""Each format's signature is accepted by an independent verifier."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import ardenpy
import pytest
from standardwebhooks.webhooks import Webhook

from tests.webhooks.conftest import approval_data
from webhooks.formats import build_request
from webhooks.services import secret_generate


@pytest.fixture
def now() -> int:
    """The signing time: the test's now (the verifier refuses timestamps far from its now)."""
    return int(time.time())


@dataclass
class FakeEvent:
    event_type: str = "approval.approved"
    public_id: str = "evt_abc123"
    data: dict = field(default_factory=approval_data)
    created_at: datetime = datetime(2026, 11, 21, 10, 5, tzinfo=UTC)


def test_standard_delivery_verifies_with_the_standardwebhooks_package(now):
    secret = secret_generate("standard")
    headers, body = build_request(FakeEvent(), "standard", [secret], now)
    payload = Webhook(secret).verify(body, headers)
    assert payload["id"] == "evt_abc123"
    assert payload["type"] == "approval.approved"
    assert payload["data"]["action_id"] == "act_1"
    assert headers["webhook-id"] == "evt_abc123"


def test_standard_secret_is_whsec_and_32_random_bytes():
    import base64

    secret = secret_generate("standard")
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32


def test_standard_delivery_during_rotation_verifies_with_either_secret(now):
    new, old = secret_generate("standard"), secret_generate("standard")
    headers, body = build_request(FakeEvent(), "standard", [new, old], now)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(new).verify(body, headers)
    Webhook(old).verify(body, headers)


def test_arden_delivery_verifies_with_ardenpy(now):
    secret = secret_generate("arden")
    headers, body = build_request(FakeEvent(), "arden", [secret], now)
    assert ardenpy.verify_webhook_signature(
        body, headers["X-Arden-Timestamp"], headers["X-Arden-Signature"], secret
    )
    assert headers["X-Arden-Event-Id"] == "evt_abc123"


def test_arden_approval_reaches_the_on_approval_callback_of_handle_webhook(now):
    from ardenpy import guard

    secret = secret_generate("arden")
    seen = []
    guard._webhook_callbacks["act_1"] = {"on_approval": seen.append, "on_denial": None}
    headers, body = build_request(FakeEvent(), "arden", [secret], now)
    ardenpy.handle_webhook(body, headers, signing_key=secret)
    assert seen[0].action_id == "act_1"
    assert seen[0].tool_name == "stripe.refund"
    assert seen[0].context == {"amount": 120, "currency": "eur"}
    assert seen[0].approved_by == "alice@example.com"


@pytest.mark.parametrize(
    ("event_type", "arden_type"),
    [("approval.rejected", "action_denied"), ("approval.expired", "action_denied")],
)
def test_arden_rejection_and_expiry_are_action_denied(now, event_type, arden_type):
    _headers, body = build_request(FakeEvent(event_type=event_type), "arden", ["k"], now)
    payload = json.loads(body)
    assert payload["event_type"] == arden_type
    assert payload["event_id"] == "evt_abc123"


def test_arden_expiry_notes_say_it_expired(now):
    _, body = build_request(FakeEvent(event_type="approval.expired"), "arden", ["k"], now)
    assert "Expired" in json.loads(body)["approval"]["notes"]


def test_arden_signature_is_refused_by_ardenpy_with_another_secret(now):
    headers, body = build_request(FakeEvent(), "arden", ["right"], now)
    with pytest.raises(ValueError, match="verification failed"):
        ardenpy.handle_webhook(body, headers, signing_key="wrong")


def agentwarden_verify(body: bytes, headers: dict, secret: str) -> bool:
    ts = headers["X-AgentWarden-Timestamp"]
    expected = (
        "sha256=" + hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    )
    return hmac.compare_digest(expected, headers["X-AgentWarden-Signature"])


def test_agentwarden_delivery_carries_a_verifiable_hex_signature(now):
    secret = secret_generate("agentwarden")
    headers, body = build_request(FakeEvent(), "agentwarden", [secret], now)
    assert agentwarden_verify(body, headers, secret)
    assert headers["X-AgentWarden-Event-Id"] == "evt_abc123"


def test_agentwarden_decision_body_matches_the_compat_shape(now):
    _, body = build_request(FakeEvent(), "agentwarden", ["k"], now)
    payload = json.loads(body)
    assert set(payload) == {"event", "timestamp", "data", "id"}
    assert payload["event"] == "approval.approved"
    assert payload["data"] == {
        "approval_id": "act_1",
        "agent_id": "support-bot",
        "action": "stripe.refund",
        "status": "approved",
        "context": {"amount": 120, "currency": "eur"},
        "resolved_by": "alice@example.com",
        "resolved_at": "2026-11-21T10:05:00+00:00",
    }


def test_agentwarden_pending_body_matches_the_compat_shape(now):
    event = FakeEvent(event_type="log.pending_approval")
    _, body = build_request(event, "agentwarden", ["k"], now)
    data = json.loads(body)["data"]
    assert data["status"] == "pending_approval"
    assert set(data) == {"id", "agent_id", "action", "status", "context", "created_at"}


def test_arden_and_agentwarden_sign_with_the_newest_secret_only(now):
    headers, body = build_request(FakeEvent(), "agentwarden", ["new", "old"], now)
    assert agentwarden_verify(body, headers, "new")
    assert not agentwarden_verify(body, headers, "old")


def test_agentwarden_escalated_body_is_still_pending_with_its_new_deadline_and_approvers(now):
    data = {
        **approval_data(status="pending"),
        "expires_at": "2026-11-21T11:00:00+00:00",
        "approvers": ["role:admin"],
    }
    event = FakeEvent(event_type="approval.escalated", data=data)
    _, body = build_request(event, "agentwarden", ["k"], now)
    payload = json.loads(body)
    assert payload["event"] == "approval.escalated"
    assert payload["data"]["status"] == "pending_approval"
    assert payload["data"]["expires_at"] == "2026-11-21T11:00:00+00:00"
    assert payload["data"]["approvers"] == ["role:admin"]


def test_an_arden_endpoint_may_not_subscribe_to_escalations():
    from webhooks.formats import format_sends, subscription_refusal

    assert subscription_refusal("arden", ["approval.escalated"]) is not None
    assert not format_sends("arden", "approval.escalated")
