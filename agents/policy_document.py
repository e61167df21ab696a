"""Policy as code: the one validator of rules, and the YAML/JSON document they live in.

Pure: no Django, no I/O. Every rule, whatever it came from (a YAML or JSON document, the API,
the dashboard's form, the admin, a stored row), is validated here into an
``agents.policy.RuleSpec``, and ``rule_to_mapping`` writes it back; the database stores that
mapping. Validation collects every problem before raising, each with the path of the key
(``rules[2].when.any[1].all[0].op``) and, for YAML, its line:

    agent: support-bot
    default: allow
    lists:
      blocked_domains: [mailinator.com]
    rules:
      - name: refund limit
        action: stripe.refund
        effect: requires_approval
        max_amount: 100

``parse_policy_document(dump_policy_document(...))`` gives back exactly the same rules.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import regex
import yaml

from agents.policy import (
    CONTEXT_FIELDS,
    DEFAULTS,
    EFFECTS,
    ENFORCE,
    ENVIRONMENTS,
    LIST_OPS,
    MAX_DURATION_SECONDS,
    MAX_FIELD_LENGTH,
    MAX_REGEX_LENGTH,
    METADATA_PREFIX,
    MODES,
    NUMERIC_OPS,
    OPS,
    AllOf,
    AnyOf,
    Cond,
    Expr,
    Limit,
    Not,
    RuleSpec,
    action_pattern_problem,
    format_duration,
    parse_duration,
    to_decimal,
)

MAX_DOCUMENT_BYTES = 1024 * 1024
MAX_RULES = 1000
MAX_NAME_LENGTH = 120
MAX_DESCRIPTION_LENGTH = 2000
MAX_MESSAGE_LENGTH = 1000
MAX_CONDITIONS = 100  # comparisons per rule, in when and unless together
MAX_DEPTH = 16  # nesting of any/all/not
MAX_LISTS = 100
MAX_LIST_ITEMS = 10_000
LIST_REF_PREFIX = "$lists."

TOP_LEVEL_KEYS = ("agent", "default", "lists", "rules")
RULE_KEYS = (
    "name",
    "description",
    "action",
    "effect",
    "message",
    "when",
    "unless",
    "max_amount",
    "amount_field",
    "limit",
    "approval",
    "environments",
    "enabled",
    "mode",
)
CONDITION_KEYS = ("field", "op", "value")
GROUP_KEYS = ("any", "all", "not")
LIMIT_KEYS = ("count", "sum", "over", "per", "by")
APPROVAL_KEYS = (
    "timeout",
    "approvals_required",
    "approvers",
    "on_timeout",
    "escalate_to",
    "escalate_timeout",
    "slack_channel",
    "redact",
    "grants",
)
ON_TIMEOUT = ("deny", "escalate")  # timing out to allow is deliberately not offered
GRANT_KINDS = ("identical", "session", "amount")
APPROVER_KINDS = ("role", "group", "user")
APPROVER_ROLES = ("owner", "admin", "approver")
MAX_APPROVERS = 20
MAX_REDACT = 50
_SLACK_CHANNEL_RE = re.compile(r"#?[a-z0-9][a-z0-9._-]{0,79}|[CG][A-Z0-9]{6,20}")
_LIST_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")

Path = tuple[str | int, ...]


def path_text(path: Path) -> str:
    """("rules", 2, "when", "any", 1, "op") -> "rules[2].when.any[1].op"."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


_PATH_PART_RE = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def path_parts(text: str) -> Path:
    """ "when.any[1].op" -> ("when", "any", 1, "op") (the inverse of ``path_text``)."""
    return tuple(int(index) if index else name for name, index in _PATH_PART_RE.findall(text))


# ---------------------------------------------------------------------------
# Errors and results
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyError:
    rule: str | None  # the rule's name, or "rules[3]" when it has no usable name
    field: str | None  # the key's path within the rule: "when.any[1].op", "limit.per"
    message: str
    path: str | None = None  # the key's path in the document: "rules[3].when.any[1].op"
    line: int | None = None  # YAML only

    def __str__(self) -> str:
        head = self.path or self.field or ""
        notes = []
        if self.rule is not None and not self.rule.startswith("rules["):
            notes.append(f"rule '{self.rule}'")
        if self.line is not None:
            notes.append(f"line {self.line}")
        if notes:
            head = f"{head} ({', '.join(notes)})" if head else ", ".join(notes)
        return f"{head}: {self.message}" if head else self.message

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "field": self.field,
            "path": self.path,
            "line": self.line,
            "message": self.message,
        }


