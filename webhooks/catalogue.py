"""The event catalogue: every event type, what each endpoint format sends for it, and how to
verify each format's signature (Python and Node).

Pure (no ORM, no I/O): the samples are built by ``webhooks.formats.build_request`` itself, with
a made-up secret and a fixed timestamp, so the page shows exactly the bytes Warden would send.
The snippets are run against those builders by ``tests/webhooks/test_catalogue.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from webhooks import formats

# 2026-01-01T00:00:00Z: a fixed instant, so the samples (and their signatures) never change.
SAMPLE_TIMESTAMP = 1767225600
SAMPLE_AT = datetime.fromtimestamp(SAMPLE_TIMESTAMP, tz=UTC)
SAMPLE_SECRETS = {
    formats.STANDARD: "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    formats.ARDEN: "example-arden-signing-key",
    formats.AGENTWARDEN: "example-agentwarden-signing-key",
}
FORMAT_LABELS = {
    formats.STANDARD: "Standard Webhooks",
    formats.ARDEN: "Arden",
    formats.AGENTWARDEN: "AgentWarden",
}

EVENT_DESCRIPTIONS = {
    "log.pending_approval": "A call was held for a human: a reviewer has to approve or reject it.",
    "approval.approved": "A reviewer (or the quorum) approved a held call.",
    "approval.rejected": "A reviewer rejected a held call.",
    "approval.expired": "A held call timed out without a decision (the agent must not run it).",
    "webhook.test": "The test ping a member sends from the endpoint's page (Send test event).",
}

_REQUESTED = "2026-01-01T00:00:00+00:00"
_DECIDED = "2026-01-01T00:03:12+00:00"


def sample_data(event_type: str) -> dict[str, Any]:
    """The canonical data Warden stores for a sample event of ``event_type`` (docs/API.md)."""
    if event_type == "webhook.test":
        return {
            "action_id": "act_test_5f2a9c1b7d3e",
            "agent_id": None,
            "agent_name": None,
            "action": "warden.webhook_test",
            "arguments": {"message": "This is a test event from Warden."},
            "status": "test",
            "environment": "test",
            "session_id": None,
            "rule": None,
            "reason": "Test event sent by a member.",
            "requested_at": _REQUESTED,
            "expires_at": None,
            "decided_at": None,
            "decided_by": None,
            "notes": None,
            "endpoint_id": "we_3kTq8ZrVx2LmNp4WbY6c",
        }
    status, decided_by, notes = {
        "log.pending_approval": ("pending", None, None),
        "approval.approved": ("approved", "alice@example.com", "Customer confirmed by phone."),
        "approval.rejected": ("denied", "alice@example.com", "Duplicate of an earlier refund."),
        "approval.expired": ("expired", None, None),
        "approval.escalated": ("pending", None, None),
    }[event_type]
    decided = event_type not in ("log.pending_approval", "approval.escalated")
    extra: dict[str, Any] = {}
    if event_type == "approval.escalated":  # still pending, with new approvers and deadline
        extra = {"expires_at": "2026-01-01T01:30:00+00:00", "approvers": ["role:owner"]}
    return {
        "action_id": "act_8Hn2QpLw5Rt7Vy9Zb3Cd",
        "agent_id": "agt_4Fj6Kl8Mn0Pq2Rs4Tu6V",
        "agent_name": "refund-bot",
        "action": "stripe.refund",
        "arguments": {"amount": 420, "currency": "usd", "customer_id": "cus_Q81x"},
        "status": status,
        "environment": "live",
        "session_id": "sess_0142",
        "rule": "large refunds need a human",
        "reason": "Refunds over 100 need a human",
        "requested_at": _REQUESTED,
        "expires_at": "2026-01-01T01:00:00+00:00",
        "decided_at": _DECIDED if decided else None,
        "decided_by": decided_by,
        "notes": notes,
        **extra,
    }


@dataclass(frozen=True)
class SampleEvent:
    public_id: str
    event_type: str
    data: dict[str, Any]
    created_at: datetime = SAMPLE_AT


@dataclass
class FormatSample:
    fmt: str
    label: str
    sent: bool
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""  # pretty-printed for reading; the wire body is compact (``raw_body``)
    raw_body: bytes = b""


@dataclass
class CatalogueEntry:
    event_type: str
    description: str
    samples: list[FormatSample]


def sample_event(event_type: str) -> SampleEvent:
    return SampleEvent(
        public_id="evt_7Gh3Jk5Lm9Np1Qr3St5U", event_type=event_type, data=sample_data(event_type)
    )


def format_sample(event_type: str, fmt: str) -> FormatSample:
    label = FORMAT_LABELS[fmt]
    if not formats.format_sends(fmt, event_type):
        return FormatSample(fmt=fmt, label=label, sent=False)
    headers, body = formats.build_request(
        sample_event(event_type), fmt, [SAMPLE_SECRETS[fmt]], SAMPLE_TIMESTAMP
    )
    pretty = json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    return FormatSample(
        fmt=fmt, label=label, sent=True, headers=headers, body=pretty, raw_body=body
    )


def catalogue(event_types: tuple[str, ...] | list[str]) -> list[CatalogueEntry]:
    return [
        CatalogueEntry(
            event_type=event_type,
            description=EVENT_DESCRIPTIONS.get(event_type, ""),
            samples=[format_sample(event_type, fmt) for fmt in FORMAT_LABELS],
        )
        for event_type in event_types
    ]


# --- Verification snippets ---------------------------------------------------------------
# ``headers`` is the request's headers: a case-insensitive mapping in Python (Django's
# request.headers, Flask's, Starlette's); lower-case names in Node (node:http lower-cases
# them). ``body`` is the raw request body, bytes / a Buffer, before any JSON parsing.

PYTHON_STANDARD = '''\
import base64
import hashlib
import hmac
import time


def verify(secret: str, headers, body: bytes, tolerance: int = 300) -> bool:
    """Standard Webhooks: True if the request is Warden's and recent."""
    msg_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    # During a secret rotation there are several signatures, separated by spaces.
    return any(
        hmac.compare_digest(expected, signature.removeprefix("v1,"))
        for signature in headers["webhook-signature"].split()
        if signature.startswith("v1,")
    )
