"""Policy as code: one YAML or JSON document per agent, parsed, validated and dumped.

Pure: no Django, no I/O. Validation collects every problem before raising, so an editor or
an API client sees all of them at once:

    agent: support-bot
    default: allow
    rules:
      - name: refund limit
        action: stripe.refund
        effect: requires_approval
        max_amount: 100

`parse_policy_document(dump_policy_document(...))` gives back exactly the same rules.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import yaml

from agents.policy import (
    DEFAULTS,
    EFFECTS,
    ENVIRONMENTS,
    REQUIRES_APPROVAL,
    Condition,
    Limit,
    RuleSpec,
    action_pattern_problem,
    condition_problem,
    field_path_problem,
    format_duration,
    parse_duration,
    to_decimal,
)

MAX_DOCUMENT_BYTES = 1024 * 1024
MAX_RULES = 1000
MAX_NAME_LENGTH = 200
MAX_DESCRIPTION_LENGTH = 2000
MAX_CONDITIONS = 50

TOP_LEVEL_KEYS = ("agent", "default", "rules")
RULE_KEYS = (
    "name",
    "description",
    "action",
    "effect",
    "when",
    "max_amount",
    "amount_field",
    "limit",
    "approval",
    "environments",
    "enabled",
)
CONDITION_KEYS = ("field", "op", "value")
LIMIT_KEYS = ("count", "sum", "over", "per")
APPROVAL_KEYS = ("timeout", "approvals_required")


# ---------------------------------------------------------------------------
# Errors and results
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyError:
    rule: str | None  # the rule's name, or "rules[3]" when it has no usable name
    field: str | None  # e.g. "effect", "when[0].op", "limit.per"
    message: str

    def __str__(self) -> str:
        parts = []
        if self.rule is not None:
            parts.append(f"rule '{self.rule}'")
        if self.field is not None:
            parts.append(f"field '{self.field}'")
        return f"{', '.join(parts)}: {self.message}" if parts else self.message


class PolicyDocumentError(ValueError):
    """The document (or single rule) is invalid; `errors` lists every problem found."""

    def __init__(self, errors: list[PolicyError]) -> None:
        self.errors = errors
        super().__init__(str(self))

    def __str__(self) -> str:
        count = len(self.errors)
        lines = [f"policy document has {count} error{'s' if count != 1 else ''}:"]
        lines.extend(f"- {error}" for error in self.errors)
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class RuleDraft:
    """A validated rule, not yet stored: no id, no position."""

    name: str
    action: str
    effect: str
    description: str = ""
    conditions: tuple[Condition, ...] = ()
    max_amount: Decimal | None = None
    amount_field: str = "amount"
    limit: Limit | None = None
    environments: frozenset[str] = field(default_factory=lambda: ENVIRONMENTS)
    approval_timeout: int | None = None
    approvals_required: int = 1
    enabled: bool = True

    def to_spec(self, id: str, position: int = 0, scope: str = "agent") -> RuleSpec:
        return RuleSpec(
            id=id,
            name=self.name,
            action=self.action,
            effect=self.effect,
            conditions=self.conditions,
            max_amount=self.max_amount,
            amount_field=self.amount_field,
            limit=self.limit,
            environments=self.environments,
            approval_timeout=self.approval_timeout,
            approvals_required=self.approvals_required,
            enabled=self.enabled,
            position=position,
            scope=scope,
        )


@dataclass(frozen=True, slots=True)
class PolicyDocument:
    agent: str
    default: str
    rules: tuple[RuleDraft, ...]


# ---------------------------------------------------------------------------
# Loading text
# ---------------------------------------------------------------------------


class _SafeLoaderWithoutAliases(yaml.SafeLoader):
    """safe_load, minus anchors/aliases: they allow tiny documents that expand enormously."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not allowed", event.start_mark
            )
        return super().compose_node(parent, index)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid number")


