"""Pure policy evaluation: which rule decides a tool call, and why.

No Django, no ORM, no I/O. The service layer loads an agent's rules, turns them into
`RuleSpec`s, compiles them once (`compile_policy`) and, for every call:

1. asks `CompiledPolicy.limit_queries(action, environment)` which running totals it needs
   (an empty tuple for nearly every call),
2. fetches those totals from the database,
3. calls `CompiledPolicy.evaluate(action, arguments, environment, totals)`.

Effects rank block > requires_approval > allow; the most restrictive applied effect wins,
ties go to the first rule by (position, agent scope before org scope, input order).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import regex

ALLOW = "allow"
REQUIRES_APPROVAL = "requires_approval"
BLOCK = "block"
EFFECTS = (ALLOW, REQUIRES_APPROVAL, BLOCK)
DEFAULTS = (ALLOW, BLOCK)
ENVIRONMENTS = frozenset({"test", "live"})
SCOPES = ("agent", "org")
LIMIT_KINDS = ("count", "sum")
OPS = (
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "in",
    "not_in",
    "contains",
    "startswith",
    "matches",
    "exists",
)
NO_POLICY_CONFIGURED = "no_policy_configured"

MAX_PATTERN_LENGTH = 200
MAX_FIELD_LENGTH = 200
MAX_REGEX_LENGTH = 256
REGEX_TIMEOUT_SECONDS = 0.01
MAX_REGEX_SUBJECT_LENGTH = 4096
MAX_DURATION_SECONDS = 366 * 86400
CANDIDATE_CACHE_SIZE = 4096

_EFFECT_RANK = {ALLOW: 0, REQUIRES_APPROVAL: 1, BLOCK: 2}
_MISSING: Any = object()


class InvalidPolicy(ValueError):
    """A rule cannot be compiled; the message says which rule and why."""


# ---------------------------------------------------------------------------
# Data types
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Condition:
    field: str
    op: str
    value: Any = None


@dataclass(frozen=True, slots=True)
class Limit:
    kind: str  # "count" | "sum"
    per_seconds: int
    count: int | None = None
    field: str | None = None
    over: Decimal | None = None


@dataclass(frozen=True, slots=True)
class RuleSpec:
    id: str
    name: str
    action: str
    effect: str
    conditions: tuple[Condition, ...] = ()
    max_amount: Decimal | None = None
    amount_field: str = "amount"
    limit: Limit | None = None
    environments: frozenset[str] = field(default_factory=lambda: ENVIRONMENTS)
    approval_timeout: int | None = None
    approvals_required: int = 1
    enabled: bool = True
    position: int = 0
    scope: str = "agent"


@dataclass(frozen=True, slots=True)
class LimitQuery:
    rule_id: str
    action_pattern: str
    kind: str
    field: str | None
    per_seconds: int


@dataclass(frozen=True, slots=True)
class MatchedRule:
    rule: RuleSpec
    effect: str
    reason: str


@dataclass(frozen=True, slots=True)
class Decision:
    decision: str
    rule: RuleSpec | None
    reason: str
    matched: tuple[MatchedRule, ...] = ()
    approval_timeout: int | None = None
    approvals_required: int = 1


# ---------------------------------------------------------------------------
# Durations
# ---------------------------------------------------------------------------

_DURATION_RE = re.compile(r"\s*(\d{1,12})\s*([smhd]?)\s*")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str | int) -> int:
    """`30s`, `15m`, `1h`, `1d`, `7d` or plain seconds (`90`, 90) -> seconds."""
    if isinstance(text, bool):
        raise ValueError(f"invalid duration {text!r}: use e.g. 30s, 15m, 1h, 1d or seconds")
    if isinstance(text, int):
        seconds = text
    elif isinstance(text, str) and (m := _DURATION_RE.fullmatch(text)):
        seconds = int(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    else:
        raise ValueError(f"invalid duration {text!r}: use e.g. 30s, 15m, 1h, 1d or seconds")
    if seconds <= 0:
        raise ValueError(f"invalid duration {text!r}: must be positive")
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"invalid duration {text!r}: must be at most 366d")
    return seconds


def format_duration(seconds: int) -> str:
    """Inverse of `parse_duration`: the largest unit that divides exactly (3600 -> `1h`)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# ---------------------------------------------------------------------------
