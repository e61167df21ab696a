"""Data types returned by the SDK and passed to callbacks."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import enum
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

# Statuses after which an action will not change any more (apart from its outcome).
FINAL_STATUSES = frozenset({"allowed", "blocked", "approved", "denied", "expired", "cancelled"})
DENIED_STATUSES = frozenset({"denied", "expired", "cancelled", "blocked"})


class PolicyDecision(str, enum.Enum):
    ALLOW = "allow"
    REQUIRE_APPROVAL = "requires_approval"
    BLOCK = "block"


@dataclass(frozen=True)
class CheckResult:
    """Answer of ``POST /api/v1/check``. Truthy when the call may run now."""

    decision: str
    action_id: str | None
    status: str | None = None
    reason: str | None = None
    rule: str | None = None
    message: str | None = None
    environment: str | None = None
    expires_at: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CheckResult:
        return cls(
            decision=str(data.get("decision") or ""),
            action_id=data.get("action_id"),
            status=data.get("status"),
            reason=data.get("reason"),
            rule=data.get("rule"),
            message=data.get("message"),
            environment=data.get("environment"),
            expires_at=data.get("expires_at"),
            raw=dict(data),
        )

    @property
    def allowed(self) -> bool:
        return self.decision == PolicyDecision.ALLOW.value

    @property
    def requires_approval(self) -> bool:
        return self.decision == PolicyDecision.REQUIRE_APPROVAL.value

    @property
    def blocked(self) -> bool:
        return self.decision == PolicyDecision.BLOCK.value

    def __bool__(self) -> bool:
        return self.allowed


@dataclass(frozen=True)
class ActionState:
    """Answer of ``GET /api/v1/actions/{id}``."""

    action_id: str
    status: str
    action: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    decision: str | None = None
    reason: str | None = None
    rule: str | None = None
    notes: str | None = None
    decided_by: str | None = None
    decided_at: str | None = None
    expires_at: str | None = None
    claimed_at: str | None = None
    outcome: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ActionState:
        arguments = data.get("arguments")
        return cls(
            action_id=str(data.get("action_id") or ""),
            status=str(data.get("status") or ""),
            action=data.get("action"),
            arguments=dict(arguments) if isinstance(arguments, Mapping) else {},
            decision=data.get("decision"),
            reason=data.get("reason"),
            rule=data.get("rule"),
            notes=data.get("notes"),
            decided_by=data.get("decided_by"),
            decided_at=data.get("decided_at"),
            expires_at=data.get("expires_at"),
            claimed_at=data.get("claimed_at"),
            outcome=data.get("outcome"),
            raw=dict(data),
        )

    @property
    def is_pending(self) -> bool:
        return self.status == "pending"


@dataclass(frozen=True)
class LogResult:
    """Answer of ``POST /sdk/log`` (AgentWarden-compatible log entry)."""

    id: str
    agent_id: str | None
    organization_id: str | None
    action: str
    status: str
    context: dict[str, Any] | None
    created_at: str | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class WebhookEvent:
    """What ``on_approval`` / ``on_denial`` receive (webhook, async poller or registry).

    ``event_type`` is ``"action_approved"`` or ``"action_denied"`` as in the Arden SDK
    (``"action_pending"`` for a pending notice, ``"webhook_test"`` for a test ping);
    ``warden_type`` is Warden's native name (``approval.approved``, ``approval.rejected``,
    ``approval.expired``, ``log.pending_approval`` ...).
    """

    event_type: str
    action_id: str
    tool_name: str
    context: dict[str, Any]
    approved_by: str | None = None
    notes: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    warden_type: str = ""
    event_id: str | None = None
    status: str | None = None

    @property
    def approved(self) -> bool:
        return self.event_type == "action_approved"


@dataclass
class PendingApproval:
    """Returned at once by a guarded call in ``async`` / ``webhook`` mode."""

    action_id: str
    tool_name: str

    def __str__(self) -> str:
        return (
            "This action requires human approval before it can run. A reviewer has been "
            f"asked; it runs once approved. (action_id: {self.action_id})"
        )


_MAX_DEPTH = 32


def to_jsonable(value: Any, _depth: int = 0) -> Any:
    """Turn ``value`` into something ``json.dumps`` accepts, keeping numbers numeric."""
    if _depth > _MAX_DEPTH:
        return repr(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value, _depth + 1)
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            return str(value)
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (uuid.UUID, PurePath)):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(raw).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, _depth + 1) for v in value]
    if isinstance(value, (set, frozenset)):
        items = [to_jsonable(v, _depth + 1) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: to_jsonable(getattr(value, f.name), _depth + 1)
            for f in dataclasses.fields(value)
        }
    model_dump = getattr(value, "model_dump", None)  # pydantic v2
    if callable(model_dump):
        try:
            return to_jsonable(model_dump(), _depth + 1)
        except Exception:  # noqa: BLE001 - fall through to repr
            pass
    attrs = getattr(value, "__dict__", None)
    if isinstance(attrs, dict) and attrs:
        return {k: to_jsonable(v, _depth + 1) for k, v in attrs.items() if not k.startswith("_")}
    return repr(value)