def _load_text(text: str | bytes, format: str | None) -> Any:
    if isinstance(text, bytes):
        if len(text) > MAX_DOCUMENT_BYTES:
            raise PolicyDocumentError([_too_large()])
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise PolicyDocumentError(
                [PolicyError(None, None, "document is not valid UTF-8")]
            ) from None
    elif len(text) > MAX_DOCUMENT_BYTES or len(text.encode("utf-8")) > MAX_DOCUMENT_BYTES:
        raise PolicyDocumentError([_too_large()])
    if format is None:
        format = "json" if text.lstrip()[:1] in ("{", "[") else "yaml"
    if format == "json":
        try:
            return json.loads(text, parse_constant=_reject_constant)
        except ValueError as exc:
            raise PolicyDocumentError([PolicyError(None, None, f"invalid JSON: {exc}")]) from None
        except RecursionError:
            raise PolicyDocumentError(
                [PolicyError(None, None, "invalid JSON: nested too deeply")]
            ) from None
    if format == "yaml":
        try:
            return yaml.load(text, Loader=_SafeLoaderWithoutAliases)  # noqa: S506 - safe loader
        except yaml.YAMLError as exc:
            raise PolicyDocumentError(
                [PolicyError(None, None, f"invalid YAML: {_yaml_message(exc)}")]
            ) from None
        except RecursionError:
            raise PolicyDocumentError(
                [PolicyError(None, None, "invalid YAML: nested too deeply")]
            ) from None
    raise ValueError(f"format must be 'yaml', 'json' or None, not {format!r}")


def _too_large() -> PolicyError:
    return PolicyError(None, None, f"document is larger than {MAX_DOCUMENT_BYTES // 1024} KiB")