# Action patterns
# ---------------------------------------------------------------------------

_SEGMENT_RE = re.compile(r"[^\s.]+")


def action_pattern_problem(pattern: object) -> str | None:
    """Why `pattern` is not a valid action pattern, or None when it is."""
    if not isinstance(pattern, str):
        return "must be a string"
    if not pattern:
        return "must not be empty"
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"must be at most {MAX_PATTERN_LENGTH} characters"
    for segment in pattern.split("."):
        if not segment:
            return f"{pattern!r} has an empty segment (check for leading, trailing or double dots)"
        if not _SEGMENT_RE.fullmatch(segment):
            return f"{pattern!r} contains whitespace"
        if "**" in segment:
            return f"{pattern!r}: '**' is not supported; a trailing '*' segment matches the rest"
    return None


def action_pattern_is_valid(pattern: object) -> bool:
    return action_pattern_problem(pattern) is None


def validate_action_pattern(pattern: object) -> str:
    """Return the pattern unchanged or raise ValueError saying what is wrong."""
    problem = action_pattern_problem(pattern)
    if problem is not None:
        raise ValueError(f"invalid action pattern: {problem}")
    return pattern  # type: ignore[return-value]


def _is_glob(pattern: str) -> bool:
    return "*" in pattern


def _compile_glob(pattern: str) -> Callable[[str], bool]:
    if pattern == "*":
        return lambda action: True
    segments = pattern.split(".")
    parts = []
    for index, segment in enumerate(segments):
        if segment == "*":
            if index == len(segments) - 1:
                parts.append(r"[^.]+(?:\.[^.]+)*")
            else:
                parts.append(r"[^.]+")
        else:
            parts.append("[^.]*".join(re.escape(piece) for piece in segment.split("*")))
    compiled = re.compile(r"\.".join(parts))
    fullmatch = compiled.fullmatch
    return lambda action: fullmatch(action) is not None


def action_matches(pattern: str, action: str) -> bool:
    """Does `action` match `pattern`? (Uncached helper for forms and tests.)"""
    if not _is_glob(pattern):
        return pattern == action
    return _compile_glob(pattern)(action)


# ---------------------------------------------------------------------------
# Values, numbers, dot paths
# ---------------------------------------------------------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def to_decimal(value: object) -> Decimal | None:
    """A finite Decimal from a number or numeric string, else None. Bools are not numbers."""
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, Decimal):
            result = value
        elif isinstance(value, int):
            result = Decimal(value)
        elif isinstance(value, float):
            result = Decimal(repr(value))
        elif isinstance(value, str) and len(value) <= 64:
            result = Decimal(value.strip())
        else:
            return None
    except (InvalidOperation, ValueError):
        return None
    return result if result.is_finite() else None


def format_number(value: Decimal | int | float) -> str:
    """`Decimal('100.00')` -> `100`, `Decimal('12.50')` -> `12.5`; never an exponent."""
    number = to_decimal(value)
    if number is None:
        return str(value)
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(), "f")


def _harmonise(a: Any, b: Any) -> tuple[Any, Any]:
    # Decimal and float compare exactly by binary value in Python, so 0.1 != Decimal("0.1").
    # JSON floats are meant as written, so compare them as the decimal they print as.
    if type(a) is float and isinstance(b, Decimal):
        return Decimal(repr(a)), b
    if type(b) is float and isinstance(a, Decimal):
        return a, Decimal(repr(b))
    return a, b


def _values_equal(a: Any, b: Any) -> bool:
    a_num, b_num = _is_number(a), _is_number(b)
    if a_num or b_num:
        if not (a_num and b_num):
            return False
        a, b = _harmonise(a, b)
        try:
            return bool(a == b)
        except (InvalidOperation, TypeError):
            return False
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if a is None or b is None:
        return a is b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_values_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_values_equal(a[k], b[k]) for k in a)
    return False


