"""Remembered approvals ("grants"): what a reviewer may offer with an approval, read once.

A grant offered through any channel (API body, dashboard form, Slack, email page) is parsed
here into one ``GrantSpec`` before anything is decided; ``approvals.services`` checks it
against the holding rule (``approval: {grants: [...]}``), creates it with the approval,
uses it on the check path and revokes it. A grant is one of:

- ``{"kind": "identical", "ttl": "1h"}``: the same agent, action, arguments and environment;
- ``{"kind": "session", "ttl": "8h"}``: the action in the held call's session (``session_id``);
- ``{"kind": "amount", "max_amount": 200, "uses": 5, "ttl": "1d"}``: the action with an amount
  (read through the rule's amount field, fail closed) up to ``max_amount``, ``uses`` times.

``ttl`` is a duration (``30m``, ``8h``, ``1d`` or seconds), at most ``MAX_TTL`` (30 days).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

from agents.policy import (
    RuleSpec,
    format_duration,
    format_number,
    parse_duration,
    to_decimal,
)
from agents.selectors import rule_spec
from approvals.models import ApprovalRequest
from wardenproject.errors import ValidationFailed
from wardenproject.jsonutil import iso

IDENTICAL, SESSION, AMOUNT = "identical", "session", "amount"
KINDS = (IDENTICAL, SESSION, AMOUNT)
MAX_TTL_SECONDS = 30 * 86400
MAX_USES = 10_000
# Grant.max_amount is NUMERIC(30, 8): 22 digits before the point.
_MAX_AMOUNT_DIGITS = 22
_QUANTUM = Decimal("0.00000001")
_FIELDS = {
    IDENTICAL: {"kind", "ttl"},
    SESSION: {"kind", "ttl"},
    AMOUNT: {"kind", "ttl", "max_amount", "uses"},
}
_KIND_WORDS = {
    IDENTICAL: "identical calls",
    SESSION: "this session",
    AMOUNT: "up to an amount",
}


@dataclass(frozen=True, slots=True)
class GrantSpec:
    """A grant as offered, validated in shape (not yet against a rule)."""

    kind: str
    ttl_seconds: int
    max_amount: Decimal | None = None
    uses: int | None = None

    def record(self) -> dict[str, Any]:
        """The offer as JSON (kept on a quorum vote until the request is approved)."""
        recorded: dict[str, Any] = {"kind": self.kind, "ttl": format_duration(self.ttl_seconds)}
        if self.max_amount is not None:
            recorded["max_amount"] = format_number(self.max_amount)
        if self.uses is not None:
            recorded["uses"] = self.uses
        return recorded


def _invalid(detail: str, name: str) -> ValidationFailed:
    return ValidationFailed(detail, field=f"grant.{name}" if name else "grant")


def grant_spec_parse(raw: Any) -> GrantSpec | None:
    """The grant of a request body (``None``/absent: no grant). Raises ``ValidationFailed``
    naming the field (``grant.ttl`` ...) for anything malformed."""
    if raw is None:
        return None
    if isinstance(raw, GrantSpec):
        return raw
    if not isinstance(raw, Mapping):
        raise _invalid('A grant is an object such as {"kind": "identical", "ttl": "1h"}.', "")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise _invalid(f"kind must be one of {', '.join(KINDS)}.", "kind")
    for name in raw:
        if name not in _FIELDS[kind]:
            raise _invalid(
                f"{name!s:.40} is not a field of a {kind} grant "
                f"(fields: {', '.join(sorted(_FIELDS[kind]))}).",
                str(name)[:40],
            )
    ttl = _ttl(raw.get("ttl"))
    if kind != AMOUNT:
        return GrantSpec(kind=kind, ttl_seconds=ttl)
    return GrantSpec(
        kind=kind, ttl_seconds=ttl, max_amount=_max_amount(raw.get("max_amount")), uses=_uses(raw)
    )


def _ttl(raw: Any) -> int:
    if raw is None:
        raise _invalid("ttl is required: how long the grant lasts (e.g. 1h, 8h, 1d).", "ttl")
    if not isinstance(raw, (str, int)) or isinstance(raw, bool):
        raise _invalid("ttl must be a duration such as 30m, 8h, 1d or seconds.", "ttl")
    try:
        seconds = parse_duration(raw)
    except ValueError as error:
        raise _invalid(str(error), "ttl") from None
    if seconds > MAX_TTL_SECONDS:
        raise _invalid("ttl must be at most 30d.", "ttl")
    return seconds


def _max_amount(raw: Any) -> Decimal:
    if raw is None:
        raise _invalid("max_amount is required for an amount grant.", "max_amount")
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str, Decimal)):
        raise _invalid("max_amount must be a number.", "max_amount")
    amount = to_decimal(raw)
    if amount is None:
        raise _invalid("max_amount must be a finite number.", "max_amount")
    if amount <= 0:
        raise _invalid("max_amount must be greater than 0.", "max_amount")
    if amount.adjusted() >= _MAX_AMOUNT_DIGITS:
        raise _invalid(f"max_amount must be below 1e{_MAX_AMOUNT_DIGITS}.", "max_amount")
    # Rounded down: the grant never covers more than the reviewer wrote.
    return amount.quantize(_QUANTUM, rounding=ROUND_DOWN)


def _uses(raw: Mapping[str, Any]) -> int:
    uses = raw.get("uses")
    if uses is None:
        raise _invalid("uses is required for an amount grant: how many calls it allows.", "uses")
    if isinstance(uses, bool) or not isinstance(uses, int) or not 1 <= uses <= MAX_USES:
        raise _invalid(f"uses must be a whole number from 1 to {MAX_USES}.", "uses")
    return uses


def holding_rule(request: ApprovalRequest) -> RuleSpec | None:
    """The rule that held ``request``, as it reads now (None if it was deleted)."""
    rule = request.rule
    if rule is None:
        return None
    return rule_spec(rule, lists=request.agent.policy_lists if rule.agent_id else None)


def grant_kinds_allowed(request: ApprovalRequest) -> tuple[str, ...]:
    """What a reviewer may remember when approving ``request`` (none once it is decided)."""
    if request.status != ApprovalRequest.Status.PENDING:
        return ()
    rule = holding_rule(request)
    if rule is None:
        return ()
    return tuple(kind for kind in rule.grants if kind != SESSION or request.session_id)


def grant_spec_check(
    spec: GrantSpec, *, allowed: tuple[str, ...], rule_name: str, session_id: str
) -> None:
    """Refuse (400, ``grant.kind``) a grant the holding rule does not allow, and a session
    grant for a call without a session."""
    if not rule_name:
        raise _invalid("No rule held this call, so nothing can be remembered.", "kind")
    if spec.kind not in allowed:
        allows = ", ".join(allowed) if allowed else "no grants"
        raise _invalid(
            f"Rule '{rule_name}' does not allow {spec.kind} grants (it allows: {allows}).", "kind"
        )
    if spec.kind == SESSION and not session_id:
        raise _invalid("This call has no session_id, so it cannot get a session grant.", "kind")


@dataclass(frozen=True, slots=True)
class GrantUse:
    """A grant that allowed a call, as the check's answer and audit entry name it."""

    public_id: str
    kind: str
    granted_by: str
    expires_at: datetime
    uses: int | None
    uses_left: int | None

    def reason(self) -> str:
        text = f"allowed by grant {self.public_id} from {self.granted_by}"
        if self.uses is not None and self.uses_left is not None:
            return f"{text}, {self.uses_left} of {self.uses} uses left"
        until = self.expires_at.replace(microsecond=0).isoformat()
        return f"{text} ({_KIND_WORDS[self.kind]}, until {until})"

    def record(self) -> dict[str, Any]:
        return {
            "id": self.public_id,
            "kind": self.kind,
            "granted_by": self.granted_by,
            "expires_at": iso(self.expires_at),
            "uses": self.uses,
            "uses_left": self.uses_left,
        }


def kind_label(kind: str) -> str:
    return _KIND_WORDS.get(kind, kind)