def _yaml_message(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return problem


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Plan:
    approvals_enabled: bool
    quorum_enabled: bool
    approvals_plan: str
    quorum_plan: str


class _RuleValidator:
    """Validates one rule mapping, appending every problem to `errors`."""

    def __init__(self, label: str | None, errors: list[PolicyError], plan: _Plan) -> None:
        self.label = label
        self.errors = errors
        self.plan = plan

    def error(self, field_name: str | None, message: str) -> None:
        self.errors.append(PolicyError(self.label, field_name, message))

    def validate(self, raw: Mapping[Any, Any]) -> RuleDraft | None:
        errors_before = len(self.errors)
        for key in raw:
            if key not in RULE_KEYS:
                self.error(str(key), f"unknown key; allowed keys: {', '.join(RULE_KEYS)}")

        name = raw.get("name")
        if name is None:
            self.error("name", "is required")
        elif not isinstance(name, str) or not name.strip():
            self.error("name", "must be a non-empty string")
        elif len(name) > MAX_NAME_LENGTH:
            self.error("name", f"must be at most {MAX_NAME_LENGTH} characters")

        description = raw.get("description", "")
        if description is None:
            description = ""
        if not isinstance(description, str):
            self.error("description", "must be a string")
        elif len(description) > MAX_DESCRIPTION_LENGTH:
            self.error("description", f"must be at most {MAX_DESCRIPTION_LENGTH} characters")

        action = raw.get("action")
        if action is None:
            self.error("action", "is required")
        else:
            problem = action_pattern_problem(action)
            if problem is not None:
                self.error("action", f"invalid action pattern: {problem}")

        effect = raw.get("effect")
        if effect is None:
            self.error("effect", "is required")
        elif effect not in EFFECTS:
            self.error("effect", f"must be one of {', '.join(EFFECTS)}, not {effect!r}")
        elif effect == REQUIRES_APPROVAL and not self.plan.approvals_enabled:
            self.error(
                "effect", f"requires_approval needs the {self.plan.approvals_plan} plan or higher"
            )

        conditions = self._conditions(raw.get("when"))
        max_amount = self._max_amount(raw)
        amount_field = raw.get("amount_field", "amount")
        problem = field_path_problem(amount_field)
        if problem is not None:
            self.error("amount_field", problem)
        limit = self._limit(raw.get("limit"))
        approval_timeout, approvals_required = self._approval(raw.get("approval"))
        environments = self._environments(raw.get("environments"))

        enabled = raw.get("enabled", True)
        if not isinstance(enabled, bool):
            self.error("enabled", "must be true or false")

        if len(self.errors) > errors_before:
            return None
        return RuleDraft(
            name=name,
            action=action,
            effect=effect,
            description=description,
            conditions=conditions,
            max_amount=max_amount,
            amount_field=amount_field,
            limit=limit,
            environments=environments,
            approval_timeout=approval_timeout,
            approvals_required=approvals_required,
            enabled=enabled,
        )

    def _conditions(self, raw: Any) -> tuple[Condition, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            self.error("when", "must be a list of {field, op, value} conditions")
            return ()
        if len(raw) > MAX_CONDITIONS:
            self.error("when", f"at most {MAX_CONDITIONS} conditions per rule")
            return ()
        conditions = []
        for index, item in enumerate(raw):
            where = f"when[{index}]"
            if not isinstance(item, Mapping):
                self.error(where, "must be a mapping with field, op and value")
                continue
            unknown = [key for key in item if key not in CONDITION_KEYS]
            for key in unknown:
                self.error(f"{where}.{key}", "unknown key; allowed keys: field, op, value")
            missing = [key for key in CONDITION_KEYS if key not in item]
            for key in missing:
                self.error(f"{where}.{key}", "is required")
            if unknown or missing:
                continue
            value = item["value"]
            if isinstance(value, list):
                value = tuple(value)
            problem = condition_problem(item["field"], item["op"], value)
            if problem is not None:
                self.error(f"{where}.{problem[0]}", problem[1])
                continue
            conditions.append(Condition(field=item["field"], op=item["op"], value=value))
        return tuple(conditions)

    def _max_amount(self, raw: Mapping[Any, Any]) -> Decimal | None:
        if "max_amount" not in raw or raw["max_amount"] is None:
            return None
        value = raw["max_amount"]
        amount = to_decimal(value) if isinstance(value, (int, float, str, Decimal)) else None
        if amount is None:
            self.error("max_amount", f"must be a number, not {value!r}")
            return None
        if amount <= 0:
            self.error("max_amount", "must be greater than 0")
            return None
        return amount

    def _duration(self, field_name: str, value: Any) -> int | None:
        try:
            return parse_duration(value)
        except (ValueError, TypeError) as exc:
            self.error(field_name, str(exc))
            return None

    def _limit(self, raw: Any) -> Limit | None:
        if raw is None:
            return None
        if not isinstance(raw, Mapping):
            self.error("limit", "must be {count: N, per: 1h} or {sum: field, over: X, per: 1d}")
            return None
        for key in raw:
            if key not in LIMIT_KEYS:
                self.error(f"limit.{key}", "unknown key; allowed keys: count, sum, over, per")
        if "per" not in raw:
            self.error("limit.per", "is required (a window such as 1h or 1d)")
            per = None
        else:
            per = self._duration("limit.per", raw["per"])
        if ("count" in raw) == ("sum" in raw):
            self.error("limit", "give exactly one of count or sum")
            return None
        if "count" in raw:
            if "over" in raw:
                self.error("limit.over", "only goes with sum")
            count = raw["count"]
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                self.error("limit.count", f"must be a whole number of at least 1, not {count!r}")
                return None
            return Limit(kind="count", per_seconds=per, count=count) if per else None
        sum_field = raw["sum"]
        problem = field_path_problem(sum_field)
        if problem is not None:
            self.error("limit.sum", problem)
        over_raw = raw.get("over")
        over = to_decimal(over_raw) if isinstance(over_raw, (int, float, str, Decimal)) else None
        if over_raw is None:
            self.error("limit.over", "is required with sum")
        elif over is None:
            self.error("limit.over", f"must be a number, not {over_raw!r}")
        elif over <= 0:
            self.error("limit.over", "must be greater than 0")
            over = None
        if problem is not None or over is None or per is None:
            return None
        return Limit(kind="sum", per_seconds=per, field=sum_field, over=over)

    def _approval(self, raw: Any) -> tuple[int | None, int]:
        if raw is None:
            return None, 1
        if not isinstance(raw, Mapping):
            self.error("approval", "must be {timeout: 30m, approvals_required: 2}")
            return None, 1
        for key in raw:
            if key not in APPROVAL_KEYS:
                self.error(
                    f"approval.{key}", "unknown key; allowed keys: timeout, approvals_required"
                )
        timeout = None
        if raw.get("timeout") is not None:
            timeout = self._duration("approval.timeout", raw["timeout"])
        required = raw.get("approvals_required", 1)
        if not isinstance(required, int) or isinstance(required, bool) or required < 1:
            self.error(
                "approval.approvals_required",
                f"must be a whole number of at least 1, not {required!r}",
            )
            return timeout, 1
        if required > 1 and not self.plan.quorum_enabled:
            self.error(
                "approval.approvals_required",
                f"more than one approval needs the {self.plan.quorum_plan} plan or higher",
            )
        return timeout, required

    def _environments(self, raw: Any) -> frozenset[str]:
        if raw is None:
            return ENVIRONMENTS
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not raw:
            self.error("environments", "must be a non-empty list of test and/or live")
            return ENVIRONMENTS
        unknown = [env for env in raw if env not in ENVIRONMENTS]
        if unknown:
            self.error("environments", f"only test and live are allowed, not {unknown[0]!r}")
            return ENVIRONMENTS
        return frozenset(raw)


def _rule_label(raw: Any, index: int | None) -> str | None:
    name = raw.get("name") if isinstance(raw, Mapping) else None
    if isinstance(name, str) and name.strip():
        return name
    return f"rules[{index}]" if index is not None else None


def parse_policy_document(
    text: str | bytes | Mapping[str, Any],
    *,
    format: str | None = None,
    approvals_enabled: bool = True,
    quorum_enabled: bool = True,
    max_rules: int | None = None,
    approvals_plan: str = "Pro",
    quorum_plan: str = "Business",
) -> PolicyDocument:
    """Parse and validate a whole document; raises PolicyDocumentError listing every problem."""
    data = text if isinstance(text, Mapping) else _load_text(text, format)
    if not isinstance(data, Mapping):
        raise PolicyDocumentError(
            [PolicyError(None, None, "document must be a mapping with agent, default and rules")]
        )
    errors: list[PolicyError] = []
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            errors.append(
                PolicyError(None, str(key), "unknown key; allowed keys: agent, default, rules")
            )

    agent = data.get("agent")
    if agent is None:
        errors.append(PolicyError(None, "agent", "is required"))
    elif not isinstance(agent, str) or not agent.strip():
        errors.append(PolicyError(None, "agent", "must be a non-empty string"))

    default = data.get("default", "allow")
    if default not in DEFAULTS:
        errors.append(PolicyError(None, "default", f"must be allow or block, not {default!r}"))

    raw_rules = data.get("rules")
    if raw_rules is None:
        raw_rules = []
    if not isinstance(raw_rules, list):
        errors.append(PolicyError(None, "rules", "must be a list"))
        raw_rules = []
    if len(raw_rules) > MAX_RULES:
        errors.append(PolicyError(None, "rules", f"at most {MAX_RULES} rules per document"))
        raise PolicyDocumentError(errors)
    if max_rules is not None and len(raw_rules) > max_rules:
        errors.append(
            PolicyError(
                None,
                "rules",
                f"your plan allows at most {max_rules} rules per agent; "
                f"this document has {len(raw_rules)}",
            )
        )

    plan = _Plan(approvals_enabled, quorum_enabled, approvals_plan, quorum_plan)
    drafts: list[RuleDraft] = []
    seen_names: set[str] = set()
    for index, raw in enumerate(raw_rules):
        label = _rule_label(raw, index)
        if not isinstance(raw, Mapping):
            errors.append(PolicyError(label, None, "must be a mapping"))
            continue
        name = raw.get("name")
        if isinstance(name, str) and name.strip():
            if name in seen_names:
                errors.append(PolicyError(label, "name", "duplicate rule name"))
            seen_names.add(name)
        draft = _RuleValidator(label, errors, plan).validate(raw)
        if draft is not None:
            drafts.append(draft)

    if errors:
        raise PolicyDocumentError(errors)
    return PolicyDocument(agent=agent, default=default, rules=tuple(drafts))


def rule_draft_from_mapping(
    mapping: Mapping[str, Any],
    *,
    approvals_enabled: bool = True,
    quorum_enabled: bool = True,
    approvals_plan: str = "Pro",
    quorum_plan: str = "Business",
) -> RuleDraft:
    """Validate one rule (same keys as in a document), e.g. for a form or a single-rule API."""
    if not isinstance(mapping, Mapping):
        raise PolicyDocumentError([PolicyError(None, None, "rule must be a mapping")])
    errors: list[PolicyError] = []
    plan = _Plan(approvals_enabled, quorum_enabled, approvals_plan, quorum_plan)
    draft = _RuleValidator(_rule_label(mapping, None), errors, plan).validate(mapping)
    if errors or draft is None:
        raise PolicyDocumentError(errors)
    return draft


# ---------------------------------------------------------------------------
# Dumping
# ---------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Decimals become ints or floats, tuples lists, so YAML and JSON print plain numbers."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(item) for item in value)
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return value


def rule_to_mapping(rule: RuleDraft | RuleSpec) -> dict[str, Any]:
    """The document form of one rule, with default values left out."""
    out: dict[str, Any] = {"name": rule.name}
    description = getattr(rule, "description", "")
    if description:
        out["description"] = description
    out["action"] = rule.action
    out["effect"] = rule.effect
    if rule.conditions:
        out["when"] = [
            {"field": c.field, "op": c.op, "value": _plain(c.value)} for c in rule.conditions
        ]
    if rule.max_amount is not None:
        out["max_amount"] = _plain(rule.max_amount)
    if rule.amount_field != "amount":
        out["amount_field"] = rule.amount_field
    if rule.limit is not None:
        limit = rule.limit
        if limit.kind == "count":
            out["limit"] = {"count": limit.count, "per": format_duration(limit.per_seconds)}
        else:
            out["limit"] = {
                "sum": limit.field,
                "over": _plain(limit.over),
                "per": format_duration(limit.per_seconds),
            }
    approval: dict[str, Any] = {}
    if rule.approval_timeout is not None:
        approval["timeout"] = format_duration(rule.approval_timeout)
    if rule.approvals_required != 1:
        approval["approvals_required"] = rule.approvals_required
    if approval:
        out["approval"] = approval
    if rule.environments != ENVIRONMENTS:
        out["environments"] = sorted(rule.environments)
    if not rule.enabled:
        out["enabled"] = False
    return out


def dump_policy_document(
    agent: str,
    default: str,
    rules: Iterable[RuleDraft | RuleSpec],
    format: str = "yaml",
) -> str:
    """Write a document that `parse_policy_document` reads back to the same rules."""
    document = {
        "agent": agent,
        "default": default,
        "rules": [rule_to_mapping(rule) for rule in rules],
    }
    if format == "json":
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if format == "yaml":
        return yaml.safe_dump(
            document, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100
        )
    raise ValueError(f"format must be 'yaml' or 'json', not {format!r}")


__all__ = [
    "PolicyDocument",
    "PolicyDocumentError",
    "PolicyError",
    "RuleDraft",
    "dump_policy_document",
    "parse_policy_document",
    "rule_draft_from_mapping",
    "rule_to_mapping",
]