def _hash_key(value: Any) -> tuple[str, Any] | None:
    """A key under which equal values (per `_values_equal`) collide; None if not hashable."""
    if isinstance(value, bool):
        return ("b", value)
    if _is_number(value):
        number = to_decimal(value)
        return ("n", number) if number is not None else None
    if isinstance(value, str):
        return ("s", value)
    if value is None:
        return ("z", None)
    return None


def _path_getter(path: str) -> Callable[[Mapping[str, Any]], Any]:
    """A function returning the value at `path` in the arguments, or `_MISSING`.

    A literal key equal to the whole path wins over the dotted walk; list items are reached
    with numeric segments (`items.0.sku`).
    """
    parts = tuple(path.split("."))
    if len(parts) == 1:
        key = parts[0]

        def get_one(arguments: Mapping[str, Any]) -> Any:
            try:
                return arguments.get(key, _MISSING)
            except (AttributeError, TypeError):
                return _MISSING

        return get_one

    def get_path(arguments: Mapping[str, Any]) -> Any:
        try:
            if path in arguments:
                return arguments[path]
        except TypeError:
            return _MISSING
        current: Any = arguments
        for part in parts:
            if isinstance(current, Mapping):
                current = current.get(part, _MISSING)
                if current is _MISSING:
                    return _MISSING
            elif isinstance(current, (list, tuple)) and part.isdigit():
                index = int(part)
                if index >= len(current):
                    return _MISSING
                current = current[index]
            else:
                return _MISSING
        return current

    return get_path


# ---------------------------------------------------------------------------
# Conditions
# ---------------------------------------------------------------------------


def _is_plain(value: object) -> bool:
    return value is None or isinstance(value, (str, bool, int, float, Decimal))


def field_path_problem(path: object) -> str | None:
    if not isinstance(path, str) or not path:
        return "must be a non-empty string"
    if len(path) > MAX_FIELD_LENGTH:
        return f"must be at most {MAX_FIELD_LENGTH} characters"
    if any(not part for part in path.split(".")):
        return f"{path!r} has an empty segment"
    return None


def condition_problem(field_path: object, op: object, value: object) -> tuple[str, str] | None:
    """(key, message) describing what is wrong with a condition, or None when it is valid."""
    problem = field_path_problem(field_path)
    if problem is not None:
        return ("field", problem)
    if op not in OPS:
        return ("op", f"unknown operator {op!r}; use one of {', '.join(OPS)}")
    if op in ("gt", "gte", "lt", "lte"):
        if not _is_number(value) or to_decimal(value) is None:
            return ("value", f"'{op}' needs a number")
    elif op in ("in", "not_in"):
        if not isinstance(value, (list, tuple, set, frozenset)):
            return ("value", f"'{op}' needs a list")
        if any(isinstance(item, (list, tuple, dict, set)) for item in value):
            return ("value", f"'{op}' needs a list of plain values")
    elif op == "startswith":
        if not isinstance(value, str):
            return ("value", "'startswith' needs a string")
    elif op == "contains":
        if not (isinstance(value, (str, bool)) or _is_number(value) or value is None):
            return ("value", "'contains' needs a string, number or boolean")
    elif op == "matches":
        if not isinstance(value, str) or not value:
            return ("value", "'matches' needs a non-empty regular expression string")
        if len(value) > MAX_REGEX_LENGTH:
            return ("value", f"regular expression longer than {MAX_REGEX_LENGTH} characters")
        try:
            regex.compile(value)
        except (regex.error, ValueError, OverflowError, RecursionError) as exc:
            return ("value", f"invalid regular expression: {exc}")
    elif op == "exists":
        if not isinstance(value, bool):
            return ("value", "'exists' needs true or false")
    elif op in ("eq", "ne") and not (
        _is_plain(value) or (isinstance(value, (list, tuple)) and all(map(_is_plain, value)))
    ):
        return ("value", f"'{op}' needs a plain value or a list of plain values")
    return None