'''

NODE_STANDARD = """\
const crypto = require("node:crypto");

// Standard Webhooks: true if the request is Warden's and recent.
function verify(secret, headers, body, toleranceSeconds = 300) {
  const id = headers["webhook-id"];
  const timestamp = headers["webhook-timestamp"];
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > toleranceSeconds) return false;
  const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
  const expected = crypto
    .createHmac("sha256", key)
    .update(`${id}.${timestamp}.`)
    .update(body)
    .digest();
  // During a secret rotation there are several signatures, separated by spaces.
  return (headers["webhook-signature"] || "").split(" ").some((signature) => {
    if (!signature.startsWith("v1,")) return false;
    const given = Buffer.from(signature.slice(3), "base64");
    return given.length === expected.length && crypto.timingSafeEqual(given, expected);
  });
}
"""

_PYTHON_HEX = '''\
import hashlib
import hmac
import time


def verify(secret: str, headers, body: bytes, tolerance: int = 300) -> bool:
    """{label} format: True if the request is Warden's and recent."""
    timestamp = headers["{prefix}-Timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance:
        return False
    signed = f"{{timestamp}}.".encode() + body
    expected = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["{prefix}-Signature"])
'''

_NODE_HEX = """\
const crypto = require("node:crypto");

// {label} format: true if the request is Warden's and recent.
function verify(secret, headers, body, toleranceSeconds = 300) {{
  const timestamp = headers["{lower}-timestamp"];
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > toleranceSeconds) return false;
  const expected = Buffer.from(
    "sha256=" +
      crypto.createHmac("sha256", secret).update(`${{timestamp}}.`).update(body).digest("hex")
  );
  const given = Buffer.from(headers["{lower}-signature"] || "");
  return given.length === expected.length && crypto.timingSafeEqual(given, expected);
}}
"""


def _hex(template: str, label: str, prefix: str) -> str:
    return template.format(label=label, prefix=prefix, lower=prefix.lower())


SNIPPETS: dict[str, dict[str, str]] = {
    formats.STANDARD: {"python": PYTHON_STANDARD, "node": NODE_STANDARD},
    formats.ARDEN: {
        "python": _hex(_PYTHON_HEX, "Arden", "X-Arden"),
        "node": _hex(_NODE_HEX, "Arden", "X-Arden"),
    },
    formats.AGENTWARDEN: {
        "python": _hex(_PYTHON_HEX, "AgentWarden", "X-AgentWarden"),
        "node": _hex(_NODE_HEX, "AgentWarden", "X-AgentWarden"),
    },
}

LIBRARIES = {
    formats.STANDARD: "Any Standard Webhooks verifier accepts it too, e.g. the standardwebhooks "
    "package (pip or npm): Webhook(secret).verify(body, headers).",
    formats.ARDEN: "ardenpy verifies it for you: ardenpy.handle_webhook(body, headers, "
    "signing_key) or ardenpy.verify_webhook_signature(body, timestamp, signature, key).",
    formats.AGENTWARDEN: "The signature covers the timestamp header, a dot and the raw body.",
}


@dataclass
class FormatGuide:
    fmt: str
    label: str
    secret: str
    python: str
    node: str
    library: str


def format_guides() -> list[FormatGuide]:
    return [
        FormatGuide(
            fmt=fmt,
            label=label,
            secret=SAMPLE_SECRETS[fmt],
            python=SNIPPETS[fmt]["python"],
            node=SNIPPETS[fmt]["node"],
            library=LIBRARIES[fmt],
        )
        for fmt, label in FORMAT_LABELS.items()
    ]