class PolicyDocumentError(ValueError):
    """The document (or single rule) is invalid; ``errors`` lists every problem found."""

    def __init__(self, errors: list[PolicyError]) -> None:
        self.errors = errors
        super().__init__(str(self))

    def __str__(self) -> str:
        count = len(self.errors)
        lines = [f"policy document has {count} error{'s' if count != 1 else ''}:"]
        lines.extend(f"- {error}" for error in self.errors)
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class PolicyDocument:
    agent: str
    default: str
    rules: tuple[RuleSpec, ...]
    lists: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)


# ---------------------------------------------------------------------------
# Loading text (with the line of every key, for YAML)
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


def _node_lines(node: Any, path: Path, lines: dict[Path, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = (*path, str(key_node.value))
            lines[child] = key_node.start_mark.line + 1
            _node_lines(value_node, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            lines[child] = item.start_mark.line + 1
            _node_lines(item, child, lines)


def load_text(text: str | bytes, format: str | None = None) -> tuple[Any, dict[Path, int]]:
    """The data of a YAML or JSON text and, for YAML, the line of every key and item."""
    if isinstance(text, bytes):
        if len(text) > MAX_DOCUMENT_BYTES:
            raise PolicyDocumentError([_too_large()])
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise PolicyDocumentError(
                [PolicyError(None, None, "document is not valid UTF-8")]
            ) from None
    elif len(text) > MAX_DOCUMENT_BYTES or len(text.encode("utf-8", "replace")) > (
        MAX_DOCUMENT_BYTES
    ):
        raise PolicyDocumentError([_too_large()])
    if "\x00" in text:
        raise PolicyDocumentError([PolicyError(None, None, "document contains a NUL character")])
    if format is None:
        format = "json" if text.lstrip()[:1] in ("{", "[") else "yaml"
    if format == "json":
        try:
            return json.loads(text, parse_constant=_reject_constant), {}
        except ValueError as exc:
            raise PolicyDocumentError([PolicyError(None, None, f"invalid JSON: {exc}")]) from None
        except RecursionError:
            raise PolicyDocumentError(
                [PolicyError(None, None, "invalid JSON: nested too deeply")]
            ) from None
    if format != "yaml":
        raise ValueError(f"format must be 'yaml', 'json' or None, not {format!r}")
    loader = _SafeLoaderWithoutAliases(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise PolicyDocumentError(
            [PolicyError(None, None, f"invalid YAML: {_yaml_message(exc)}", line=_yaml_line(exc))]
        ) from None
    except RecursionError:
        raise PolicyDocumentError(
            [PolicyError(None, None, "invalid YAML: nested too deeply")]
        ) from None
    finally:
        loader.dispose()
    lines: dict[Path, int] = {}
    if node is not None:
        _node_lines(node, (), lines)
    return data, lines


def _too_large() -> PolicyError:
    return PolicyError(None, None, f"document is larger than {MAX_DOCUMENT_BYTES // 1024} KiB")


def _yaml_line(exc: yaml.YAMLError) -> int | None:
    mark = getattr(exc, "problem_mark", None)
    return mark.line + 1 if mark is not None else None


def _yaml_message(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return problem


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _text_ok(text: str) -> bool:
    """No NUL and no lone surrogate: text a database and a JSON reader both take."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_plain(value: object) -> bool:
    """A string, a finite number, a boolean or null (what a condition compares with)."""
    if value is None or isinstance(value, (bool, int, Decimal)):
        return not isinstance(value, Decimal) or value.is_finite()
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str) and _text_ok(value)


def field_path_problem(path: object, *, wildcard: bool = True) -> str | None:
    """Why ``path`` cannot name a field (an argument path or a ``$`` context field)."""
    if not isinstance(path, str) or not path:
        return "must be a non-empty string"
    if len(path) > MAX_FIELD_LENGTH:
        return f"must be at most {MAX_FIELD_LENGTH} characters"
    if any(ch.isspace() or ord(ch) < 32 for ch in path) or not _text_ok(path):
        return f"{path!r} contains whitespace, control characters or unpaired surrogates"
    if path.startswith("$"):
        if path in CONTEXT_FIELDS:
            return None
        if path.startswith(METADATA_PREFIX) and len(path) > len(METADATA_PREFIX):
            rest = path[len(METADATA_PREFIX) :]
            if any(not part or part == "*" for part in rest.split(".")):
                return f"{path!r} has an empty or wildcard segment"
            return None
        return (
            f"unknown context field {path!r}; use {', '.join(CONTEXT_FIELDS)} or "
            f"{METADATA_PREFIX}KEY"
        )
    for part in path.split("."):
        if not part:
            return f"{path!r} has an empty segment"
        if "*" in part and (part != "*" or not wildcard):
            return (
                f"{path!r}: '*' may only stand for a whole segment (items.*.amount)"
                if wildcard
                else f"{path!r}: a wildcard is not allowed here"
            )
    return None


def approver_problem(item: object) -> str | None:
    """Why ``item`` is not an approver reference (``role:admin``, ``group:finance``,
    ``user:alice@example.com``)."""
    if not isinstance(item, str) or ":" not in item:
        return "must be role:ROLE, group:NAME or user:EMAIL"
    kind, _, value = item.partition(":")
    value = value.strip()
    if kind not in APPROVER_KINDS:
        return f"unknown approver kind {kind!r}; use role:, group: or user:"
    if not value or len(value) > 254 or _has_control(value) or not _text_ok(value):
        return f"{kind}: needs a name (at most 254 characters, no control characters)"
    if kind == "role" and value not in APPROVER_ROLES:
        return f"role must be one of {', '.join(APPROVER_ROLES)}, not {value!r}"
    if kind == "user" and ("@" not in value or any(ch.isspace() for ch in value)):
        return f"user: needs an email address, not {value!r}"
    return None


class _Validator:
    """Validates rules, appending every problem to ``errors``."""

    def __init__(
        self,
        errors: list[PolicyError],
        *,
        lists: Mapping[str, tuple[Any, ...]] | None,
        lines: Mapping[Path, int],
        base: Path = (),
    ) -> None:
        self.errors = errors
        self.lists = lists
        self.lines = lines
        self.base = base
        self.label: str | None = None
        self.conditions = 0

    def error(self, path: Path, message: str) -> None:
        full = (*self.base, *path)
        line = None
        for end in range(len(full), 0, -1):
            line = self.lines.get(full[:end])
            if line is not None:
                break
        self.errors.append(
            PolicyError(
                self.label,
                path_text(path) or None,
                message,
                path=path_text(full) or None,
                line=line,
            )
        )

    # --- one rule --------------------------------------------------------------------------

    def rule(self, raw: Any, *, label: str | None) -> RuleSpec | None:
        self.label = label
        self.conditions = 0
        if not isinstance(raw, Mapping):
            self.error((), "a rule must be a mapping")
            return None
        errors_before = len(self.errors)
        for key in raw:
            if key not in RULE_KEYS:
                self.error((str(key),), f"unknown key; allowed keys: {', '.join(RULE_KEYS)}")

        name = raw.get("name")
        if name is None:
            self.error(("name",), "is required")
        elif not isinstance(name, str) or not name.strip():
            self.error(("name",), "must be a non-empty string")
        elif len(name) > MAX_NAME_LENGTH:
            self.error(("name",), f"must be at most {MAX_NAME_LENGTH} characters")
        elif _has_control(name) or not _text_ok(name):
            self.error(("name",), "must not contain control characters")

        description = self._text(raw, "description", MAX_DESCRIPTION_LENGTH)
        message = self._text(raw, "message", MAX_MESSAGE_LENGTH)

        action = raw.get("action")
        if action is None:
            self.error(("action",), "is required")
        else:
            problem = action_pattern_problem(action)
            if problem is not None:
                self.error(("action",), f"invalid action pattern: {problem}")

        effect = raw.get("effect")
        if effect is None:
            self.error(("effect",), "is required")
        elif effect not in EFFECTS:
            self.error(("effect",), f"must be one of {', '.join(EFFECTS)}, not {effect!r}")

        when = self._when(raw.get("when"))
        unless = self._unless(raw.get("unless"))
        if self.conditions > MAX_CONDITIONS:
            self.error(("when",), f"at most {MAX_CONDITIONS} conditions per rule")
        max_amount = self._positive_number(raw, ("max_amount",))
        amount_field = raw.get("amount_field", "amount")
        problem = field_path_problem(amount_field, wildcard=False)
        if problem is not None:
            self.error(("amount_field",), problem)
        limit = self._limit(raw.get("limit"))
        approval = self._approval(raw.get("approval"))
        environments = self._environments(raw.get("environments"))
        enabled = raw.get("enabled", True)
        if not isinstance(enabled, bool):
            self.error(("enabled",), "must be true or false")
        mode = raw.get("mode", ENFORCE)
        if mode not in MODES:
            self.error(("mode",), f"must be one of {', '.join(MODES)}, not {mode!r}")

        if len(self.errors) > errors_before:
            return None
        return RuleSpec(
            name=name,
            action=action,
            effect=effect,
            description=description,
            message=message,
            when=when,
            unless=unless,
            max_amount=max_amount,
            amount_field=amount_field,
            limit=limit,
            environments=environments,
            **approval,
            enabled=enabled,
            mode=mode,
        )

    def _text(self, raw: Mapping[Any, Any], key: str, max_length: int) -> str:
        value = raw.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            self.error((key,), "must be a string")
            return ""
        if len(value) > max_length:
            self.error((key,), f"must be at most {max_length} characters")
        elif not _text_ok(value):
            self.error((key,), "must not contain NUL characters or unpaired surrogates")
        return value

    # --- conditions ------------------------------------------------------------------------

    def _when(self, raw: Any) -> Expr | None:
        if raw is None:
            return None
        return self._expr(raw, ("when",), depth=0)

    def _unless(self, raw: Any) -> tuple[Expr, ...]:
        if raw is None:
            return ()
        if isinstance(raw, Mapping):
            expr = self._expr(raw, ("unless",), depth=0)
            return (expr,) if expr is not None else ()
        if not isinstance(raw, list) or not raw:
            self.error(("unless",), "must be a non-empty list of exceptions")
            return ()
        found = [self._expr(item, ("unless", index), depth=1) for index, item in enumerate(raw)]
        return tuple(expr for expr in found if expr is not None)

    def _expr(self, raw: Any, path: Path, depth: int) -> Expr | None:
        if depth > MAX_DEPTH:
            self.error(path, f"conditions are nested more than {MAX_DEPTH} levels deep")
            return None
        if isinstance(raw, list):
            if not raw:
                self.error(path, "must not be an empty list")
                return None
            items = [self._expr(item, (*path, i), depth + 1) for i, item in enumerate(raw)]
            if any(item is None for item in items):
                return None
            return AllOf(tuple(items))  # type: ignore[arg-type]
        if not isinstance(raw, Mapping):
            self.error(path, "must be a condition {field, op, value}, a list, or any/all/not")
            return None
        groups = [key for key in GROUP_KEYS if key in raw]
        if groups:
            if len(raw) != 1:
                extra = ", ".join(str(key) for key in raw if key != groups[0])
                self.error(path, f"'{groups[0]}' must stand alone (also found: {extra})")
                return None
            key = groups[0]
            inner = raw[key]
            if key == "not":
                item = self._expr(inner, (*path, "not"), depth + 1)
                return Not(item) if item is not None else None
            if not isinstance(inner, list) or not inner:
                self.error((*path, key), "must be a non-empty list of conditions")
                return None
            items = [self._expr(item, (*path, key, i), depth + 1) for i, item in enumerate(inner)]
            if any(item is None for item in items):
                return None
            return (AnyOf if key == "any" else AllOf)(tuple(items))  # type: ignore[arg-type]
        return self._condition(raw, path)

    def _condition(self, raw: Mapping[Any, Any], path: Path) -> Cond | None:
        self.conditions += 1
        bad = False
        for key in raw:
            if key not in CONDITION_KEYS:
                self.error(
                    (*path, str(key)),
                    "unknown key; allowed keys: field, op, value (or any/all/not)",
                )
                bad = True
        for key in ("field", "op"):
            if key not in raw:
                self.error((*path, key), "is required")
                bad = True
        if bad:
            return None
        field_name, op = raw["field"], raw["op"]
        problem = field_path_problem(field_name)
        if problem is not None:
            self.error((*path, "field"), problem)
            return None
        if op not in OPS:
            self.error((*path, "op"), f"unknown operator {op!r}; use one of {', '.join(OPS)}")
            return None
        if "value" not in raw:
            if op != "exists":
                self.error((*path, "value"), "is required")
                return None
            return Cond(field_name, op, True)
        value = raw["value"]
        list_name = None
        if isinstance(value, str) and value.startswith(LIST_REF_PREFIX):
            list_name = value[len(LIST_REF_PREFIX) :]
            if op not in LIST_OPS:
                self.error(
                    (*path, "value"),
                    f"a list may only be named with {', '.join(LIST_OPS)}, not '{op}'",
                )
                return None
            if self.lists is None:
                self.error((*path, "value"), "lists can only be used in an agent's policy")
                return None
            if list_name not in self.lists:
                known = ", ".join(sorted(self.lists)) or "none"
                self.error((*path, "value"), f"unknown list {list_name!r} (defined: {known})")
                return None
            value = self.lists[list_name]
        elif isinstance(value, list):
            value = tuple(value)
        problem = _value_problem(op, value)
        if problem is not None:
            where = f"list {list_name!r}: " if list_name else ""
            self.error((*path, "value"), where + problem)
            return None
        return Cond(field_name, op, value, list_name)

    # --- amounts, limits, approval, environments -------------------------------------------

    def _positive_number(self, raw: Mapping[Any, Any], path: Path) -> Decimal | None:
        key = path[-1]
        value = raw.get(key)
        if value is None:
            return None
        amount = to_decimal(value) if isinstance(value, (int, float, str, Decimal)) else None
        if amount is None:
            self.error(path, f"must be a number, not {value!r}")
            return None
        if amount <= 0:
            self.error(path, "must be greater than 0")
            return None
        return amount

    def _duration(self, path: Path, value: Any) -> int | None:
        try:
            return parse_duration(value)
        except (ValueError, TypeError) as exc:
            self.error(path, str(exc))
            return None

    def _limit(self, raw: Any) -> Limit | None:
        if raw is None:
            return None
        if not isinstance(raw, Mapping):
            self.error(("limit",), "must be {count: N, per: 1h} or {sum: field, over: X, per: 1d}")
            return None
        for key in raw:
            if key not in LIMIT_KEYS:
                self.error(
                    ("limit", str(key)), f"unknown key; allowed keys: {', '.join(LIMIT_KEYS)}"
                )
        per = None
        if "per" not in raw:
            self.error(("limit", "per"), "is required (a window such as 1h or 1d)")
        else:
            per = self._duration(("limit", "per"), raw["per"])
        by = raw.get("by")
        if by is not None:
            problem = field_path_problem(by, wildcard=False)
            if problem is not None:
                self.error(("limit", "by"), problem)
                by = None
        if ("count" in raw) == ("sum" in raw):
            self.error(("limit",), "give exactly one of count or sum")
            return None
        if "count" in raw:
            if "over" in raw:
                self.error(("limit", "over"), "only goes with sum")
            count = raw["count"]
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                self.error(
                    ("limit", "count"), f"must be a whole number of at least 1, not {count!r}"
                )
                return None
            return Limit(kind="count", per_seconds=per, count=count, by=by) if per else None
        sum_field = raw["sum"]
        problem = field_path_problem(sum_field, wildcard=False)
        if problem is not None:
            self.error(("limit", "sum"), problem)
        if "over" not in raw or raw["over"] is None:
            self.error(("limit", "over"), "is required with sum")
            over = None
        else:
            over = self._positive_number(raw, ("limit", "over"))
        if problem is not None or over is None or per is None:
            return None
        return Limit(kind="sum", per_seconds=per, field=sum_field, over=over, by=by)

    def _approval(self, raw: Any) -> dict[str, Any]:
        """The rule's ``approval`` block as RuleSpec keyword arguments."""
        out: dict[str, Any] = {}
        if raw is None:
            return out
        if not isinstance(raw, Mapping):
            self.error(
                ("approval",), "must be a mapping such as {timeout: 30m, approvals_required: 2}"
            )
            return out
        for key in raw:
            if key not in APPROVAL_KEYS:
                self.error(
                    ("approval", str(key)),
                    f"unknown key; allowed keys: {', '.join(APPROVAL_KEYS)}",
                )
        if raw.get("timeout") is not None:
            out["approval_timeout"] = self._duration(("approval", "timeout"), raw["timeout"])
        required = raw.get("approvals_required", 1)
        if not isinstance(required, int) or isinstance(required, bool) or not 1 <= required <= 20:
            self.error(
                ("approval", "approvals_required"),
                f"must be a whole number from 1 to 20, not {required!r}",
            )
        else:
            out["approvals_required"] = required
        if raw.get("approvers") is not None:
            out["approvers"] = self._approvers(raw["approvers"], ("approval", "approvers"))
        on_timeout = raw.get("on_timeout", "deny")
        if on_timeout not in ON_TIMEOUT:
            self.error(
                ("approval", "on_timeout"),
                f"must be one of {', '.join(ON_TIMEOUT)}, not {on_timeout!r}",
            )
        else:
            out["on_timeout"] = on_timeout
        escalate_to = raw.get("escalate_to")
        if escalate_to is not None:
            out["escalate_to"] = self._approvers(escalate_to, ("approval", "escalate_to"))
        if raw.get("escalate_timeout") is not None:
            out["escalate_timeout"] = self._duration(
                ("approval", "escalate_timeout"), raw["escalate_timeout"]
            )
        if on_timeout == "escalate" and not escalate_to:
            self.error(("approval", "escalate_to"), "is required when on_timeout is escalate")
        if on_timeout != "escalate":
            for key in ("escalate_to", "escalate_timeout"):
                if raw.get(key) is not None:
                    self.error(("approval", key), "applies only when on_timeout is escalate")
        channel = raw.get("slack_channel")
        if channel is not None:
            if not isinstance(channel, str) or not _SLACK_CHANNEL_RE.fullmatch(channel):
                self.error(
                    ("approval", "slack_channel"),
                    "must be a Slack channel name such as #finance-approvals or a channel id",
                )
            else:
                out["slack_channel"] = channel
        redact = raw.get("redact")
        if redact is not None:
            if not isinstance(redact, list) or len(redact) > MAX_REDACT:
                self.error(
                    ("approval", "redact"),
                    f"must be a list of at most {MAX_REDACT} argument paths",
                )
            else:
                for index, path in enumerate(redact):
                    problem = field_path_problem(path)
                    if problem is None and path.startswith("$"):
                        problem = "must name an argument, not a context field"
                    if problem is not None:
                        self.error(("approval", "redact", index), problem)
                out["redact"] = tuple(dict.fromkeys(p for p in redact if isinstance(p, str)))
        grants = raw.get("grants")
        if grants is not None:
            if not isinstance(grants, list) or any(g not in GRANT_KINDS for g in grants):
                self.error(
                    ("approval", "grants"),
                    f"must be a list of grant kinds: {', '.join(GRANT_KINDS)}",
                )
            else:
                out["grants"] = tuple(kind for kind in GRANT_KINDS if kind in grants)
        return out

    def _approvers(self, raw: Any, path: Path) -> tuple[str, ...]:
        if not isinstance(raw, list) or not raw or len(raw) > MAX_APPROVERS:
            self.error(
                path,
                f"must be a list of 1 to {MAX_APPROVERS} approvers such as role:admin, "
                "group:finance or user:alice@example.com",
            )
            return ()
        out: list[str] = []
        for index, item in enumerate(raw):
            problem = approver_problem(item)
            if problem is not None:
                self.error((*path, index), problem)
            else:
                kind, _, value = item.partition(":")
                value = value.strip()
                out.append(f"{kind}:{value.lower() if kind != 'group' else value}")
        return tuple(dict.fromkeys(out))

    def _environments(self, raw: Any) -> frozenset[str]:
        if raw is None:
            return ENVIRONMENTS
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not raw:
            self.error(("environments",), "must be a non-empty list of test and/or live")
            return ENVIRONMENTS
        unknown = [env for env in raw if env not in ENVIRONMENTS]
        if unknown:
            self.error(("environments",), f"only test and live are allowed, not {unknown[0]!r}")
            return ENVIRONMENTS
        return frozenset(raw)


def _has_control(text: str) -> bool:
    return any(ord(ch) < 32 or ord(ch) == 127 for ch in text)


def _value_problem(op: str, value: Any) -> str | None:
    """Why ``value`` does not suit operator ``op`` (lists arrive as tuples)."""
    if op in NUMERIC_OPS:
        if not _is_number(value) or to_decimal(value) is None:
            return f"'{op}' needs a number"
        return None
    if op in ("in", "not_in"):
        if not isinstance(value, tuple):
            return f"'{op}' needs a list (or $lists.NAME)"
        if len(value) > MAX_LIST_ITEMS:
            return f"at most {MAX_LIST_ITEMS} values"
        if not all(map(_is_plain, value)):
            return f"'{op}' needs a list of plain values (strings, numbers, booleans, null)"
        return None
    if op in ("startswith", "endswith", "ieq", "icontains"):
        return None if isinstance(value, str) and _is_plain(value) else f"'{op}' needs a string"
    if op == "contains":
        return None if _is_plain(value) else "'contains' needs a string, number or boolean"
    if op == "exists":
        return None if isinstance(value, bool) else "'exists' needs true or false"
    if op == "matches":
        if not isinstance(value, str) or not value or not _text_ok(value):
            return "'matches' needs a non-empty regular expression string"
        if len(value) > MAX_REGEX_LENGTH:
            return f"regular expression longer than {MAX_REGEX_LENGTH} characters"
        try:
            regex.compile(value)
        except (regex.error, ValueError, OverflowError, RecursionError) as exc:
            return f"invalid regular expression: {exc}"
        return None
    if op == "cidr":
        items = value if isinstance(value, tuple) else (value,)
        if not items:
            return "'cidr' needs a network (10.0.0.0/8) or a list of networks"
        for item in items:
            try:
                ipaddress.ip_network(item, strict=False) if isinstance(item, str) else None
            except ValueError:
                return f"{item!r} is not a network such as 10.0.0.0/8"
            if not isinstance(item, str):
                return f"{item!r} is not a network such as 10.0.0.0/8"
        return None
    if op == "email_domain_in":
        if not isinstance(value, tuple) or not value:
            return "'email_domain_in' needs a list of domains (or $lists.NAME)"
        for item in value:
            if (
                not isinstance(item, str)
                or not item.strip(" .")
                or "@" in item
                or any(c.isspace() for c in item.strip())
            ):
                return f"{item!r} is not a domain such as example.com"
        return None
    if op in ("eq", "ne"):
        if _is_plain(value) or (isinstance(value, tuple) and all(map(_is_plain, value))):
            return None
        return f"'{op}' needs a plain value or a list of plain values"
    return f"unknown operator {op!r}"


def _lists(raw: Any, errors: list[PolicyError], lines: Mapping[Path, int]) -> dict[str, tuple]:
    validator = _Validator(errors, lists=None, lines=lines)
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        validator.error(("lists",), "must map list names to lists of values")
        return {}
    if len(raw) > MAX_LISTS:
        validator.error(("lists",), f"at most {MAX_LISTS} lists")
        return {}
    lists: dict[str, tuple] = {}
    for name, items in raw.items():
        if not isinstance(name, str) or _LIST_NAME_RE.fullmatch(name) is None:
            validator.error(("lists", str(name)), "list names are 1-64 letters, digits, _ or -")
            continue
        if not isinstance(items, list):
            validator.error(("lists", name), "must be a list of values")
            continue
        if len(items) > MAX_LIST_ITEMS:
            validator.error(("lists", name), f"at most {MAX_LIST_ITEMS} values")
            continue
        bad = next((i for i, item in enumerate(items) if not _is_plain(item)), None)
        if bad is not None:
            validator.error(("lists", name, bad), "must be a string, number, boolean or null")
            continue
        lists[name] = tuple(items)
    return lists


def _rule_label(raw: Any, index: int | None) -> str | None:
    name = raw.get("name") if isinstance(raw, Mapping) else None
    usable = isinstance(name, str) and name.strip() and len(name) <= MAX_NAME_LENGTH
    if usable and not _has_control(name):
        return name
    return f"rules[{index}]" if index is not None else None


def parse_policy_document(
    text: str | bytes | Mapping[str, Any],
    *,
    format: str | None = None,
    max_rules: int | None = None,
) -> PolicyDocument:
    """Parse and validate a whole document; raises PolicyDocumentError listing every problem."""
    if isinstance(text, Mapping):
        data, lines = text, {}
    else:
        data, lines = load_text(text, format)
    if not isinstance(data, Mapping):
        raise PolicyDocumentError(
            [PolicyError(None, None, "document must be a mapping with agent, default and rules")]
        )
    errors: list[PolicyError] = []
    top = _Validator(errors, lists=None, lines=lines)
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            top.error((str(key),), f"unknown key; allowed keys: {', '.join(TOP_LEVEL_KEYS)}")

    agent = data.get("agent")
    if agent is None:
        top.error(("agent",), "is required")
    elif not isinstance(agent, str) or not agent.strip():
        top.error(("agent",), "must be a non-empty string")

    default = data.get("default", "allow")
    if default not in DEFAULTS:
        top.error(("default",), f"must be allow or block, not {default!r}")

    lists = _lists(data.get("lists"), errors, lines)

    raw_rules = data.get("rules")
    if raw_rules is None:
        raw_rules = []
    if not isinstance(raw_rules, list):
        top.error(("rules",), "must be a list")
        raw_rules = []
    if len(raw_rules) > MAX_RULES:
        top.error(("rules",), f"at most {MAX_RULES} rules per document")
        raise PolicyDocumentError(errors)
    if max_rules is not None and len(raw_rules) > max_rules:
        top.error(
            ("rules",),
            f"your plan allows at most {max_rules} rules per agent; "
            f"this document has {len(raw_rules)}",
        )

    specs: list[RuleSpec] = []
    seen_names: set[str] = set()
    for index, raw in enumerate(raw_rules):
        validator = _Validator(errors, lists=lists, lines=lines, base=("rules", index))
        label = _rule_label(raw, index)
        name = raw.get("name") if isinstance(raw, Mapping) else None
        if isinstance(name, str) and name.strip():
            if name in seen_names:
                validator.label = label
                validator.error(("name",), "duplicate rule name")
            seen_names.add(name)
        spec = validator.rule(raw, label=label)
        if spec is not None:
            specs.append(spec)

    if errors:
        raise PolicyDocumentError(errors)
    return PolicyDocument(agent=agent, default=default, rules=tuple(specs), lists=lists)


def rule_spec_from_mapping(
    mapping: Any,
    *,
    lists: Mapping[str, tuple[Any, ...]] | None = None,
    lines: Mapping[Path, int] | None = None,
    id: str = "",
    position: int = 0,
    scope: str = "agent",
) -> RuleSpec:
    """Validate one rule (the keys of a document's rule) into a RuleSpec: for the API, the
    form, the admin and stored rows. ``lists`` are the agent's lists (None: none allowed)."""
    errors: list[PolicyError] = []
    validator = _Validator(errors, lists=lists, lines=lines or {})
    spec = validator.rule(mapping, label=_rule_label(mapping, None))
    if errors or spec is None:
        raise PolicyDocumentError(errors or [PolicyError(None, None, "invalid rule")])
    if id or position or scope != "agent":
        spec = replace(spec, id=id, position=position, scope=scope)
    return spec


def rule_mapping_from_text(text: str) -> tuple[Any, dict[Path, int]]:
    """One rule written as YAML (or JSON), with the line of each key (the form's YAML box)."""
    return load_text(text)


# ---------------------------------------------------------------------------
# Dumping
# ---------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Decimals become ints or floats (strings when a float would round them), tuples lists,
    so YAML and JSON print plain numbers."""
    if isinstance(value, Decimal):
        if value == value.to_integral_value():
            return int(value)
        as_float = float(value)
        return as_float if Decimal(repr(as_float)) == value else str(value)
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(item) for item in value)
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return value


def expr_to_data(expr: Expr) -> Any:
    if isinstance(expr, Cond):
        value = LIST_REF_PREFIX + expr.list_name if expr.list_name else _plain(expr.value)
        return {"field": expr.field, "op": expr.op, "value": value}
    if isinstance(expr, Not):
        return {"not": expr_to_data(expr.item)}
    items = [expr_to_data(item) for item in expr.items]
    return {"any": items} if isinstance(expr, AnyOf) else {"all": items}


def rule_to_mapping(rule: RuleSpec) -> dict[str, Any]:
    """The document form of one rule, with default values left out."""
    out: dict[str, Any] = {"name": rule.name}
    if rule.description:
        out["description"] = rule.description
    out["action"] = rule.action
    out["effect"] = rule.effect
    if rule.message:
        out["message"] = rule.message
    if rule.when is not None:
        if isinstance(rule.when, AllOf):
            out["when"] = [expr_to_data(item) for item in rule.when.items]
        else:
            out["when"] = expr_to_data(rule.when)
    if rule.unless:
        out["unless"] = [expr_to_data(item) for item in rule.unless]
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
        if limit.by:
            out["limit"]["by"] = limit.by
    approval: dict[str, Any] = {}
    if rule.approval_timeout is not None:
        approval["timeout"] = format_duration(rule.approval_timeout)
    if rule.approvals_required != 1:
        approval["approvals_required"] = rule.approvals_required
    if rule.approvers:
        approval["approvers"] = list(rule.approvers)
    if rule.on_timeout != "deny":
        approval["on_timeout"] = rule.on_timeout
    if rule.escalate_to:
        approval["escalate_to"] = list(rule.escalate_to)
    if rule.escalate_timeout is not None:
        approval["escalate_timeout"] = format_duration(rule.escalate_timeout)
    if rule.slack_channel:
        approval["slack_channel"] = rule.slack_channel
    if rule.redact:
        approval["redact"] = list(rule.redact)
    if rule.grants:
        approval["grants"] = list(rule.grants)
    if approval:
        out["approval"] = approval
    if rule.environments != ENVIRONMENTS:
        out["environments"] = sorted(rule.environments)
    if not rule.enabled:
        out["enabled"] = False
    if rule.mode != ENFORCE:
        out["mode"] = rule.mode
    return out


def dump_policy_document(
    agent: str,
    default: str,
    rules: Iterable[RuleSpec],
    format: str = "yaml",
    lists: Mapping[str, Iterable[Any]] | None = None,
) -> str:
    """Write a document that ``parse_policy_document`` reads back to the same rules."""
    document: dict[str, Any] = {"agent": agent, "default": default}
    if lists:
        document["lists"] = {name: _plain(list(items)) for name, items in lists.items()}
    document["rules"] = [rule_to_mapping(rule) for rule in rules]
    return document_text(document, format)


def document_text(document: Any, format: str = "yaml") -> str:
    """A document (or any plain data: a list of rules) as ``dump_policy_document`` writes it;
    stored policy versions are shown through this, so they read as the live document does."""
    if format == "json":
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if format == "yaml":
        return yaml.safe_dump(
            document, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100
        )
    raise ValueError(f"format must be 'yaml' or 'json', not {format!r}")


__all__ = [
    "MAX_DURATION_SECONDS",
    "PolicyDocument",
    "PolicyDocumentError",
    "PolicyError",
    "document_text",
    "dump_policy_document",
    "field_path_problem",
    "load_text",
    "parse_policy_document",
    "path_parts",
    "path_text",
    "rule_mapping_from_text",
    "rule_spec_from_mapping",
    "rule_to_mapping",
]