# A compiled condition returns True (holds), False (does not hold) or None (could not be
# decided in time: a regex timeout or an oversized subject). None makes the rule fail safe.
CompiledCondition = Callable[[Mapping[str, Any]], "bool | None"]


def _compile_condition(condition: Condition) -> CompiledCondition:
    get = _path_getter(condition.field)
    op, value = condition.op, condition.value

    if op == "exists":
        wanted = bool(value)
        return lambda args: (get(args) is not _MISSING) is wanted

    if op in ("eq", "ne"):
        key = _hash_key(value)
        negate = op == "ne"
        if key is not None:

            def eq_scalar(args: Mapping[str, Any]) -> bool:
                subject = get(args)
                if subject is _MISSING:
                    return negate
                subject_key = _hash_key(subject)
                return (subject_key == key) is not negate

            return eq_scalar

        def eq_any(args: Mapping[str, Any]) -> bool:
            subject = get(args)
            if subject is _MISSING:
                return negate
            return _values_equal(subject, value) is not negate

        return eq_any

    if op in ("in", "not_in"):
        keys = frozenset(k for k in map(_hash_key, value) if k is not None)
        negate = op == "not_in"

        def member(args: Mapping[str, Any]) -> bool:
            subject = get(args)
            if subject is _MISSING:
                return negate
            subject_key = _hash_key(subject)
            return (subject_key is not None and subject_key in keys) is not negate

        return member

    if op in ("gt", "gte", "lt", "lte"):
        bound = value
        compare: Callable[[Any, Any], bool] = {
            "gt": lambda a, b: a > b,
            "gte": lambda a, b: a >= b,
            "lt": lambda a, b: a < b,
            "lte": lambda a, b: a <= b,
        }[op]

        def ordered(args: Mapping[str, Any]) -> bool:
            subject = get(args)
            if subject is _MISSING or not _is_number(subject):
                return False
            a, b = _harmonise(subject, bound)
            try:
                return bool(compare(a, b))
            except (InvalidOperation, TypeError):
                return False

        return ordered

    if op == "contains":
        needle = value

        def contains(args: Mapping[str, Any]) -> bool:
            subject = get(args)
            if isinstance(subject, str):
                return isinstance(needle, str) and needle in subject
            if isinstance(subject, (list, tuple)):
                return any(_values_equal(item, needle) for item in subject)
            return False

        return contains

    if op == "startswith":
        prefix = value

        def startswith(args: Mapping[str, Any]) -> bool:
            subject = get(args)
            return isinstance(subject, str) and subject.startswith(prefix)

        return startswith

    if op == "matches":
        search = regex.compile(value).search

        def matches(args: Mapping[str, Any]) -> bool | None:
            subject = get(args)
            if not isinstance(subject, str):
                return False
            if len(subject) > MAX_REGEX_SUBJECT_LENGTH:
                return None
            try:
                return search(subject, timeout=REGEX_TIMEOUT_SECONDS) is not None
            except TimeoutError:
                return None

        return matches

    raise InvalidPolicy(f"unknown operator {op!r}")  # unreachable after validation


# ---------------------------------------------------------------------------
# Compiled rules
# ---------------------------------------------------------------------------


