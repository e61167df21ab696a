"""Pure builders of signed webhook requests, one per endpoint format.

``build_request(event, fmt, secrets, timestamp)`` returns ``(headers, body_bytes)``. No ORM,
no I/O: ``event`` only needs ``public_id``, ``event_type``, ``data`` and ``created_at``.
``secrets`` is the current secret first, then any previous one still in its grace period.

Signatures:
- standard: Standard Webhooks, ``webhook-signature: v1,<b64> [v1,<b64> ...]``, one per secret.
- arden / agentwarden: one ``sha256=<hex>`` value (the SDKs compare it whole), made with the
  current (newest) secret only; during a rotation the receiver must switch to the new secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime
from typing import Any, Protocol

STANDARD = "standard"
ARDEN = "arden"
AGENTWARDEN = "agentwarden"

# ardenpy's handle_webhook knows one event type, action_approved, and treats every other one
# as a denial: it pops the action's callbacks and calls on_denial. So an Arden endpoint carries
# decisions only (see subscription_refusal): a pending notice would deny a call that is merely
# waiting, and the later approval would find no callback.
ARDEN_DECISIONS = {
    "approval.approved": "action_approved",
    "approval.rejected": "action_denied",
    "approval.expired": "action_denied",
}
# Besides decisions, only the test ping a member sends on request: its action id is made up
# (act_test_...), so handle_webhook finds no callback for it and does nothing.
ARDEN_EVENT_TYPES = {**ARDEN_DECISIONS, "webhook.test": "webhook_test"}


def subscription_refusal(fmt: str, event_types: list[str] | tuple[str, ...]) -> str | None:
    """Why an endpoint of format ``fmt`` may not subscribe to ``event_types`` (None: it may)."""
    refused = [e for e in event_types if fmt == ARDEN and e not in ARDEN_DECISIONS]
    if not refused:
        return None
    return (
        f"Arden-format endpoints carry decision events only ({', '.join(ARDEN_DECISIONS)}): "
        "ardenpy's handle_webhook treats any other event as a denial. "
        f"Leave {', '.join(refused)} off, or use the standard or AgentWarden format for it."
    )


def format_sends(fmt: str, event_type: str) -> bool:
    """Whether a delivery of ``event_type`` may go to an endpoint of format ``fmt`` at all."""
    return fmt != ARDEN or event_type in ARDEN_EVENT_TYPES


class EventLike(Protocol):
    public_id: str
    event_type: str
    data: dict[str, Any]
    created_at: datetime


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def standard_secret_key(secret: str) -> bytes:
    raw = secret.removeprefix("whsec_")
    return base64.b64decode(raw)


def standard_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(standard_secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def hex_signature(secret: str, timestamp: int, body: bytes) -> str:
    signed = f"{timestamp}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def standard_body(event: EventLike) -> dict[str, Any]:
    return {
        "id": event.public_id,
        "type": event.event_type,
        "timestamp": _iso(event.created_at),
        "data": event.data,
    }


def arden_body(event: EventLike) -> dict[str, Any]:
    if event.event_type not in ARDEN_EVENT_TYPES:
        raise ValueError(f"Arden endpoints are never sent {event.event_type} events")
    data = event.data
    notes = data.get("notes")
    if event.event_type == "approval.expired":
        notes = "Expired without a decision." + (f" {notes}" if notes else "")
    return {
        "event_type": ARDEN_EVENT_TYPES[event.event_type],
        "event_id": event.public_id,
        "action": {
            "action_id": data.get("action_id"),
            "tool_name": data.get("action"),
            "context": data.get("arguments") or {},
        },
        "approval": {"admin_user_id": data.get("decided_by"), "notes": notes},
    }


def agentwarden_body(event: EventLike) -> dict[str, Any]:
    data = event.data
    # AgentWarden's agent_id is the customer's own agent identifier: Warden's agent name.
    agent = data.get("agent_name") or data.get("agent_id")
    if event.event_type in ("log.pending_approval", "approval.escalated"):
        # An escalated request is still pending, with new approvers and a later deadline.
        payload = {
            "id": data.get("action_id"),
            "agent_id": agent,
            "action": data.get("action"),
            "status": "pending_approval",
            "context": data.get("arguments") or {},
            "created_at": data.get("requested_at"),
        }
        if event.event_type == "approval.escalated":
            payload["expires_at"] = data.get("expires_at")
            payload["approvers"] = data.get("approvers") or []
    elif event.event_type == "webhook.test":
        payload = dict(data)
    else:
        status = {
            "approval.approved": "approved",
            "approval.rejected": "rejected",
            "approval.expired": "expired",
        }[event.event_type]
        payload = {
            "approval_id": data.get("action_id"),
            "agent_id": agent,
            "action": data.get("action"),
            "status": status,
            "context": data.get("arguments") or {},
            "resolved_by": data.get("decided_by"),
            "resolved_at": data.get("decided_at"),
        }
    return {
        "event": event.event_type,
        "timestamp": _iso(event.created_at),
        "data": payload,
        "id": event.public_id,
    }


def build_request(
    event: EventLike, fmt: str, secrets: list[str], timestamp: int
) -> tuple[dict[str, str], bytes]:
    if not secrets:
        raise ValueError("at least one signing secret is required")
    headers = {"Content-Type": "application/json", "User-Agent": "Warden-Webhooks/1"}
    if fmt == STANDARD:
        body = dumps(standard_body(event))
        headers["webhook-id"] = event.public_id
        headers["webhook-timestamp"] = str(timestamp)
        headers["webhook-signature"] = " ".join(
            standard_signature(s, event.public_id, timestamp, body) for s in secrets
        )
    elif fmt == ARDEN:
        body = dumps(arden_body(event))
        headers["X-Arden-Event-Id"] = event.public_id
        headers["X-Arden-Timestamp"] = str(timestamp)
        headers["X-Arden-Signature"] = hex_signature(secrets[0], timestamp, body)
    elif fmt == AGENTWARDEN:
        body = dumps(agentwarden_body(event))
        headers["X-AgentWarden-Event-Id"] = event.public_id
        headers["X-AgentWarden-Timestamp"] = str(timestamp)
        headers["X-AgentWarden-Signature"] = hex_signature(secrets[0], timestamp, body)
    else:
        raise ValueError(f"unknown webhook format {fmt!r}")
    return headers, body
