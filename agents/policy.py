"""Pure policy evaluation: which rule decides a tool call, and why.

No Django, no ORM, no I/O. Rules arrive as validated ``RuleSpec``s (made only by
``agents.policy_document``, the one validator), are compiled once per agent
(``compile_policy``) and then, for every call:

1. ``CompiledPolicy.budgets(call)`` names the running-total budgets the call would spend
   (an empty tuple for nearly every call);
2. the check path locks those counters and reads their window totals;
3. ``CompiledPolicy.evaluate(call, totals)`` decides.

Effects rank block > requires_approval > allow; the most restrictive applied effect wins,
ties go to the first rule by (position, agent scope before org scope, input order).

Fail closed. A condition answers True, False or None (undecidable: a missing field, a value
of the wrong type, a non-number where a number is needed, a pattern that could not be run
safely). ``all``/``any``/``not`` combine these three values (Kleene logic), and a rule whose
``when``/``unless`` ends undecidable applies when it restricts (block, requires_approval) and
does not apply when it allows. Negative or non-finite amounts are never "within" a
``max_amount`` or a budget. Plan gating is not here: see ``plan_gate``.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any

import regex

ALLOW = "allow"
REQUIRES_APPROVAL = "requires_approval"
BLOCK = "block"
EFFECTS = (ALLOW, REQUIRES_APPROVAL, BLOCK)
RESTRICTIVE = frozenset({REQUIRES_APPROVAL, BLOCK})
DEFAULTS = (ALLOW, BLOCK)
ENFORCE = "enforce"
SHADOW = "shadow"
MODES = (ENFORCE, SHADOW)
ENVIRONMENTS = frozenset({"test", "live"})
SCOPES = ("agent", "org")
LIMIT_KINDS = ("count", "sum")
NUMERIC_OPS = ("gt", "gte", "lt", "lte")
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
    "endswith",
    "matches",
    "exists",
    "ieq",
    "icontains",
    "cidr",
    "email_domain_in",
)
# Operators whose value may name a list of the policy document (`value: $lists.NAME`).
LIST_OPS = ("in", "not_in", "cidr", "email_domain_in")
CONTEXT_FIELDS = ("$action", "$environment", "$session", "$time.hour", "$time.weekday")
METADATA_PREFIX = "$metadata."
NO_POLICY_CONFIGURED = "no_policy_configured"

MAX_ACTION_LENGTH = 200
MAX_PATTERN_LENGTH = 200
MAX_FIELD_LENGTH = 200
MAX_REGEX_LENGTH = 256
REGEX_TIMEOUT_SECONDS = 0.01
MAX_REGEX_SUBJECT_LENGTH = 4096
MAX_DURATION_SECONDS = 366 * 86400
CANDIDATE_CACHE_SIZE = 4096
MAX_PLAIN_DIGITS = 1000  # format_number writes larger (or smaller) numbers with an exponent
# Budgets keep BUCKETS_PER_WINDOW buckets per window: a window's total is exact to one bucket.
BUCKETS_PER_WINDOW = 60

_EFFECT_RANK = {ALLOW: 0, REQUIRES_APPROVAL: 1, BLOCK: 2}
_MISSING: Any = object()


class InvalidPolicy(ValueError):
    """A policy cannot be compiled; the message says which rule and why."""


# ---------------------------------------------------------------------------
# Action names and patterns
# ---------------------------------------------------------------------------

# Action names: dot-separated segments of ASCII letters, digits and _ - : / @. Matching is
# case-insensitive; the audit log keeps the name as sent.
ACTION_CHARACTERS = "ASCII letters, digits, and _ - : / @, in dot-separated segments"
_ACTION_RE = re.compile(r"[A-Za-z0-9_:/@-]+(?:\.[A-Za-z0-9_:/@-]+)*")
_PATTERN_SEGMENT_RE = re.compile(r"[A-Za-z0-9_:/@*-]+")


def action_name_problem(action: object) -> str | None:
    """Why ``action`` is not a valid action name (as an agent sends it), or None."""
    if not isinstance(action, str):
        return "must be a string"
    if not action:
        return "must not be empty"
    if len(action) > MAX_ACTION_LENGTH:
        return f"must be at most {MAX_ACTION_LENGTH} characters"
    if _ACTION_RE.fullmatch(action) is None:
        return f"may only contain {ACTION_CHARACTERS} (no whitespace or control characters)"
    return None


def action_pattern_problem(pattern: object) -> str | None:
    """Why ``pattern`` is not a valid action pattern, or None when it is."""
    if not isinstance(pattern, str):
        return "must be a string"
    if not pattern:
        return "must not be empty"
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"must be at most {MAX_PATTERN_LENGTH} characters"
    for segment in pattern.split("."):
        if not segment:
            return f"{pattern!r} has an empty segment (check for leading, trailing or double dots)"
        if _PATTERN_SEGMENT_RE.fullmatch(segment) is None:
            return f"{pattern!r} may only contain {ACTION_CHARACTERS}, and * as a wildcard"
        if "**" in segment:
            return f"{pattern!r}: '**' is not supported; a trailing '*' segment matches the rest"
    return None


def action_pattern_is_valid(pattern: object) -> bool:
    return action_pattern_problem(pattern) is None


def _compile_glob(pattern: str) -> Callable[[str], bool]:
    """A matcher of lower-cased action names for a lower-cased pattern."""
    if pattern == "*":
        return lambda action: True
    segments = pattern.split(".")
    parts = []
    for index, segment in enumerate(segments):
        if segment == "*":
            parts.append(r"[^.]+(?:\.[^.]+)*" if index == len(segments) - 1 else r"[^.]+")
        else:
            parts.append("[^.]*".join(re.escape(piece) for piece in segment.split("*")))
    fullmatch = re.compile(r"\.".join(parts)).fullmatch
    return lambda action: fullmatch(action) is not None


def action_matches(pattern: str, action: str) -> bool:
    """Does ``action`` match ``pattern`` (case-insensitively)? Uncached, for forms and tests."""
    pattern, action = pattern.lower(), action.lower()
    if "*" not in pattern:
        return pattern == action
    return _compile_glob(pattern)(action)


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


def bucket_seconds(per_seconds: int) -> int:
    """The size of a budget's buckets: its window's total is exact to one bucket."""
    return max(1, per_seconds // BUCKETS_PER_WINDOW)


# ---------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


# What Decimal() would read as a finite number: checked first, so that a string that is
# not a number (the common case for text arguments) costs no exception.
_NUMERIC_RE = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*")


def to_decimal(value: object) -> Decimal | None:
    """A finite Decimal from a number or a numeric string ("5000", "5e3"), else None.
    Booleans are not numbers; NaN and infinities are not usable numbers."""
    kind = type(value)
    if kind is int:
        return Decimal(value)  # type: ignore[arg-type]
    if kind is bool:
        return None
    try:
        if isinstance(value, str):
            if len(value) > 64 or _NUMERIC_RE.fullmatch(value) is None:
                return None
            result = Decimal(value.strip())
        elif isinstance(value, float):
            if not math.isfinite(value):
                return None
            result = Decimal(repr(value))
        elif isinstance(value, Decimal):
            result = value
        elif isinstance(value, int):
            result = Decimal(value)
        else:
            return None
    except (InvalidOperation, ValueError):
        return None
    return result if result.is_finite() else None


def format_number(value: Decimal | int | float) -> str:
    """`Decimal('100.00')` -> `100`, `Decimal('12.50')` -> `12.5`; an exponent only past a
    thousand digits (`"1e5000"` is a valid amount: `1E+5000`, not a 5,001-digit string, which
    Python refuses to make from an int)."""
    number = to_decimal(value)
    if number is None:
        return str(value)
    if abs(number.adjusted()) > MAX_PLAIN_DIGITS:
        return str(number.normalize())
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(), "f")


# ---------------------------------------------------------------------------
# Rules as the validator makes them
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cond:
    """One comparison: ``field op value``. ``list_name`` is set when the value came from the
    document's ``lists`` (``value: $lists.NAME``); ``value`` then holds the list's items."""

    field: str
    op: str
    value: Any = None
    list_name: str | None = None


@dataclass(frozen=True, slots=True)
class AllOf:
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Expr


Expr = Cond | AllOf | AnyOf | Not


@dataclass(frozen=True, slots=True)
class Limit:
    kind: str  # "count" | "sum"
    per_seconds: int
    count: int | None = None
    field: str | None = None
    over: Decimal | None = None
    by: str | None = None  # a field path ("customer_id", "$session"): one budget per value


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """A validated rule. Made by ``agents.policy_document`` (the one validator) only."""

    name: str
    action: str
    effect: str
    description: str = ""
    message: str = ""
    when: Expr | None = None
    unless: tuple[Expr, ...] = ()
    max_amount: Decimal | None = None
    amount_field: str = "amount"
    limit: Limit | None = None
    environments: frozenset[str] = field(default_factory=lambda: ENVIRONMENTS)
    approval_timeout: int | None = None
    approvals_required: int = 1
    # Who may decide and who is notified (``role:admin``, ``group:finance``,
    # ``user:alice@example.com``); empty: every member whose role may decide.
    approvers: tuple[str, ...] = ()
    on_timeout: str = "deny"  # or "escalate" (to escalate_to, for escalate_timeout more)
    escalate_to: tuple[str, ...] = ()
    escalate_timeout: int | None = None
    slack_channel: str = ""  # empty: the organisation's default channel
    redact: tuple[str, ...] = ()  # argument paths hidden from Slack and email
    grants: tuple[str, ...] = ()  # what an approver may remember: identical, session, amount
    enabled: bool = True
    mode: str = ENFORCE  # shadow: evaluated and recorded, never part of the answer
    # Where the rule sits in an agent's policy (set when loaded from the database).
    id: str = ""
    position: int = 0
    scope: str = "agent"


# ---------------------------------------------------------------------------
# The call being decided
# ---------------------------------------------------------------------------


class Call:
    """A tool call and its context, as rules read it (``$action``, ``$time.hour`` ...)."""

    __slots__ = (
        "_local",
        "action",
        "action_key",
        "arguments",
        "at",
        "environment",
        "metadata",
        "session_id",
        "timezone",
    )

    def __init__(
        self,
        action: str,
        arguments: Mapping[str, Any] | None = None,
        environment: str = "live",
        *,
        session_id: str = "",
        metadata: Mapping[str, Any] | None = None,
        at: datetime | None = None,
        timezone: tzinfo | None = None,
    ) -> None:
        self.action = action
        self.action_key = action.lower()
        self.arguments = arguments if isinstance(arguments, Mapping) else {}
        self.environment = environment
        self.session_id = session_id or ""
        self.metadata = metadata if isinstance(metadata, Mapping) else {}
        self.at = at
        self.timezone = timezone
        self._local: datetime | None = None

    def local_time(self) -> datetime:
        """The call's time in the organisation's time zone (UTC by default)."""
        if self._local is None:
            at = self.at or datetime.now(UTC)
            self._local = at.astimezone(self.timezone or UTC)
        return self._local


# ---------------------------------------------------------------------------
# Reading fields
# ---------------------------------------------------------------------------


class _Many(tuple):
    """The values a wildcard path (``items.*.amount``) reached: a condition holds for any."""


_AMBIGUOUS: Any = object()  # a dotted key and the nested path both exist, with other values


def _walk(current: Any, parts: tuple[str, ...]) -> Any:
    for index, part in enumerate(parts):
        if part == "*":
            if isinstance(current, Mapping):
                children = list(current.values())
            elif isinstance(current, (list, tuple)):
                children = list(current)
            else:
                return _MISSING
            rest = parts[index + 1 :]
            found: list[Any] = []
            for child in children:
                value = _walk(child, rest) if rest else child
                found.extend(value if isinstance(value, _Many) else (value,))
            return _Many(found)
        if isinstance(current, Mapping):
            current = current.get(part, _MISSING)
            if current is _MISSING:
                return _MISSING
        elif isinstance(current, (list, tuple)) and part.isdigit():
            position = int(part)
            if position >= len(current):
                return _MISSING
            current = current[position]
        else:
            return _MISSING
    return current


def _arguments_getter(path: str) -> Callable[[Call], Any]:
    parts = tuple(path.split("."))
    if len(parts) == 1 and parts[0] != "*":
        key = parts[0]
        return lambda call: call.arguments.get(key, _MISSING)

    def get(call: Call) -> Any:
        nested = _walk(call.arguments, parts)
        literal = call.arguments.get(path, _MISSING)
        if literal is _MISSING:
            return nested
        if nested is _MISSING or nested == literal:
            return literal
        return _AMBIGUOUS  # {"customer.tier": "vip", "customer": {"tier": "basic"}}

    return get


def field_getter(path: str) -> Callable[[Call], Any]:
    """A function reading ``path`` from a call: an argument path or a ``$`` context field.
    It returns the value, ``_MISSING``, ``_AMBIGUOUS`` or a ``_Many`` of values."""
    if path == "$action":
        return lambda call: call.action_key
    if path == "$environment":
        return lambda call: call.environment
    if path == "$session":
        return lambda call: call.session_id or _MISSING
    if path == "$time.hour":
        return lambda call: call.local_time().hour
    if path == "$time.weekday":
        return lambda call: call.local_time().weekday()
    if path.startswith(METADATA_PREFIX):
        parts = tuple(path[len(METADATA_PREFIX) :].split("."))
        return lambda call: _walk(call.metadata, parts)
    return _arguments_getter(path)


# ---------------------------------------------------------------------------
# Comparing values (three-valued)
# ---------------------------------------------------------------------------


def _eq(subject: Any, value: Any) -> bool | None:
    """Equality of a subject and a rule value. Two strings compare as text, a number and a
    number or numeric string as numbers. Anything else of another kind (an object, a list,
    a boolean against a number, NaN) is undecidable, not unequal: wrapping or retyping an
    argument must not slip past a rule."""
    if isinstance(value, tuple):
        if not isinstance(subject, (list, tuple)):
            return None
        if len(subject) != len(value):
            return False
        return _all3(_eq(s, v) for s, v in zip(subject, value, strict=True))
    if value is None:
        return subject is None
    if isinstance(value, bool) or isinstance(subject, bool):
        return subject is value if type(subject) is type(value) else None
    if isinstance(value, str) and isinstance(subject, str):
        return subject == value
    if isinstance(subject, (str, int, float, Decimal)):
        a, b = to_decimal(subject), to_decimal(value)
        if a is None or b is None:
            return None
        return a == b
    return None


def _all3(values: Iterable[bool | None]) -> bool | None:
    undecided = False
    for value in values:
        if value is False:
            return False
        if value is None:
            undecided = True
    return None if undecided else True


def _any3(values: Iterable[bool | None]) -> bool | None:
    undecided = False
    for value in values:
        if value is True:
            return True
        if value is None:
            undecided = True
    return None if undecided else False


def _not3(value: bool | None) -> bool | None:
    return None if value is None else not value


class _Members:
    """Membership in a list of plain values, by ``_eq``'s rules, in constant time. Not
    found is False when the subject can be compared with some member, else undecidable."""

    __slots__ = ("bools", "has_null", "numbers", "numeric_texts", "texts")

    def __init__(self, items: Iterable[Any]) -> None:
        self.texts: set[str] = set()
        self.numbers: set[Decimal] = set()  # from number members
        self.numeric_texts: set[Decimal] = set()  # from numeric string members
        self.bools: set[bool] = set()
        self.has_null = False
        for item in items:
            if item is None:
                self.has_null = True
            elif isinstance(item, bool):
                self.bools.add(item)
            elif isinstance(item, str):
                self.texts.add(item)
                number = to_decimal(item)
                if number is not None:
                    self.numeric_texts.add(number)
            else:
                number = to_decimal(item)
                if number is not None:
                    self.numbers.add(number)

    def contains(self, subject: Any) -> bool | None:
        if subject is None:
            return True if self.has_null else None
        if isinstance(subject, bool):
            return (subject in self.bools) if self.bools else None
        if isinstance(subject, str):
            if subject in self.texts:
                return True
            number = to_decimal(subject) if self.numbers else None
            if number is not None and number in self.numbers:
                return True
            comparable = bool(self.texts) or number is not None
            return False if comparable else None
        if _is_number(subject):
            number = to_decimal(subject)
            if number is None:
                return None
            if number in self.numbers or number in self.numeric_texts:
                return True
            return False if (self.numbers or self.numeric_texts) else None
        return None


def _number(value: Any) -> Decimal | None:
    return to_decimal(value)


def _domain(value: str) -> str:
    return value.strip().rstrip(".").lower()


def _email_domain(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    local, at, domain = value.strip().rpartition("@")
    if not at or not local or "@" in local or not domain or any(c.isspace() for c in domain):
        return None
    return _domain(domain)


def _ip(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not isinstance(value, str):
        return None
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
    return address


# ---------------------------------------------------------------------------
# Conditions
# ---------------------------------------------------------------------------

# A compiled condition answers True (holds), False (does not hold) or None (undecidable).
Test = Callable[[Call], "bool | None"]


def _subject_test(cond: Cond) -> Callable[[Any], bool | None]:
    """The test of one subject value (never _MISSING) for ``cond``."""
    op, value = cond.op, cond.value

    if op in ("eq", "ne"):
        negate = op == "ne"
        return lambda subject: _not3(_eq(subject, value)) if negate else _eq(subject, value)

    if op in ("in", "not_in"):
        members = _Members(value)
        if op == "in":
            return members.contains
        return lambda subject: _not3(members.contains(subject))

    if op in NUMERIC_OPS:
        bound = to_decimal(value)
        compare = {
            "gt": bound.__lt__,
            "gte": bound.__le__,
            "lt": bound.__gt__,
            "lte": bound.__ge__,
        }[op]

        def ordered(subject: Any) -> bool | None:
            number = _number(subject)
            return None if number is None else compare(number)

        return ordered

    if op in ("contains", "icontains"):
        fold = op == "icontains"
        needle = value.casefold() if fold else value

        def in_text(text: str) -> bool:
            return needle in (text.casefold() if fold else text)

        def contains(subject: Any) -> bool | None:
            if isinstance(subject, str):
                return in_text(subject) if isinstance(needle, str) else None
            if not isinstance(subject, (list, tuple)):
                return None
            if not isinstance(needle, str):
                return _any3(_eq(item, needle) for item in subject)
            # Text in a list: any string item containing it (so wrapping a string in a list
            # changes nothing); other plain items cannot contain text, and a nested list or
            # object could hide it.
            return _any3(
                in_text(item)
                if isinstance(item, str)
                else (None if isinstance(item, (list, tuple, Mapping)) else False)
                for item in subject
            )

        return contains

    if op == "ieq":
        folded = value.casefold()
        return lambda subject: subject.casefold() == folded if isinstance(subject, str) else None

    if op == "startswith":
        return lambda subject: subject.startswith(value) if isinstance(subject, str) else None

    if op == "endswith":
        return lambda subject: subject.endswith(value) if isinstance(subject, str) else None

    if op == "matches":
        search = regex.compile(value).search

        def matches(subject: Any) -> bool | None:
            if not isinstance(subject, str) or len(subject) > MAX_REGEX_SUBJECT_LENGTH:
                return None
            try:
                return search(subject, timeout=REGEX_TIMEOUT_SECONDS) is not None
            except TimeoutError:
                return None

        return matches

    if op == "cidr":
        items = value if isinstance(value, tuple) else (value,)
        networks = tuple(ipaddress.ip_network(item, strict=False) for item in items)

        def within(subject: Any) -> bool | None:
            address = _ip(subject)
            if address is None:
                return None
            return any(address in network for network in networks)

        return within

    if op == "email_domain_in":
        domains = frozenset(_domain(item) for item in value)

        def domain_in(subject: Any) -> bool | None:
            domain = _email_domain(subject)
            if domain is None:
                return None
            labels = domain.split(".")
            return any(".".join(labels[i:]) in domains for i in range(len(labels)))

        return domain_in

    raise InvalidPolicy(f"unknown operator {op!r}")  # the validator never lets one through


def compile_condition(cond: Cond) -> Test:
    get = field_getter(cond.field)
    if cond.op == "exists":
        wanted = bool(cond.value)

        def exists(call: Call) -> bool | None:
            subject = get(call)
            if isinstance(subject, _Many):
                return _any3((item is not _MISSING) is wanted for item in subject)
            return (subject is not _MISSING) is wanted

        return exists

    test = _subject_test(cond)

    def holds(call: Call) -> bool | None:
        subject = get(call)
        if subject is _MISSING or subject is _AMBIGUOUS:
            return None
        if isinstance(subject, _Many):
            return _any3(None if item is _MISSING else test(item) for item in subject)
        return test(subject)

    return holds


def condition_judge(cond: Cond) -> Callable[[Any], bool | None]:
    """``cond``'s answer for what its field read from a call (a value, ``_MISSING``,
    ``_AMBIGUOUS`` or a ``_Many``): the answer of ``compile_condition``'s test, for evaluation
    traces, which read a field once to judge and show it. ``compile_condition`` keeps its own
    copy of these lines, which saves the hot path a call per condition; a test holds the two
    to the same answers."""
    if cond.op == "exists":
        wanted = bool(cond.value)

        def exists(subject: Any) -> bool | None:
            if isinstance(subject, _Many):
                return _any3((item is not _MISSING) is wanted for item in subject)
            return (subject is not _MISSING) is wanted

        return exists

    test = _subject_test(cond)

    def judge(subject: Any) -> bool | None:
        if subject is _MISSING or subject is _AMBIGUOUS:
            return None
        if isinstance(subject, _Many):
            return _any3(None if item is _MISSING else test(item) for item in subject)
        return test(subject)

    return judge


def compile_expr(expr: Expr) -> Test:
    if isinstance(expr, Cond):
        return compile_condition(expr)
    if isinstance(expr, Not):
        inner = compile_expr(expr.item)
        return lambda call: _not3(inner(call))
    tests = tuple(compile_expr(item) for item in expr.items)
    if len(tests) == 1:
        return tests[0]
    if isinstance(expr, AllOf):

        def all_of(call: Call) -> bool | None:
            undecided = False
            for test in tests:
                answer = test(call)
                if answer is False:
                    return False
                if answer is None:
                    undecided = True
            return None if undecided else True

        return all_of

    def any_of(call: Call) -> bool | None:
        undecided = False
        for test in tests:
            answer = test(call)
            if answer is True:
                return True
            if answer is None:
                undecided = True
        return None if undecided else False

    return any_of


_OP_NEEDS = {
    **dict.fromkeys(NUMERIC_OPS, "a number"),
    **dict.fromkeys(("startswith", "endswith", "ieq", "matches"), "a string"),
    "icontains": "a string or a list of strings",
    "contains": "a string or a list",
    "cidr": "an IP address",
    "email_domain_in": "an email address",
}


def _undecided_why(cond: Cond, call: Call) -> str:
    """Why ``cond`` could not be decided for ``call`` (for the reason of a check)."""
    subject = field_getter(cond.field)(call)
    if subject is _MISSING:
        return f"{cond.field} is missing"
    if subject is _AMBIGUOUS:
        return f"{cond.field} is ambiguous (given both as a dotted key and as a nested path)"
    if isinstance(subject, _Many):
        return f"an element of {cond.field} is missing or not comparable"
    if cond.op == "matches" and isinstance(subject, str):
        return (
            f"pattern condition on {cond.field} could not be checked safely (input too long or "
            "pattern too slow)"
        )
    needs = _OP_NEEDS.get(cond.op)
    if needs is not None:
        return f"{cond.field} is not {needs}"
    return f"{cond.field} is {_kind_name(subject)}, which cannot be compared with {cond.op}"


def _kind_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "a string"
    if _is_number(value):
        return "not a finite number"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return "of an unknown type"


def expr_conditions(expr: Expr | None) -> Iterable[Cond]:
    if expr is None:
        return
    if isinstance(expr, Cond):
        yield expr
    elif isinstance(expr, Not):
        yield from expr_conditions(expr.item)
    else:
        for item in expr.items:
            yield from expr_conditions(item)


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Budget:
    """A running-total budget that a call would spend: one per limited rule that applies to
    the call (and per value of the limit's ``by`` key)."""

    rule_id: str
    rule_name: str
    kind: str
    per_seconds: int
    field: str | None
    by: str | None
    by_value: str  # the key's value, normalised ("" without ``by``)
    amount: Decimal  # what this call adds: 1 for a count, the value for a sum

    def series(self) -> tuple[Any, ...]:
        """What identifies the budget within an agent and environment: a change of the
        rule's kind, field, window or key starts a new series of counters."""
        return (self.rule_id, self.kind, self.field, self.per_seconds, self.by, self.by_value)


# Results are made for every call: plain (not frozen) dataclasses, which build faster.
@dataclass(slots=True)
class MatchedRule:
    rule: RuleSpec
    effect: str
    reason: str


@dataclass(slots=True)
class Decision:
    decision: str
    rule: RuleSpec | None
    reason: str
    matched: tuple[MatchedRule, ...] = ()
    approval_timeout: int | None = None
    approvals_required: int = 1
    message: str = ""  # the deciding rule's message for the agent and the reviewers


# ---------------------------------------------------------------------------
# Compiled rules
# ---------------------------------------------------------------------------


def budget_key_value(value: Any) -> str | None:
    """The normalised value of a limit's ``by`` key: case, spacing and number formatting do
    not open a fresh budget ("ABC " and "abc", 5 and "5.0" are one budget). None when the
    call has no usable key (missing, null, an object or a list): its budget is unknown."""
    if isinstance(value, bool):
        return f"b:{str(value).lower()}"
    if isinstance(value, str):
        number = to_decimal(value)
        if number is None:
            text = value.strip().casefold()
            return "s:" + text if text else None
        value = number
    if _is_number(value):
        number = to_decimal(value)
        return f"n:{format_number(number)}" if number is not None else None
    return None


def _key_problem(field_name: str, raw: Any) -> str | None:
    if raw is _MISSING:
        return f"{field_name} is missing"
    if budget_key_value(raw) is None:
        return f"{field_name} is not a plain value"
    return None


class _Rule:
    """A rule ready for the hot path. Internal to this module."""

    __slots__ = (
        "get_amount",
        "get_by",
        "get_limit_field",
        "limit_texts",
        "max_amount_text",
        "order",
        "recounting",
        "restrictive",
        "spec",
        "trace_plan",
        "unless",
        "when",
    )

    def __init__(self, spec: RuleSpec, index: int, recounting: bool = False) -> None:
        self.spec = spec
        self.trace_plan: Any = None  # built by agents.policy_trace when first traced
        self.recounting = recounting
        self.order = (spec.position, 0 if spec.scope == "agent" else 1, index)
        self.restrictive = spec.effect in RESTRICTIVE
        self.when = compile_expr(spec.when) if spec.when is not None else None
        self.unless = compile_expr(AnyOf(spec.unless)) if spec.unless else None
        self.get_amount = field_getter(spec.amount_field) if spec.max_amount is not None else None
        self.max_amount_text = (
            format_number(spec.max_amount) if spec.max_amount is not None else None
        )
        limit = spec.limit
        self.get_limit_field = (
            field_getter(limit.field) if limit is not None and limit.kind == "sum" else None
        )
        self.get_by = field_getter(limit.by) if limit is not None and limit.by else None
        self.limit_texts = (
            (format_duration(limit.per_seconds), format_number(limit.over or 0))
            if limit is not None
            else None
        )

    def applies(self, call: Call) -> bool | None:
        """``when`` and not ``unless``, three-valued."""
        holds = self.when(call) if self.when is not None else True
        if holds is False:
            return False
        exception = self.unless(call) if self.unless is not None else False
        if exception is True:
            return False
        if holds is None or exception is None:
            return None
        return True

    def undecided_reason(self, call: Call) -> str:
        for cond in (
            *expr_conditions(self.spec.when),
            *(c for e in self.spec.unless for c in expr_conditions(e)),
        ):
            if compile_condition(cond)(call) is None:
                return _undecided_why(cond, call)
        return "a condition could not be decided"

    def budget(self, call: Call) -> Budget | None:
        """The budget this call would spend under this rule's limit, if the rule applies and
        the call's amount is usable (otherwise the rule's effect applies regardless)."""
        limit = self.spec.limit
        if limit is None or self.recounting or self.applies(call) is not True:
            return None
        if limit.kind == "sum":
            assert self.get_limit_field is not None
            amount = _number(self.get_limit_field(call))
            if amount is None or amount < 0:
                return None
        else:
            amount = Decimal(1)
        by_value = ""
        if self.get_by is not None:
            key = budget_key_value(self.get_by(call))
            if key is None:
                return None  # no usable key: the rule's effect applies whatever the totals
            by_value = key
        return Budget(
            rule_id=self.spec.id,
            rule_name=self.spec.name,
            kind=limit.kind,
            per_seconds=limit.per_seconds,
            field=limit.field,
            by=limit.by,
            by_value=by_value,
            amount=amount,
        )

    def apply(self, call: Call, totals: Mapping[str, Any] | None) -> tuple[str, str] | None:
        """(applied effect, reason) when the rule matches the call, else None."""
        spec = self.spec
        applies = self.applies(call)
        if applies is False:
            return None
        if applies is None:
            if not self.restrictive:
                return None
            return spec.effect, f"{self.undecided_reason(call)}, so rule '{spec.name}' applies"
        if spec.max_amount is None and spec.limit is None:
            return spec.effect, _plain_reason(spec)
        outcomes = []
        if spec.max_amount is not None:
            outcomes.append(self._amount_outcome(call))
        if spec.limit is not None:
            outcomes.append(self._limit_outcome(call, totals))
        if not self.restrictive and any(within is False for _, _, within in outcomes):
            return None  # an allow rule allows only within its amount and its budget
        # The more restrictive outcome; on equal effects max() keeps the first (max_amount).
        effect, reason, _ = max(outcomes, key=lambda outcome: _EFFECT_RANK[outcome[0]])
        return effect, reason

    def _amount_outcome(self, call: Call) -> tuple[str, str, bool]:
        spec = self.spec
        assert self.get_amount is not None and spec.max_amount is not None
        raw = self.get_amount(call)
        limit_text = self.max_amount_text
        problem = _amount_problem(spec.amount_field, raw)
        if problem is not None:
            return (
                spec.effect,
                f"{problem}, so max_amount {limit_text} of rule '{spec.name}' cannot be checked",
                False,
            )
        amount = _number(raw)
        assert amount is not None
        if amount <= spec.max_amount:
            return (
                ALLOW,
                f"{spec.amount_field} {format_number(amount)} within max_amount {limit_text} "
                f"of rule '{spec.name}'",
                True,
            )
        return (
            spec.effect,
            f"{spec.amount_field} {format_number(amount)} exceeds max_amount {limit_text} "
            f"of rule '{spec.name}'",
            False,
        )

    def _limit_outcome(self, call: Call, totals: Mapping[str, Any] | None) -> tuple[str, str, bool]:
        spec = self.spec
        limit = spec.limit
        assert limit is not None and self.limit_texts is not None
        window, over_text = self.limit_texts
        value: Decimal | None = None
        if self.get_by is not None:
            assert limit.by is not None
            problem = _key_problem(limit.by, self.get_by(call))
            if problem is not None:
                return (
                    spec.effect,
                    f"{problem}, so the {window} limit of rule '{spec.name}' cannot be checked",
                    False,
                )
        if limit.kind == "sum":
            assert self.get_limit_field is not None and limit.field is not None
            raw = self.get_limit_field(call)
            problem = _amount_problem(limit.field, raw)
            if problem is not None:
                return (
                    spec.effect,
                    f"{problem}, so the {window} limit of rule '{spec.name}' cannot be checked",
                    False,
                )
            value = _number(raw)
        if self.recounting:
            return (
                spec.effect,
                f"running total for rule '{spec.name}' is being recounted from the audit log, "
                "so its limit applies",
                False,
            )
        raw_total = totals.get(spec.id) if totals is not None else None
        total = to_decimal(raw_total) if raw_total is not None else None
        if total is None:
            return (
                spec.effect,
                f"running total for rule '{spec.name}' is unavailable, so its limit applies",
                False,
            )
        if limit.kind == "count":
            assert limit.count is not None
            nth = int(total) + 1
            if nth > limit.count:
                return (
                    spec.effect,
                    f"{_ordinal(nth)} call in {window} exceeds limit of {limit.count} per "
                    f"{window} of rule '{spec.name}'",
                    False,
                )
            return (
                ALLOW,
                f"{_ordinal(nth)} call in {window} within limit of {limit.count} per {window} "
                f"of rule '{spec.name}'",
                True,
            )
        assert value is not None and limit.over is not None
        new_total = total + value
        if new_total > limit.over:
            return (
                spec.effect,
                f"{limit.field} total {format_number(new_total)} in {window} would exceed "
                f"{over_text} of rule '{spec.name}'",
                False,
            )
        return (
            ALLOW,
            f"{limit.field} total {format_number(new_total)} in {window} within "
            f"{over_text} of rule '{spec.name}'",
            True,
        )


def _amount_problem(field_name: str, raw: Any) -> str | None:
    """Why an amount cannot count as within a limit: missing, not a number, negative."""
    if raw is _MISSING:
        return f"{field_name} is missing"
    if raw is _AMBIGUOUS or isinstance(raw, _Many):
        return f"{field_name} is ambiguous"
    amount = _number(raw)
    if amount is None:
        return f"{field_name} is not a number"
    if amount < 0:
        return f"{field_name} {format_number(amount)} is negative"
    return None


def amount_read(call: Call, field_path: str) -> Decimal | None:
    """The call's amount at ``field_path`` read as ``max_amount`` reads it: None when it is
    missing, ambiguous, not a finite number or negative (such an amount never counts as within
    any limit; remembered approvals up to an amount use this too)."""
    raw = field_getter(field_path)(call)
    if _amount_problem(field_path, raw) is not None:
        return None
    return _number(raw)


def _plain_reason(spec: RuleSpec) -> str:
    if spec.effect == BLOCK:
        return f"blocked by rule '{spec.name}'"
    if spec.effect == REQUIRES_APPROVAL:
        return f"rule '{spec.name}' requires approval"
    return f"allowed by rule '{spec.name}'"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# ---------------------------------------------------------------------------
# Compiled policy
# ---------------------------------------------------------------------------


class _Candidates:
    __slots__ = ("limited", "rules")

    def __init__(self, rules: tuple[_Rule, ...]) -> None:
        self.rules = rules
        self.limited = tuple(rule for rule in rules if rule.spec.limit is not None)


class CompiledPolicy:
    """An agent's rules prepared for fast, repeated evaluation. Safe to share across threads."""

    __slots__ = (
        "_cache",
        "_cache_size",
        "_default_decision",
        "_exact",
        "_globs",
        "default",
        "shadow",
    )

    def __init__(
        self,
        rules: tuple[RuleSpec, ...],
        *,
        default: str,
        recounting: frozenset[str] = frozenset(),
        cache_size: int = CANDIDATE_CACHE_SIZE,
    ) -> None:
        self.default = default
        exact: dict[str, list[_Rule]] = {}
        glob_groups: dict[str, list[_Rule]] = {}
        shadow: list[RuleSpec] = []
        for index, spec in enumerate(rules):
            if not spec.enabled:
                continue
            if spec.mode == SHADOW:
                shadow.append(spec)
                continue
            rule = _Rule(spec, index, recounting=spec.id in recounting)
            pattern = spec.action.lower()
            (glob_groups if "*" in pattern else exact).setdefault(pattern, []).append(rule)
        self._exact = {action: tuple(group) for action, group in exact.items()}
        self._globs = tuple(
            (_compile_glob(pattern), tuple(group)) for pattern, group in glob_groups.items()
        )
        self._cache: dict[tuple[str, str], _Candidates] = {}
        self._cache_size = cache_size
        self._default_decision = Decision(decision=ALLOW, rule=None, reason=NO_POLICY_CONFIGURED)
        # Shadow rules, compiled apart (``ShadowRules``): None when the policy has none, so
        # a check of an agent without them pays one attribute read.
        self.shadow = ShadowRules(tuple(shadow), recounting, cache_size) if shadow else None

    def _candidates(self, action_key: str, environment: str) -> _Candidates:
        key = (action_key, environment)
        found = self._cache.get(key)
        if found is None:
            found = self._find_candidates(action_key, environment)
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[key] = found
        return found

    def _find_candidates(self, action_key: str, environment: str) -> _Candidates:
        rules = list(self._exact.get(action_key, ()))
        for matcher, group in self._globs:
            if matcher(action_key):
                rules.extend(group)
        rules = [r for r in rules if environment in r.spec.environments]
        rules.sort(key=lambda r: r.order)
        return _Candidates(tuple(rules))

    def rules_for(self, call: Call) -> tuple[_Rule, ...]:
        """The rules ``evaluate`` looks at for this call: enabled, with an action pattern and
        environments that match it, in evaluation order (for ``agents.policy_trace``)."""
        return self._candidates(call.action_key, call.environment).rules

    def budgets(self, call: Call) -> tuple[Budget, ...]:
        """The running-total budgets this call would spend: the caller locks and reads them
        before ``evaluate``, and spends them if the call is allowed."""
        limited = self._candidates(call.action_key, call.environment).limited
        if not limited:
            return ()
        return tuple(b for b in (rule.budget(call) for rule in limited) if b is not None)

    def evaluate(self, call: Call, totals: Mapping[str, Decimal | int] | None = None) -> Decision:
        rules = self._candidates(call.action_key, call.environment).rules
        return self._decide(rules, call, totals)

    def evaluate_uncached(
        self, call: Call, totals: Mapping[str, Decimal | int] | None = None
    ) -> Decision:
        """Same answer as `evaluate`, without the candidate cache (for tests and debugging)."""
        return self._decide(
            self._find_candidates(call.action_key, call.environment).rules, call, totals
        )

    def _decide(
        self, rules: tuple[_Rule, ...], call: Call, totals: Mapping[str, Any] | None
    ) -> Decision:
        matched: list[MatchedRule] = []
        best: MatchedRule | None = None
        best_rank = -1
        for rule in rules:
            outcome = rule.apply(call, totals)
            if outcome is None:
                continue
            entry = MatchedRule(rule.spec, *outcome)
            matched.append(entry)
            rank = _EFFECT_RANK[entry.effect]
            if rank > best_rank:  # strictly greater: ties keep the earlier rule
                best, best_rank = entry, rank
        if best is None:
            if self.default == ALLOW:
                return self._default_decision
            return Decision(
                decision=BLOCK,
                rule=None,
                reason=f"no rule allows '{call.action}' and the agent's default is block",
            )
        spec = best.rule
        return Decision(
            decision=best.effect,
            rule=spec,
            reason=best.reason,
            matched=tuple(matched),
            approval_timeout=spec.approval_timeout,
            approvals_required=spec.approvals_required,
            message=spec.message,
        )


# ---------------------------------------------------------------------------
# Shadow rules: evaluated after the answer, never part of it
# ---------------------------------------------------------------------------


@dataclass(slots=True)
class ShadowOutcome:
    """A shadow rule that applied to a call: ``decision`` is the answer the call would have
    had with this rule enforcing (the rest of the policy as it is), ``reason`` the rule's."""

    rule: RuleSpec
    decision: str
    reason: str

    def record(self) -> dict[str, str]:
        """What the check's audit entry keeps (``data["shadow"]``)."""
        return {
            "rule": self.rule.name,
            "rule_id": self.rule.id,
            "decision": self.decision,
            "reason": self.reason,
        }


class ShadowRules:
    """A policy's ``mode: shadow`` rules, compiled apart from the enforcing ones: after the
    enforcing decision, ``evaluate`` says what each shadow rule that applies would have made
    of the answer. Running-total limits read their totals (``budgets``) but never spend."""

    __slots__ = ("_policy",)

    def __init__(
        self, rules: tuple[RuleSpec, ...], recounting: frozenset[str], cache_size: int
    ) -> None:
        # Compiled as enforcing rules of a policy of their own (the candidate lookup and the
        # rule logic are the same); ``rule.id`` still names the shadow rule.
        self._policy = CompiledPolicy(
            tuple(replace(spec, mode=ENFORCE) for spec in rules),
            default=ALLOW,
            recounting=recounting,
            cache_size=cache_size,
        )

    def budgets(self, call: Call) -> tuple[Budget, ...]:
        """The budgets whose totals the shadow rules that may apply read (never spent)."""
        return self._policy.budgets(call)

    def evaluate(
        self,
        call: Call,
        decision: Decision,
        totals: Mapping[str, Decimal | int] | None = None,
        plan: PlanFeatures | None = None,
    ) -> tuple[ShadowOutcome, ...]:
        """The shadow rules that apply to ``call``, each with the answer it would have given.
        ``decision`` is the enforcing policy's, before the plan gate; each would-be answer
        goes through ``plan`` (when given) as a real one would."""
        rules = self._policy._candidates(call.action_key, call.environment).rules
        if not rules:
            return ()
        outcomes = []
        for rule in rules:
            applied = rule.apply(call, totals)
            if applied is None:
                continue
            effect, reason = applied
            # The rule wins when nothing else applied (the default decided) or when it is
            # more restrictive than what did; otherwise the answer stays what it was.
            wins = decision.rule is None or _EFFECT_RANK[effect] > _EFFECT_RANK[decision.decision]
            would = (
                Decision(
                    decision=effect,
                    rule=rule.spec,
                    reason=reason,
                    approvals_required=rule.spec.approvals_required,
                )
                if wins
                else decision
            )
            if plan is not None:
                would = plan_gate(would, plan)
            outcomes.append(ShadowOutcome(rule.spec, would.decision, reason))
        return tuple(outcomes)


def compile_policy(
    rules: Iterable[RuleSpec], *, default: str = ALLOW, recounting: Iterable[str] = ()
) -> CompiledPolicy:
    """Compile validated rules (from ``agents.policy_document``) for evaluation.
    ``recounting``: ids of rules whose running totals are being recounted (their limits
    apply to every call they would count until then)."""
    if default not in DEFAULTS:
        raise InvalidPolicy(f"default must be allow or block, not {default!r}")
    specs = tuple(rules)
    seen_ids: set[str] = set()
    for spec in specs:
        if not isinstance(spec, RuleSpec):
            raise InvalidPolicy(f"expected RuleSpec, got {type(spec).__name__}")
        if spec.id and spec.id in seen_ids:
            raise InvalidPolicy(f"duplicate rule id {spec.id!r}")
        seen_ids.add(spec.id)
    return CompiledPolicy(specs, default=default, recounting=frozenset(recounting))


# ---------------------------------------------------------------------------
# Plan gating: one step of the check path, after the policy has decided
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlanFeatures:
    approvals_enabled: bool = True
    approvals_plan: str = "Pro"
    quorum_enabled: bool = True
    quorum_plan: str = "Business"


def plan_gate(decision: Decision, plan: PlanFeatures) -> Decision:
    """A ``requires_approval`` decision on a plan that cannot hold calls (or cannot reach the
    rule's quorum) becomes ``block``, with a reason naming the plan that would allow it."""
    if decision.decision != REQUIRES_APPROVAL or decision.rule is None:
        return decision
    spec = decision.rule
    if not plan.approvals_enabled:
        plan_reason = (
            f"rule '{spec.name}' requires approval, which needs the "
            f"{plan.approvals_plan} plan or higher"
        )
    elif spec.approvals_required > 1 and not plan.quorum_enabled:
        # Nobody could ever complete the quorum on this plan: refuse now, not at expiry.
        plan_reason = (
            f"rule '{spec.name}' requires {spec.approvals_required} approvals, which needs the "
            f"{plan.quorum_plan} plan or higher"
        )
    else:
        return decision
    reason = (
        plan_reason
        if decision.reason == _plain_reason(spec)
        else (f"{decision.reason}; {plan_reason}")
    )
    return Decision(
        decision=BLOCK,
        rule=spec,
        reason=reason,
        matched=decision.matched,
        approval_timeout=decision.approval_timeout,
        approvals_required=decision.approvals_required,
        message=decision.message,
    )