class _Rule:
    """A rule ready for the hot path. Internal to this module."""

    __slots__ = (
        "conditions",
        "get_amount",
        "get_limit_field",
        "index",
        "limit_query",
        "limit_texts",
        "max_amount",
        "max_amount_text",
        "order",
        "over",
        "regex_conditions",
        "spec",
    )

    def __init__(self, spec: RuleSpec, index: int) -> None:
        self.spec = spec
        self.index = index
        self.order = (spec.position, 0 if spec.scope == "agent" else 1, index)
        self.conditions = tuple(_compile_condition(c) for c in spec.conditions)
        self.regex_conditions = tuple(c for c in spec.conditions if c.op == "matches")
        self.get_amount = _path_getter(spec.amount_field) if spec.max_amount is not None else None
        # Numbers normalised to Decimal (a float max_amount would compare by binary value) and
        # reason fragments that do not depend on the call, formatted once.
        self.max_amount = to_decimal(spec.max_amount) if spec.max_amount is not None else None
        self.over = to_decimal(spec.limit.over) if spec.limit is not None else None
        self.max_amount_text = (
            format_number(spec.max_amount) if spec.max_amount is not None else None
        )
        limit = spec.limit
        self.get_limit_field = (
            _path_getter(limit.field) if limit is not None and limit.kind == "sum" else None
        )
        self.limit_texts = (
            (format_duration(limit.per_seconds), format_number(limit.over or 0))
            if limit is not None
            else None
        )
        self.limit_query = (
            LimitQuery(spec.id, spec.action, limit.kind, limit.field, limit.per_seconds)
            if limit is not None
            else None
        )

    def apply(
        self, arguments: Mapping[str, Any], totals: Mapping[str, Any] | None
    ) -> tuple[str, str] | None:
        """(applied effect, reason) when the rule matches the call, else None."""
        undecided = False
        for condition in self.conditions:
            holds = condition(arguments)
            if holds is False:
                return None
            if holds is None:
                undecided = True
        spec = self.spec
        if undecided:
            if spec.effect == ALLOW:
                return None
            # Name the fields only: the pattern itself may be a detection rule worth keeping
            # from the agent reading the reason.
            fields = ", ".join(sorted({c.field for c in self.regex_conditions}))
            return (
                spec.effect,
                f"pattern condition on {fields} could not be checked safely (input too long "
                f"or pattern too slow), so rule '{spec.name}' applies",
            )
        if spec.max_amount is None and spec.limit is None:
            return spec.effect, _plain_reason(spec)
        outcomes = []
        if spec.max_amount is not None:
            outcomes.append(self._amount_outcome(arguments))
        if spec.limit is not None:
            outcomes.append(self._limit_outcome(arguments, totals))
        # The more restrictive outcome; on equal effects max() keeps the first (max_amount).
        return max(outcomes, key=lambda outcome: _EFFECT_RANK[outcome[0]])

    def _amount_outcome(self, arguments: Mapping[str, Any]) -> tuple[str, str]:
        spec = self.spec
        assert self.get_amount is not None and self.max_amount is not None
        raw = self.get_amount(arguments)
        amount = None if raw is _MISSING else to_decimal(raw)
        limit_text = self.max_amount_text
        if amount is None:
            what = "missing" if raw is _MISSING else "not a number"
            return (
                spec.effect,
                f"{spec.amount_field} is {what}, so max_amount {limit_text} of rule "
                f"'{spec.name}' cannot be checked",
            )
        if amount <= self.max_amount:
            return (
                ALLOW,
                f"{spec.amount_field} {format_number(amount)} within max_amount {limit_text} "
                f"of rule '{spec.name}'",
            )
        return (
            spec.effect,
            f"{spec.amount_field} {format_number(amount)} exceeds max_amount {limit_text} "
            f"of rule '{spec.name}'",
        )

    def _limit_outcome(
        self, arguments: Mapping[str, Any], totals: Mapping[str, Any] | None
    ) -> tuple[str, str]:
        spec = self.spec
        limit = spec.limit
        assert limit is not None and self.limit_texts is not None
        window, over_text = self.limit_texts
        raw_total = totals.get(spec.id) if totals is not None else None
        total = to_decimal(raw_total) if raw_total is not None else None
        if total is None:
            return (
                spec.effect,
                f"running total for rule '{spec.name}' is unavailable, so its limit applies",
            )
        if limit.kind == "count":
            assert limit.count is not None
            nth = int(total) + 1
            if nth > limit.count:
                return (
                    spec.effect,
                    f"{_ordinal(nth)} call in {window} exceeds limit of {limit.count} per "
                    f"{window} of rule '{spec.name}'",
                )
            return (
                ALLOW,
                f"{_ordinal(nth)} call in {window} within limit of {limit.count} per {window} "
                f"of rule '{spec.name}'",
            )
        assert self.get_limit_field is not None and self.over is not None
        raw = self.get_limit_field(arguments)
        value = None if raw is _MISSING else to_decimal(raw)
        if value is None:
            what = "missing" if raw is _MISSING else "not a number"
            return (
                spec.effect,
                f"{limit.field} is {what}, so the {window} limit of rule '{spec.name}' "
                "cannot be checked",
            )
        new_total = total + value
        if new_total > self.over:
            return (
                spec.effect,
                f"{limit.field} total {format_number(new_total)} in {window} would exceed "
                f"{over_text} of rule '{spec.name}'",
            )
        return (
            ALLOW,
            f"{limit.field} total {format_number(new_total)} in {window} within "
            f"{over_text} of rule '{spec.name}'",
        )


def _plain_reason(spec: RuleSpec) -> str:
    if spec.effect == BLOCK:
        return f"blocked by rule '{spec.name}'"
    if spec.effect == REQUIRES_APPROVAL:
        return f"rule '{spec.name}' requires approval"
    return f"allowed by rule '{spec.name}'"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def rule_spec_problems(spec: RuleSpec) -> list[tuple[str, str]]:
    """Every (field, message) wrong with a RuleSpec; empty when it compiles."""
    problems: list[tuple[str, str]] = []
    if not isinstance(spec.name, str) or not spec.name.strip():
        problems.append(("name", "must be a non-empty string"))
    if spec.effect not in EFFECTS:
        problems.append(("effect", f"must be one of {', '.join(EFFECTS)}"))
    pattern_problem = action_pattern_problem(spec.action)
    if pattern_problem is not None:
        problems.append(("action", pattern_problem))
    for index, condition in enumerate(spec.conditions):
        if not isinstance(condition, Condition):
            problems.append((f"when[{index}]", "must be a Condition"))
            continue
        problem = condition_problem(condition.field, condition.op, condition.value)
        if problem is not None:
            problems.append((f"when[{index}].{problem[0]}", problem[1]))
    if spec.max_amount is not None:
        amount = to_decimal(spec.max_amount)
        if amount is None or amount <= 0:
            problems.append(("max_amount", "must be a positive number"))
        amount_field_problem = field_path_problem(spec.amount_field)
        if amount_field_problem is not None:
            problems.append(("amount_field", amount_field_problem))
    if spec.limit is not None:
        problems.extend(_limit_problems(spec.limit))
    if not isinstance(spec.environments, (frozenset, set, tuple, list)) or not spec.environments:
        problems.append(("environments", "must be a non-empty set of test/live"))
    elif not set(spec.environments) <= ENVIRONMENTS:
        problems.append(("environments", "may only contain test and live"))
    if spec.approval_timeout is not None and (
        not isinstance(spec.approval_timeout, int)
        or isinstance(spec.approval_timeout, bool)
        or not 0 < spec.approval_timeout <= MAX_DURATION_SECONDS
    ):
        problems.append(("approval.timeout", "must be a positive number of seconds"))
    if (
        not isinstance(spec.approvals_required, int)
        or isinstance(spec.approvals_required, bool)
        or spec.approvals_required < 1
    ):
        problems.append(("approval.approvals_required", "must be an integer of at least 1"))
    if spec.scope not in SCOPES:
        problems.append(("scope", "must be agent or org"))
    return problems


def _limit_problems(limit: Limit) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if limit.kind not in LIMIT_KINDS:
        return [("limit", "kind must be count or sum")]
    if (
        not isinstance(limit.per_seconds, int)
        or isinstance(limit.per_seconds, bool)
        or not 0 < limit.per_seconds <= MAX_DURATION_SECONDS
    ):
        problems.append(("limit.per", "must be a positive window of at most 366d"))
    if limit.kind == "count":
        if not isinstance(limit.count, int) or isinstance(limit.count, bool) or limit.count < 1:
            problems.append(("limit.count", "must be an integer of at least 1"))
    else:
        field_problem = field_path_problem(limit.field)
        if field_problem is not None:
            problems.append(("limit.sum", field_problem))
        over = to_decimal(limit.over)
        if over is None or over <= 0:
            problems.append(("limit.over", "must be a positive number"))
    return problems


# ---------------------------------------------------------------------------
# Compiled policy
# ---------------------------------------------------------------------------


class _Candidates:
    __slots__ = ("limit_queries", "rules")

    def __init__(self, rules: tuple[_Rule, ...]) -> None:
        self.rules = rules
        self.limit_queries = tuple(r.limit_query for r in rules if r.limit_query is not None)


class CompiledPolicy:
    """An agent's rules prepared for fast, repeated evaluation. Safe to share across threads."""

    __slots__ = (
        "_cache",
        "_cache_size",
        "_default_decision",
        "_exact",
        "_globs",
        "approvals_enabled",
        "approvals_plan",
        "default",
        "quorum_enabled",
        "quorum_plan",
        "rules",
    )

    def __init__(
        self,
        rules: tuple[RuleSpec, ...],
        *,
        default: str,
        approvals_enabled: bool,
        approvals_plan: str,
        quorum_enabled: bool = True,
        quorum_plan: str = "Business",
        cache_size: int = CANDIDATE_CACHE_SIZE,
    ) -> None:
        self.rules = rules
        self.default = default
        self.approvals_enabled = approvals_enabled
        self.approvals_plan = approvals_plan
        self.quorum_enabled = quorum_enabled
        self.quorum_plan = quorum_plan
        compiled = [_Rule(spec, index) for index, spec in enumerate(rules) if spec.enabled]
        exact: dict[str, list[_Rule]] = {}
        globs: list[tuple[Callable[[str], bool], tuple[_Rule, ...]]] = []
        glob_groups: dict[str, list[_Rule]] = {}
        for rule in compiled:
            pattern = rule.spec.action
            if _is_glob(pattern):
                glob_groups.setdefault(pattern, []).append(rule)
            else:
                exact.setdefault(pattern, []).append(rule)
        for pattern, group in glob_groups.items():
            globs.append((_compile_glob(pattern), tuple(group)))
        self._exact = {action: tuple(group) for action, group in exact.items()}
        self._globs = tuple(globs)
        self._cache: dict[tuple[str, str], _Candidates] = {}
        self._cache_size = cache_size
        self._default_decision = Decision(decision=ALLOW, rule=None, reason=NO_POLICY_CONFIGURED)

    def _candidates(self, action: str, environment: str) -> _Candidates:
        key = (action, environment)
        found = self._cache.get(key)
        if found is not None:
            return found
        found = self._find_candidates(action, environment)
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[key] = found
        return found

    def _find_candidates(self, action: str, environment: str) -> _Candidates:
        rules = list(self._exact.get(action, ()))
        for matcher, group in self._globs:
            if matcher(action):
                rules.extend(group)
        rules = [r for r in rules if environment in r.spec.environments]
        rules.sort(key=lambda r: r.order)
        return _Candidates(tuple(rules))

    def limit_queries(self, action: str, environment: str) -> tuple[LimitQuery, ...]:
        """Running totals the caller must fetch before `evaluate` for this action."""
        return self._candidates(action, environment).limit_queries

    def evaluate(
        self,
        action: str,
        arguments: Mapping[str, Any],
        environment: str,
        totals: Mapping[str, Decimal | int] | None = None,
    ) -> Decision:
        return self._decide(self._candidates(action, environment).rules, action, arguments, totals)

    def evaluate_uncached(
        self,
        action: str,
        arguments: Mapping[str, Any],
        environment: str,
        totals: Mapping[str, Decimal | int] | None = None,
    ) -> Decision:
        """Same answer as `evaluate`, without the candidate cache (for tests and debugging)."""
        rules = self._find_candidates(action, environment).rules
        return self._decide(rules, action, arguments, totals)

    def _decide(
        self,
        rules: tuple[_Rule, ...],
        action: str,
        arguments: Mapping[str, Any],
        totals: Mapping[str, Decimal | int] | None,
    ) -> Decision:
        if not isinstance(arguments, Mapping):
            arguments = {}
        matched: list[MatchedRule] = []
        best: MatchedRule | None = None
        best_rank = -1
        for rule in rules:
            outcome = rule.apply(arguments, totals)
            if outcome is None:
                continue
            effect, reason = outcome
            entry = MatchedRule(rule.spec, effect, reason)
            matched.append(entry)
            rank = _EFFECT_RANK[effect]
            if rank > best_rank:  # strictly greater: ties keep the earlier rule
                best, best_rank = entry, rank
        if best is None:
            if self.default == ALLOW:
                return self._default_decision
            return Decision(
                decision=BLOCK,
                rule=None,
                reason=f"no rule allows '{action}' and the agent's default is block",
            )
        spec = best.rule
        decision, reason = best.effect, best.reason
        if decision == REQUIRES_APPROVAL and not self.approvals_enabled:
            decision = BLOCK
            plan_reason = (
                f"rule '{spec.name}' requires approval, which needs the "
                f"{self.approvals_plan} plan or higher"
            )
            reason = plan_reason if reason == _plain_reason(spec) else f"{reason}; {plan_reason}"
        elif (
            decision == REQUIRES_APPROVAL
            and spec.approvals_required > 1
            and not self.quorum_enabled
        ):
            # Nobody could ever complete the quorum on this plan: refuse now, not at expiry.
            decision = BLOCK
            plan_reason = (
                f"rule '{spec.name}' requires {spec.approvals_required} approvals, which needs "
                f"the {self.quorum_plan} plan or higher"
            )
            reason = plan_reason if reason == _plain_reason(spec) else f"{reason}; {plan_reason}"
        return Decision(
            decision=decision,
            rule=spec,
            reason=reason,
            matched=tuple(matched),
            approval_timeout=spec.approval_timeout,
            approvals_required=spec.approvals_required,
        )


def compile_policy(
    rules: Iterable[RuleSpec],
    *,
    default: str = ALLOW,
    approvals_enabled: bool = True,
    approvals_plan: str = "Pro",
    quorum_enabled: bool = True,
    quorum_plan: str = "Business",
) -> CompiledPolicy:
    """Validate and compile rules; raises InvalidPolicy naming the first broken rule."""
    if default not in DEFAULTS:
        raise InvalidPolicy(f"default must be allow or block, not {default!r}")
    specs = tuple(rules)
    seen_ids: set[str] = set()
    for spec in specs:
        if not isinstance(spec, RuleSpec):
            raise InvalidPolicy(f"expected RuleSpec, got {type(spec).__name__}")
        if spec.id in seen_ids:
            raise InvalidPolicy(f"duplicate rule id {spec.id!r}")
        seen_ids.add(spec.id)
        problems = rule_spec_problems(spec)
        if problems:
            details = "; ".join(f"{name}: {message}" for name, message in problems)
            raise InvalidPolicy(f"rule {spec.name!r} ({spec.id}) is invalid: {details}")
    return CompiledPolicy(
        specs,
        default=default,
        approvals_enabled=approvals_enabled,
        approvals_plan=approvals_plan,
        quorum_enabled=quorum_enabled,
        quorum_plan=quorum_plan,
    )


__all__ = [
    "ALLOW",
    "BLOCK",
    "EFFECTS",
    "NO_POLICY_CONFIGURED",
    "OPS",
    "REQUIRES_APPROVAL",
    "CompiledPolicy",
    "Condition",
    "Decision",
    "InvalidPolicy",
    "Limit",
    "LimitQuery",
    "MatchedRule",
    "RuleSpec",
    "action_matches",
    "action_pattern_is_valid",
    "action_pattern_problem",
    "compile_policy",
    "condition_problem",
    "format_duration",
    "format_number",
    "parse_duration",
    "rule_spec_problems",
    "to_decimal",
    "validate_action_pattern",
]
