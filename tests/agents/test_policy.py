"""The pure evaluator (agents/policy.py): operators, the three-valued logic that fails closed,
rules, limits, precedence, plan gating, caching."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.policy import (
    CANDIDATE_CACHE_SIZE,
    NO_POLICY_CONFIGURED,
    OPS,
    Call,
    Cond,
    Decision,
    InvalidPolicy,
    PlanFeatures,
    RuleSpec,
    action_matches,
    action_name_problem,
    action_pattern_is_valid,
    budget_key_value,
    compile_condition,
    compile_policy,
    format_duration,
    parse_duration,
    plan_gate,
)
from agents.policy_document import rule_spec_from_mapping

_ids = itertools.count(1)


def rule(
    name: str = "r", action: str = "stripe.refund", effect: str = "block", **fields: Any
) -> RuleSpec:
    """A validated rule from its document keys (plus id, position, scope and lists)."""
    rule_id = fields.pop("id", f"rule-{next(_ids)}")
    position = fields.pop("position", 0)
    scope = fields.pop("scope", "agent")
    lists = fields.pop("lists", None)
    mapping = {"name": name, "action": action, "effect": effect, **fields}
    return rule_spec_from_mapping(mapping, lists=lists, id=rule_id, position=position, scope=scope)


def decide(
    rules: list[RuleSpec],
    action: str = "stripe.refund",
    arguments: dict[str, Any] | None = None,
    environment: str = "live",
    totals: dict[str, Any] | None = None,
    default: str = "allow",
    plan: PlanFeatures | None = None,
    **context: Any,
) -> Decision:
    policy = compile_policy(rules, default=default)
    decision = policy.evaluate(Call(action, arguments or {}, environment, **context), totals)
    return plan_gate(decision, plan) if plan is not None else decision


def holds(op: str, value: Any, arguments: dict[str, Any], field: str = "x") -> bool | None:
    """The three-valued answer of one condition."""
    return compile_condition(Cond(field, op, value))(Call("t", arguments))


def blocks(when: Any, arguments: dict[str, Any], **fields: Any) -> bool:
    return decide([rule("c", when=when, **fields)], arguments=arguments).decision == "block"


# ---------------------------------------------------------------------------
# Operators: True, False, or None (undecidable)
# ---------------------------------------------------------------------------

OPERATOR_TABLE = [
    # op, rule value, arguments, answer
    ("eq", "vip", {"x": "vip"}, True),
    ("eq", "vip", {"x": "VIP"}, False),
    ("eq", 1, {"x": 1.0}, True),
    ("eq", 1, {"x": "1"}, True),  # a numeric string is the number it spells
    ("eq", 5000, {"x": "5e3"}, True),
    ("eq", Decimal("0.1"), {"x": 0.1}, True),
    ("eq", 1, {"x": True}, None),  # a boolean is not a number
    ("eq", True, {"x": 1}, None),
    ("eq", True, {"x": True}, True),
    ("eq", None, {"x": None}, True),
    ("eq", None, {"x": 0}, False),
    ("eq", "1", {"x": "01"}, False),  # two strings compare as text
    ("eq", "1", {"x": 1}, True),
    ("eq", "vip", {"x": 5}, None),
    ("eq", "vip", {"x": {"value": "vip"}}, None),  # wrapping does not slip past a rule
    ("eq", "vip", {"x": ["vip"]}, None),
    ("eq", ("a", "b"), {"x": ["a", "b"]}, True),
    ("eq", ("a", "b"), {"x": ["a"]}, False),
    ("eq", "vip", {}, None),  # missing
    ("eq", 1, {"x": math.nan}, None),
    ("ne", "vip", {"x": "basic"}, True),
    ("ne", "vip", {"x": "vip"}, False),
    ("ne", "vip", {}, None),
    ("ne", 1, {"x": True}, None),
    ("gt", 100, {"x": 101}, True),
    ("gt", 100, {"x": 100}, False),
    ("gt", 100, {"x": Decimal("100.01")}, True),
    ("gt", 100, {"x": 100.5}, True),
    ("gt", 100, {"x": "150"}, True),
    ("gt", 1000, {"x": "5e3"}, True),
    ("gt", 1000, {"x": " 5000 "}, True),
    ("gt", 100, {"x": -150}, False),  # a negative number is a number
    ("gt", 0, {"x": True}, None),
    ("gt", 100, {}, None),
    ("gt", 100, {"x": math.nan}, None),
    ("gt", 100, {"x": math.inf}, None),
    ("gt", 100, {"x": "Infinity"}, None),
    ("gt", 100, {"x": "abc"}, None),
    ("gt", 100, {"x": {"value": 5000}}, None),
    ("gt", Decimal("0.1"), {"x": 0.1}, False),
    ("gte", 100, {"x": 100}, True),
    ("gte", 100, {"x": 99.99}, False),
    ("gte", 100, {"x": None}, None),
    ("lt", 100, {"x": 99}, True),
    ("lt", 100, {"x": 100}, False),
    ("lt", 100, {"x": [1]}, None),
    ("lte", 100, {"x": 100}, True),
    ("lte", 100, {"x": 100.0001}, False),
    ("lte", 100, {}, None),
    ("in", ("a", "b"), {"x": "a"}, True),
    ("in", ("a", "b"), {"x": "c"}, False),
    ("in", (1, 2), {"x": 2.0}, True),
    ("in", (1, 2), {"x": "2"}, True),
    ("in", (1, 2), {"x": True}, None),
    ("in", (1, 2), {"x": "two"}, None),
    ("in", ("a", 2), {"x": "c"}, False),
    ("in", ("a",), {"x": ["a"]}, None),
    ("in", ("a",), {}, None),
    ("in", ("a", None), {"x": None}, True),
    ("not_in", ("a", "b"), {"x": "c"}, True),
    ("not_in", ("a", "b"), {"x": "a"}, False),
    ("not_in", ("a", "b"), {}, None),
    ("not_in", ("a", "b"), {"x": {"a": 1}}, None),
    ("contains", "DROP", {"x": "please DROP TABLE"}, True),
    ("contains", "drop", {"x": "please DROP TABLE"}, False),
    ("contains", "a", {"x": ["a", "b"]}, True),
    ("contains", "DROP", {"x": ["ok", "please DROP TABLE"]}, True),  # text in a list
    ("contains", "DROP", {"x": ["ok", 5, None]}, False),
    ("contains", "DROP", {"x": ["ok", {"q": "DROP"}]}, None),  # could hide it
    ("contains", 2, {"x": [1, 2.0]}, True),
    ("contains", 2, {"x": [1, "b"]}, None),
    ("contains", "c", {"x": ["a", "b"]}, False),
    ("contains", 1, {"x": "1"}, None),
    ("contains", "a", {"x": {"a": 1}}, None),
    ("contains", "a", {}, None),
    ("icontains", "drop", {"x": "please DROP TABLE"}, True),
    ("icontains", "drop", {"x": "select"}, False),
    ("icontains", "drop", {"x": ["SELECT", "Drop table"]}, True),
    ("icontains", "drop", {"x": 5}, None),
    ("startswith", "prod-", {"x": "prod-db"}, True),
    ("startswith", "prod-", {"x": "dev-db"}, False),
    ("startswith", "1", {"x": 123}, None),
    ("startswith", "prod-", {}, None),
    ("endswith", ".exe", {"x": "setup.exe"}, True),
    ("endswith", ".exe", {"x": "setup.msi"}, False),
    ("endswith", ".exe", {"x": ["setup.exe"]}, None),
    ("ieq", "USD", {"x": "usd"}, True),
    ("ieq", "USD", {"x": "eur"}, False),
    ("ieq", "USD", {"x": 840}, None),
    ("matches", r"^\d{3}-\d{4}$", {"x": "555-1234"}, True),
    ("matches", r"secret", {"x": "a secret here"}, True),
    ("matches", r"^secret", {"x": "a secret here"}, False),
    ("matches", r"\d", {"x": 5}, None),
    ("matches", r"\d", {}, None),
    ("exists", True, {"x": 1}, True),
    ("exists", True, {"x": None}, True),
    ("exists", True, {}, False),
    ("exists", False, {}, True),
    ("exists", False, {"x": 0}, False),
    ("cidr", "10.0.0.0/8", {"x": "10.1.2.3"}, True),
    ("cidr", "10.0.0.0/8", {"x": "192.168.1.1"}, False),
    ("cidr", "10.0.0.0/8", {"x": "::ffff:10.1.2.3"}, True),  # IPv4-mapped IPv6
    ("cidr", ("10.0.0.0/8", "fd00::/8"), {"x": "fd00::1"}, True),
    ("cidr", "10.0.0.0/8", {"x": "010.1.2.3"}, None),  # leading zeros: not an address
    ("cidr", "10.0.0.0/8", {"x": "ten"}, None),
    ("cidr", "10.0.0.0/8", {"x": 167837955}, None),
    ("email_domain_in", ("mailinator.com",), {"x": "a@mailinator.com"}, True),
    ("email_domain_in", ("mailinator.com",), {"x": "a@MAILINATOR.COM."}, True),
    ("email_domain_in", ("mailinator.com",), {"x": "a@eu.mailinator.com"}, True),
    ("email_domain_in", ("mailinator.com",), {"x": "a@notmailinator.com"}, False),
    ("email_domain_in", ("mailinator.com",), {"x": "a@corp.com"}, False),
    ("email_domain_in", ("mailinator.com",), {"x": "a@b@mailinator.com"}, None),
    ("email_domain_in", ("mailinator.com",), {"x": "no-at-sign"}, None),
    ("email_domain_in", ("mailinator.com",), {"x": ["a@mailinator.com"]}, None),
]


@pytest.mark.parametrize(("op", "value", "arguments", "answer"), OPERATOR_TABLE)
def test_condition_operator_answers_as_specified(
    op: str, value: Any, arguments: dict[str, Any], answer: bool | None
) -> None:
    assert holds(op, value, arguments) is answer


def test_operator_table_covers_every_operator() -> None:
    assert {row[0] for row in OPERATOR_TABLE} == set(OPS)


WEIRD_SUBJECTS = [None, True, 0, -1.5, math.inf, math.nan, Decimal("NaN"), "", "text", b"bytes"]
WEIRD_SUBJECTS += [[], [1, [2]], {}, {"a": {"b": 1}}, object(), "\ud800", "a\x00b"]
VALUES_FOR_OP = {
    "eq": 1,
    "ne": "a",
    "gt": 1,
    "gte": 1.5,
    "lt": Decimal("2"),
    "lte": 0,
    "in": ("a", 1),
    "not_in": ("a", 1),
    "contains": "a",
    "icontains": "a",
    "startswith": "a",
    "endswith": "a",
    "ieq": "a",
    "matches": "a+",
    "exists": True,
    "cidr": "10.0.0.0/8",
    "email_domain_in": ("a.com",),
}


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("subject", WEIRD_SUBJECTS, ids=repr)
def test_condition_never_raises_on_odd_input(op: str, subject: Any) -> None:
    assert holds(op, VALUES_FOR_OP[op], {"x": subject}) in (True, False, None)


@pytest.mark.parametrize(
    ("field", "arguments", "answer"),
    [
        ("customer.tier", {"customer": {"tier": "vip"}}, True),
        ("customer.tier", {"customer": {"tier": "basic"}}, False),
        ("customer.tier", {"customer": "vip"}, None),
        ("customer.tier", {"customer.tier": "vip"}, True),
        ("customer.tier", {"customer.tier": "vip", "customer": {"tier": "vip"}}, True),
        # A dotted key and the nested path disagree: which one the tool reads is unknown.
        ("customer.tier", {"customer.tier": "vip", "customer": {"tier": "basic"}}, None),
        ("items.0.sku", {"items": [{"sku": "vip"}]}, True),
        ("items.1.sku", {"items": [{"sku": "vip"}]}, None),
        ("a.b.c", {"a": {"b": {"c": "vip"}}}, True),
    ],
)
def test_a_field_is_a_dot_path_into_the_arguments(
    field: str, arguments: dict[str, Any], answer: bool | None
) -> None:
    assert holds("eq", "vip", arguments, field=field) is answer


@pytest.mark.parametrize(
    ("arguments", "answer"),
    [
        ({"items": [{"amount": 100}, {"amount": 600}]}, True),
        ({"items": [{"amount": 100}, {"amount": 200}]}, False),
        ({"items": []}, False),
        ({"items": [{"amount": 100}, {"sku": "x"}]}, None),  # one element has no amount
        ({"items": [{"amount": 100}, {"amount": "lots"}]}, None),
        ({"items": [{"amount": "900"}]}, True),
        ({"items": {"a": {"amount": 900}}}, True),  # the values of an object
        ({"items": "not a list"}, None),
        ({}, None),
    ],
)
def test_a_wildcard_segment_holds_when_any_element_holds(
    arguments: dict[str, Any], answer: bool | None
) -> None:
    assert holds("gt", 500, arguments, field="items.*.amount") is answer


# ---------------------------------------------------------------------------
# Undecidable conditions fail closed
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arguments",
    [
        {"amount": "5000"},
        {"amount": "5e3"},
        {"amount": 5000.0},
        {"amount": {"value": 5000}},
        {"amount": [5000]},
        {"amount": "abc"},
        {"amount": None},
        {"amount": True},
        {"amount": math.nan},
        {"amount": math.inf},
        {},
        {"Amount": 5000},
    ],
)
def test_a_restrictive_rule_holds_on_anything_that_is_not_a_clear_no(
    arguments: dict[str, Any],
) -> None:
    hold = rule(
        "big", effect="requires_approval", when=[{"field": "amount", "op": "gt", "value": 1000}]
    )
    assert decide([hold], arguments=arguments).decision == "requires_approval"


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        ({}, "amount is missing, so rule 'big' applies"),
        ({"amount": "abc"}, "amount is not a number, so rule 'big' applies"),
        ({"amount": {"value": 5000}}, "amount is not a number, so rule 'big' applies"),
    ],
)
def test_the_reason_says_why_a_condition_could_not_be_decided(
    arguments: dict[str, Any], reason: str
) -> None:
    hold = rule(
        "big", effect="requires_approval", when=[{"field": "amount", "op": "gt", "value": 1000}]
    )
    assert decide([hold], arguments=arguments).reason == reason


def test_an_allow_rule_does_not_allow_on_an_undecidable_condition() -> None:
    permit = rule("small", effect="allow", when=[{"field": "amount", "op": "lt", "value": 100}])
    assert decide([permit], arguments={"amount": 50}, default="block").decision == "allow"
    for arguments in ({"amount": "lots"}, {}, {"amount": {"value": 5}}):
        result = decide([permit], arguments=arguments, default="block")
        assert (result.decision, result.rule) == ("block", None)


def test_a_clear_no_still_does_not_match() -> None:
    hold = rule(
        "big", effect="requires_approval", when=[{"field": "amount", "op": "gt", "value": 1000}]
    )
    assert decide([hold], arguments={"amount": "50"}).reason == NO_POLICY_CONFIGURED


def test_non_mapping_arguments_are_treated_as_empty() -> None:
    needs_field = rule("needs field", when=[{"field": "x", "op": "exists", "value": False}])
    policy = compile_policy([needs_field])
    call = Call("stripe.refund", ["not", "a", "mapping"], "live")  # type: ignore[arg-type]
    assert policy.evaluate(call).decision == "block"


CATASTROPHIC = r"(a|aa)+$"
CATASTROPHIC_SUBJECT = "a" * 4000 + "b"


def test_catastrophic_regex_on_block_rule_fails_safe_to_block() -> None:
    guard = rule("sql guard", when=[{"field": "q", "op": "matches", "value": CATASTROPHIC}])
    decision = decide([guard], arguments={"q": CATASTROPHIC_SUBJECT})
    assert decision.decision == "block"
    assert decision.reason == (
        "pattern condition on q could not be checked safely (input too long or pattern too "
        "slow), so rule 'sql guard' applies"
    )


def test_catastrophic_regex_on_allow_rule_does_not_allow() -> None:
    permit = rule(
        "permit", effect="allow", when=[{"field": "q", "op": "matches", "value": CATASTROPHIC}]
    )
    decision = decide([permit], arguments={"q": CATASTROPHIC_SUBJECT}, default="block")
    assert (decision.decision, decision.rule) == ("block", None)


def test_an_undecidable_condition_does_not_override_one_that_clearly_fails() -> None:
    guard = rule(
        "sql guard",
        when=[
            {"field": "q", "op": "matches", "value": CATASTROPHIC},
            {"field": "db", "op": "eq", "value": "prod"},
        ],
    )
    assert decide([guard], arguments={"q": CATASTROPHIC_SUBJECT, "db": "dev"}).decision == "allow"


def test_regex_subject_over_the_length_cap_fails_safe() -> None:
    guard = rule(
        "secret guard",
        effect="requires_approval",
        when=[{"field": "q", "op": "matches", "value": "x"}],
    )
    assert decide([guard], arguments={"q": "y" * 5000}).decision == "requires_approval"


# ---------------------------------------------------------------------------
# any / all / not / unless
# ---------------------------------------------------------------------------

LARGE_OR_FOREIGN = {
    "any": [
        {"field": "amount", "op": "gt", "value": 1000},
        {
            "all": [
                {"field": "currency", "op": "ne", "value": "USD"},
                {"not": {"field": "customer.tier", "op": "eq", "value": "vip"}},
            ]
        },
    ]
}


@pytest.mark.parametrize(
    ("arguments", "held"),
    [
        ({"amount": 5000, "currency": "USD", "customer": {"tier": "basic"}}, True),
        ({"amount": 50, "currency": "USD", "customer": {"tier": "basic"}}, False),
        ({"amount": 50, "currency": "EUR", "customer": {"tier": "basic"}}, True),
        ({"amount": 50, "currency": "EUR", "customer": {"tier": "vip"}}, False),
        ({"amount": 5000, "currency": "EUR", "customer": {"tier": "vip"}}, True),
        # Undecidable parts: a clear answer elsewhere decides, otherwise the rule holds.
        ({"amount": 5000, "currency": 978}, True),
        ({"amount": 50, "currency": "EUR"}, True),  # tier missing: not(None) is None
        ({"amount": 50, "currency": "USD"}, False),  # all() is False whatever the tier
        ({"amount": "x", "currency": "USD", "customer": {"tier": "basic"}}, True),
    ],
)
def test_nested_any_all_not(arguments: dict[str, Any], held: bool) -> None:
    refunds = rule("large or foreign", effect="requires_approval", when=LARGE_OR_FOREIGN)
    assert (decide([refunds], arguments=arguments).decision == "requires_approval") is held


def test_when_as_a_list_means_all() -> None:
    both = rule(
        "both",
        when=[{"field": "a", "op": "eq", "value": 1}, {"field": "b", "op": "eq", "value": 2}],
    )
    assert decide([both], arguments={"a": 1, "b": 2}).decision == "block"
    assert decide([both], arguments={"a": 1, "b": 3}).decision == "allow"


@pytest.mark.parametrize(
    ("action", "decision"),
    [
        ("database.users.delete", "block"),
        ("database.scratch.delete", "allow"),
        ("Database.Scratch.Delete", "allow"),
    ],
)
def test_unless_lists_exceptions(action: str, decision: str) -> None:
    no_deletes = rule(
        "no deletes except scratch",
        action="database.*.delete",
        unless=[{"field": "$action", "op": "eq", "value": "database.scratch.delete"}],
    )
    assert decide([no_deletes], action=action).decision == decision


def test_an_undecidable_exception_does_not_lift_a_block() -> None:
    no_refunds = rule(
        "no refunds",
        unless=[{"field": "approved_by", "op": "startswith", "value": "finance-"}],
    )
    assert decide([no_refunds], arguments={"approved_by": "finance-bob"}).decision == "allow"
    assert decide([no_refunds], arguments={"approved_by": 7}).decision == "block"
    assert decide([no_refunds], arguments={}).decision == "block"


# ---------------------------------------------------------------------------
# Context fields
# ---------------------------------------------------------------------------


def test_time_hour_is_read_in_the_organisations_time_zone() -> None:
    after_hours = rule(
        "business hours only",
        action="payments.*",
        effect="requires_approval",
        when=[{"field": "$time.hour", "op": "not_in", "value": list(range(9, 17))}],
    )
    at = datetime(2026, 12, 2, 8, 30, tzinfo=UTC)  # 08:30 UTC, 09:30 in Paris
    utc = decide([after_hours], action="payments.send", at=at)
    paris = decide([after_hours], action="payments.send", at=at, timezone=ZoneInfo("Europe/Paris"))
    assert (utc.decision, paris.decision) == ("requires_approval", "allow")


def test_time_weekday_counts_from_monday() -> None:
    weekend = rule(
        "weekend",
        when=[{"field": "$time.weekday", "op": "in", "value": [5, 6]}],
    )
    saturday = datetime(2026, 12, 5, 12, tzinfo=UTC)
    wednesday = datetime(2026, 12, 2, 12, tzinfo=UTC)
    assert decide([weekend], at=saturday).decision == "block"
    assert decide([weekend], at=wednesday).decision == "allow"


@pytest.mark.parametrize(
    ("when", "context", "blocked"),
    [
        ({"field": "$environment", "op": "eq", "value": "live"}, {}, True),
        ({"field": "$session", "op": "startswith", "value": "ci-"}, {"session_id": "ci-7"}, True),
        ({"field": "$session", "op": "startswith", "value": "ci-"}, {"session_id": "dev"}, False),
        ({"field": "$session", "op": "startswith", "value": "ci-"}, {}, True),  # missing
        (
            {"field": "$metadata.user.role", "op": "ne", "value": "admin"},
            {"metadata": {"user": {"role": "intern"}}},
            True,
        ),
        (
            {"field": "$metadata.user.role", "op": "ne", "value": "admin"},
            {"metadata": {"user": {"role": "admin"}}},
            False,
        ),
    ],
)
def test_context_fields(when: dict[str, Any], context: dict[str, Any], blocked: bool) -> None:
    assert (decide([rule("ctx", when=[when])], **context).decision == "block") is blocked


def test_lists_are_named_in_in_and_email_domain_in() -> None:
    lists = {"blocked_domains": ("mailinator.com", "tempmail.dev")}
    throwaway = rule(
        "no throwaway addresses",
        action="email.send",
        when=[{"field": "to", "op": "email_domain_in", "value": "$lists.blocked_domains"}],
        lists=lists,
    )
    assert decide([throwaway], "email.send", {"to": "x@tempmail.dev"}).decision == "block"
    assert decide([throwaway], "email.send", {"to": "x@corp.com"}).decision == "allow"


# ---------------------------------------------------------------------------
# Action names and patterns
# ---------------------------------------------------------------------------

GLOB_TABLE = [
    ("stripe.refund", "stripe.refund", True),
    ("stripe.refund", "Stripe.Refund", True),
    ("Stripe.Refund", "stripe.refund", True),
    ("stripe.refund", "stripe.refunds", False),
    ("stripe.refund", "stripe.refund.full", False),
    ("database.*.delete", "database.users.delete", True),
    ("database.*.delete", "DATABASE.users.DELETE", True),
    ("database.*.delete", "database.delete", False),
    ("database.*.delete", "database.a.b.delete", False),
    ("stripe.refund.*", "stripe.refund.full", True),
    ("stripe.refund.*", "stripe.refund.a.b", True),
    ("stripe.refund.*", "stripe.refund", False),
    ("stripe.*", "stripe.refund.full", True),
    ("*", "anything", True),
    ("*", "any.thing.at.all", True),
    ("*.delete", "users.delete", True),
    ("*.delete", "db.users.delete", False),
    ("stripe.refund_*", "stripe.refund_full", True),
    ("stripe.refund_*", "stripe.refund_", True),
    ("stripe.refund_*", "stripe.refund_a.b", False),
    ("stripe.*_refund", "stripe.issue_refund", True),
    ("stripe.re*nd", "stripe.refund", True),
    ("stripe.re*nd", "stripe.rend", True),
    ("mcp:github/create-issue", "MCP:GitHub/Create-Issue", True),
]


@pytest.mark.parametrize(("pattern", "action", "expected"), GLOB_TABLE)
def test_action_pattern_matching_ignores_case(pattern: str, action: str, expected: bool) -> None:
    assert action_matches(pattern, action) is expected
    assert (decide([rule(action=pattern)], action=action).decision == "block") is expected


@pytest.mark.parametrize(
    ("pattern", "valid"),
    [
        ("stripe.refund", True),
        ("database.*.delete", True),
        ("*", True),
        ("stripe.refund_*", True),
        ("mcp:github/create-issue", True),
        ("user@host.send", True),
        ("", False),
        ("stripe..refund", False),
        (".stripe", False),
        ("stripe.", False),
        ("stripe refund", False),
        ("stripe.refund ", False),
        ("stripe.**", False),
        ("a+b.(c)", False),
        ("caf\u00e9.order", False),
        ("a" * 201, False),
        (None, False),
        (42, False),
    ],
)
def test_action_pattern_validation(pattern: Any, valid: bool) -> None:
    assert action_pattern_is_valid(pattern) is valid


@pytest.mark.parametrize(
    ("action", "problem"),
    [
        ("stripe.refund", None),
        ("Database.users.delete", None),
        ("mcp.github.create_issue", None),
        ("a" * 200, None),
        ("a" * 201, "must be at most 200 characters"),
        ("database.users.delete ", "no whitespace or control characters"),
        (" stripe.refund", "no whitespace or control characters"),
        ("stripe\trefund", "no whitespace or control characters"),
        ("stripe.refund\x00", "no whitespace or control characters"),
        ("stripe.refund\n", "no whitespace or control characters"),
        ("stripe..refund", "dot-separated segments"),
        ("stripe.*", "dot-separated segments"),
        ("\u0455tripe.refund", "ASCII"),  # Cyrillic s
        ("", "must not be empty"),
        (5, "must be a string"),
    ],
)
def test_action_names_are_checked(action: Any, problem: str | None) -> None:
    found = action_name_problem(action)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


# ---------------------------------------------------------------------------
# Environments and enabled
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environments", "environment", "matches"),
    [
        (["live"], "live", True),
        (["live"], "test", False),
        (["test"], "test", True),
        (["test", "live"], "test", True),
        (["test", "live"], "live", True),
    ],
)
def test_rule_applies_only_in_its_environments(
    environments: list[str], environment: str, matches: bool
) -> None:
    decision = decide([rule(environments=environments)], environment=environment)
    assert (decision.decision == "block") is matches


def test_disabled_rule_never_matches() -> None:
    assert decide([rule(enabled=False)]).reason == NO_POLICY_CONFIGURED


# ---------------------------------------------------------------------------
# max_amount
# ---------------------------------------------------------------------------

REFUND_LIMIT = {"name": "refund limit", "effect": "requires_approval", "max_amount": 100}


@pytest.mark.parametrize(
    ("arguments", "decision", "reason"),
    [
        ({"amount": 50}, "allow", "amount 50 within max_amount 100 of rule 'refund limit'"),
        ({"amount": 0}, "allow", "amount 0 within max_amount 100 of rule 'refund limit'"),
        ({"amount": 100}, "allow", "amount 100 within max_amount 100 of rule 'refund limit'"),
        ({"amount": "99.5"}, "allow", "amount 99.5 within max_amount 100 of rule 'refund limit'"),
        ({"amount": 100.01}, "requires_approval", "amount 100.01 exceeds max_amount 100"),
        ({"amount": 150}, "requires_approval", "amount 150 exceeds max_amount 100"),
        ({"amount": "150"}, "requires_approval", "amount 150 exceeds max_amount 100"),
        ({"amount": -150}, "requires_approval", "amount -150 is negative"),
        ({"amount": "-0.01"}, "requires_approval", "amount -0.01 is negative"),
        ({}, "requires_approval", "amount is missing"),
        ({"amount": "lots"}, "requires_approval", "amount is not a number"),
        ({"amount": True}, "requires_approval", "amount is not a number"),
        ({"amount": math.nan}, "requires_approval", "amount is not a number"),
        ({"amount": "Infinity"}, "requires_approval", "amount is not a number"),
        ({"amount": -math.inf}, "requires_approval", "amount is not a number"),
        ({"amount": {"value": 5}}, "requires_approval", "amount is not a number"),
    ],
)
def test_max_amount_allows_up_to_the_limit_and_applies_the_effect_otherwise(
    arguments: dict[str, Any], decision: str, reason: str
) -> None:
    result = decide([rule(**REFUND_LIMIT)], arguments=arguments)
    assert result.decision == decision
    assert result.reason.startswith(reason)
    assert result.rule is not None and result.rule.name == "refund limit"


def test_max_amount_reads_a_nested_amount_field() -> None:
    capped = rule(**REFUND_LIMIT, amount_field="payment.total")
    assert decide([capped], arguments={"payment": {"total": 150}}).decision == "requires_approval"
    assert decide([capped], arguments={"payment": {"total": 15}}).decision == "allow"


def test_max_amount_with_block_effect_blocks_above_the_limit() -> None:
    result = decide([rule("cap", max_amount="10.50")], arguments={"amount": 11})
    assert (result.decision, result.reason) == (
        "block",
        "amount 11 exceeds max_amount 10.5 of rule 'cap'",
    )


def test_float_max_amount_is_compared_as_the_decimal_it_reads_as() -> None:
    assert decide([rule("cap", max_amount=0.3)], arguments={"amount": "0.3"}).decision == "allow"


def test_an_allow_rule_with_max_amount_allows_only_within_it() -> None:
    small = rule("small refunds", effect="allow", max_amount=100)
    assert decide([small], arguments={"amount": 50}, default="block").decision == "allow"
    for arguments in ({"amount": 500}, {"amount": -5}, {}):
        result = decide([small], arguments=arguments, default="block")
        assert (result.decision, result.rule) == ("block", None)


# ---------------------------------------------------------------------------
# Running-total limits
# ---------------------------------------------------------------------------


def bulk_email(**limit: Any) -> RuleSpec:
    return rule(
        "bulk email",
        action="email.send",
        limit={"count": 5, "per": "1h", **limit},
        id="bulk",
    )


@pytest.mark.parametrize(
    ("total", "decision", "reason"),
    [
        (0, "allow", "1st call in 1h within limit of 5 per 1h of rule 'bulk email'"),
        (3, "allow", "4th call in 1h within limit of 5 per 1h of rule 'bulk email'"),
        (4, "allow", "5th call in 1h within limit of 5 per 1h of rule 'bulk email'"),
        (5, "block", "6th call in 1h exceeds limit of 5 per 1h of rule 'bulk email'"),
        (10, "block", "11th call in 1h exceeds limit of 5 per 1h of rule 'bulk email'"),
    ],
)
def test_count_limit_at_the_boundary(total: int, decision: str, reason: str) -> None:
    result = decide([bulk_email()], action="email.send", totals={"bulk": total})
    assert (result.decision, result.reason) == (decision, reason)


@pytest.mark.parametrize("totals", [None, {}, {"bulk": "garbage"}])
def test_count_limit_without_a_usable_total_fails_safe(totals: dict[str, Any] | None) -> None:
    result = decide([bulk_email()], action="email.send", totals=totals)
    assert result.decision == "block"
    assert "unavailable" in result.reason


def refund_budget(**fields: Any) -> RuleSpec:
    return rule(
        "daily refund budget",
        effect="requires_approval",
        limit={"sum": "amount", "over": 2000, "per": "1d"},
        id="budget",
        **fields,
    )


@pytest.mark.parametrize(
    ("total", "amount", "decision", "reason"),
    [
        (0, 100, "allow", "amount total 100 in 1d within 2000 of rule 'daily refund budget'"),
        (1900, 100, "allow", "amount total 2000 in 1d within 2000 of rule 'daily refund budget'"),
        (
            Decimal("1900.01"),
            100,
            "requires_approval",
            "amount total 2000.01 in 1d would exceed 2000 of rule 'daily refund budget'",
        ),
        (2000, 150, "requires_approval", "amount total 2150 in 1d would exceed 2000"),
        (0, 2001, "requires_approval", "amount total 2001 in 1d would exceed 2000"),
        (0, "2001", "requires_approval", "amount total 2001 in 1d would exceed 2000"),
        (1000, -1000000, "requires_approval", "amount -1000000 is negative"),
        (0, "NaN", "requires_approval", "amount is not a number"),
    ],
)
def test_sum_limit_at_the_boundary(total: Any, amount: Any, decision: str, reason: str) -> None:
    result = decide([refund_budget()], arguments={"amount": amount}, totals={"budget": total})
    assert result.decision == decision
    assert result.reason.startswith(reason)


def test_sum_limit_with_missing_field_fails_safe() -> None:
    result = decide([refund_budget()], arguments={}, totals={"budget": 0})
    assert result.decision == "requires_approval"
    assert "amount is missing" in result.reason


@pytest.mark.parametrize(
    ("amount", "total", "decision", "reason_start"),
    [
        (50, 0, "allow", "amount 50 within max_amount 100"),
        (150, 0, "requires_approval", "amount 150 exceeds max_amount 100"),
        (50, 1990, "requires_approval", "amount total 2040 in 1d would exceed 2000"),
        (150, 1990, "requires_approval", "amount 150 exceeds max_amount 100"),
    ],
)
def test_rule_with_max_amount_and_limit_applies_the_more_restrictive(
    amount: int, total: int, decision: str, reason_start: str
) -> None:
    both = rule(
        "both",
        effect="requires_approval",
        max_amount=100,
        limit={"sum": "amount", "over": 2000, "per": "1d"},
        id="both",
    )
    result = decide([both], arguments={"amount": amount}, totals={"both": total})
    assert result.decision == decision
    assert result.reason.startswith(reason_start)


def test_budgets_name_the_limited_rules_that_apply_to_the_call() -> None:
    policy = compile_policy([bulk_email(), rule("plain", action="email.send")])
    (budget,) = policy.budgets(Call("email.send", {}, "live"))
    assert (budget.rule_id, budget.kind, budget.per_seconds, budget.amount) == (
        "bulk",
        "count",
        3600,
        1,
    )


@pytest.mark.parametrize(
    ("action", "environment", "arguments", "expected"),
    [
        ("stripe.refund", "live", {"amount": 5}, ("sum-glob",)),
        ("Stripe.Refund", "live", {"amount": 5}, ("sum-glob",)),
        ("stripe.refund", "test", {"amount": 5}, ()),
        ("stripe.charge", "live", {"amount": 5}, ("sum-glob",)),
        ("stripe.charge", "live", {"amount": -5}, ()),  # its rule applies whatever the total
        ("stripe.charge", "live", {}, ()),
        ("email.send", "live", {"amount": 5}, ()),
    ],
)
def test_budgets_follow_patterns_environments_and_usable_amounts(
    action: str, environment: str, arguments: dict[str, Any], expected: tuple[str, ...]
) -> None:
    glob = rule(
        "stripe budget",
        action="stripe.*",
        environments=["live"],
        limit={"sum": "amount", "over": 5, "per": "1m"},
        id="sum-glob",
    )
    policy = compile_policy([glob, rule("no limit", action="email.send")])
    budgets = policy.budgets(Call(action, arguments, environment))
    assert tuple(b.rule_id for b in budgets) == expected


def test_a_limit_counts_only_calls_its_when_holds_for() -> None:
    eur = rule(
        "euro budget",
        limit={"sum": "amount", "over": 100, "per": "1d"},
        when=[{"field": "currency", "op": "eq", "value": "EUR"}],
        id="eur",
    )
    policy = compile_policy([eur])
    assert policy.budgets(Call("stripe.refund", {"amount": 5, "currency": "USD"})) == ()
    assert len(policy.budgets(Call("stripe.refund", {"amount": 5, "currency": "EUR"}))) == 1
    # ... and does not limit the calls it does not count
    usd = decide([eur], arguments={"amount": 500, "currency": "USD"}, totals={"eur": 99})
    assert usd.decision == "allow"


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        ("cus_ABC", "cus_abc", True),
        ("cus_abc ", "cus_abc", True),
        (5, "5", True),
        (5, "5.0", True),
        (5, 5.0, True),
        ("cus_abc", "cus_abd", False),
        (True, "true", False),
    ],
)
def test_a_keyed_budget_ignores_case_spacing_and_number_format(
    first: Any, second: Any, same: bool
) -> None:
    assert (budget_key_value(first) == budget_key_value(second)) is same


def test_a_keyed_limit_has_one_budget_per_value() -> None:
    per_customer = rule(
        "per customer",
        limit={"sum": "amount", "over": 500, "per": "1d", "by": "customer_id"},
        id="pc",
    )
    per_session = rule("per session", limit={"count": 3, "per": "1h", "by": "$session"}, id="ps")
    policy = compile_policy([per_customer, per_session])
    budgets = policy.budgets(
        Call("stripe.refund", {"amount": 5, "customer_id": "CUS_1"}, session_id="s-9")
    )
    assert {(b.rule_id, b.by_value) for b in budgets} == {("pc", "s:cus_1"), ("ps", "s:s-9")}
    # Without a usable key the budget is unknown: the rule applies, no counter is read.
    for unusable in ({}, {"customer_id": None}, {"customer_id": {"id": 1}}, {"customer_id": " "}):
        budgets = policy.budgets(Call("stripe.refund", {"amount": 5, **unusable}))
        assert [b.rule_id for b in budgets] == []
        result = decide([per_customer], arguments={"amount": 5, **unusable}, totals={"pc": 0})
        assert result.decision == "block"
        assert "so the 1d limit of rule 'per customer' cannot be checked" in result.reason


# ---------------------------------------------------------------------------
# Combining rules
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("effects", "winner"),
    [
        (("allow", "block"), "block"),
        (("block", "allow"), "block"),
        (("allow", "requires_approval"), "requires_approval"),
        (("requires_approval", "block"), "block"),
        (("allow", "requires_approval", "block"), "block"),
        (("allow", "allow"), "allow"),
    ],
)
def test_most_restrictive_effect_wins(effects: tuple[str, ...], winner: str) -> None:
    rules = [rule(f"rule {i}", effect=e, position=i) for i, e in enumerate(effects)]
    result = decide(rules)
    assert result.decision == winner
    assert result.rule is not None and result.rule.effect == winner
    assert len(result.matched) == len(effects)


def test_a_rule_allowing_within_max_amount_loses_to_a_block_rule() -> None:
    cap = rule(**REFUND_LIMIT, position=0)
    ban = rule("no refunds", position=5)
    result = decide([cap, ban], arguments={"amount": 1})
    assert (result.decision, result.reason) == ("block", "blocked by rule 'no refunds'")


@pytest.mark.parametrize(
    ("specs", "winner"),
    [
        ([("first", 2, "agent"), ("second", 1, "agent")], "second"),
        ([("org rule", 1, "org"), ("agent rule", 1, "agent")], "agent rule"),
        ([("org rule", 0, "org"), ("agent rule", 1, "agent")], "org rule"),
        ([("earlier", 3, "agent"), ("later", 3, "agent")], "earlier"),
    ],
)
def test_ties_go_to_the_first_rule_by_position_then_agent_scope(
    specs: list[tuple[str, int, str]], winner: str
) -> None:
    rules = [rule(name, position=pos, scope=scope) for name, pos, scope in specs]
    result = decide(rules)
    assert result.rule is not None and result.rule.name == winner
    assert result.reason == f"blocked by rule '{winner}'"


def test_matched_lists_every_matching_rule_in_evaluation_order() -> None:
    rules = [
        rule("later", effect="allow", position=2),
        rule("first", effect="requires_approval", position=1),
        rule("other action", action="email.send"),
    ]
    result = decide(rules)
    assert [(m.rule.name, m.effect) for m in result.matched] == [
        ("first", "requires_approval"),
        ("later", "allow"),
    ]


@pytest.mark.parametrize(
    ("effect", "reason"),
    [
        ("block", "blocked by rule 'x'"),
        ("requires_approval", "rule 'x' requires approval"),
        ("allow", "allowed by rule 'x'"),
    ],
)
def test_plain_rule_reason_names_the_rule(effect: str, reason: str) -> None:
    assert decide([rule("x", effect=effect)]).reason == reason


def test_the_deciding_rules_message_is_on_the_decision() -> None:
    refunds = rule("big", effect="requires_approval", message="Finance reviews these.")
    assert decide([refunds]).message == "Finance reviews these."
    assert decide([rule("quiet")]).message == ""


# ---------------------------------------------------------------------------
# Defaults and the plan gate
# ---------------------------------------------------------------------------


def test_no_matching_rule_with_default_allow_is_no_policy_configured() -> None:
    result = decide([rule(action="other.action")])
    assert (result.decision, result.rule, result.reason) == ("allow", None, NO_POLICY_CONFIGURED)


def test_no_rules_at_all_is_no_policy_configured() -> None:
    assert decide([]).reason == NO_POLICY_CONFIGURED


def test_no_matching_rule_with_default_block_blocks() -> None:
    result = decide([], action="files.read", default="block")
    assert (result.decision, result.rule) == ("block", None)
    assert result.reason == "no rule allows 'files.read' and the agent's default is block"


def test_allow_rule_overrides_default_block() -> None:
    result = decide(
        [rule("reads ok", action="files.*", effect="allow")], "files.read", default="block"
    )
    assert (result.decision, result.reason) == ("allow", "allowed by rule 'reads ok'")


NO_APPROVALS = PlanFeatures(approvals_enabled=False, quorum_enabled=False)


def test_requires_approval_without_approvals_on_the_plan_becomes_block() -> None:
    result = decide([rule("refund limit", effect="requires_approval")], plan=NO_APPROVALS)
    assert result.decision == "block"
    assert (
        result.reason == "rule 'refund limit' requires approval, which needs the Pro plan or higher"
    )


def test_plan_block_reason_keeps_the_amount_explanation_and_names_the_configured_plan() -> None:
    result = decide(
        [rule(**REFUND_LIMIT)],
        arguments={"amount": 150},
        plan=PlanFeatures(approvals_enabled=False, approvals_plan="Team"),
    )
    assert result.decision == "block"
    assert result.reason == (
        "amount 150 exceeds max_amount 100 of rule 'refund limit'; "
        "rule 'refund limit' requires approval, which needs the Team plan or higher"
    )


def test_quorum_rule_without_quorum_on_the_plan_becomes_block_naming_the_plan() -> None:
    transfer = rule("big transfers", effect="requires_approval", approval={"approvals_required": 2})
    result = decide([transfer], plan=PlanFeatures(quorum_enabled=False))
    assert result.decision == "block"
    assert result.reason == (
        "rule 'big transfers' requires 2 approvals, which needs the Business plan or higher"
    )


def test_single_approver_rule_still_asks_for_approval_without_quorum_on_the_plan() -> None:
    result = decide(
        [rule("refunds", effect="requires_approval")], plan=PlanFeatures(quorum_enabled=False)
    )
    assert result.decision == "requires_approval"


def test_the_plan_gate_leaves_other_decisions_alone() -> None:
    for decision in (decide([rule("b")]), decide([]), decide([rule("a", effect="allow")])):
        assert plan_gate(decision, NO_APPROVALS) is decision


def test_decision_carries_approval_settings_of_the_deciding_rule() -> None:
    transfer = rule(
        "big transfers",
        effect="requires_approval",
        approval={"timeout": "30m", "approvals_required": 2},
    )
    result = decide([transfer])
    assert (result.approval_timeout, result.approvals_required) == (1800, 2)


def test_decision_without_a_rule_has_default_approval_settings() -> None:
    result = decide([])
    assert (result.approval_timeout, result.approvals_required) == (None, 1)


def test_compile_rejects_duplicate_rule_ids() -> None:
    with pytest.raises(InvalidPolicy, match="duplicate rule id"):
        compile_policy([rule(id="same"), rule(id="same")])


def test_compile_rejects_an_unknown_default() -> None:
    with pytest.raises(InvalidPolicy, match="default"):
        compile_policy([], default="deny")


# ---------------------------------------------------------------------------
# Durations
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("1h", 3600), ("1d", 86400), ("7d", 604800), ("90", 90)],
)
def test_parse_duration_accepts_units_and_plain_seconds(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


def test_parse_duration_accepts_an_integer() -> None:
    assert parse_duration(120) == 120


@pytest.mark.parametrize("text", ["", "1w", "1.5h", "-1h", "0s", "h", "1 hour", "367d", True, None])
def test_parse_duration_rejects_anything_else_with_a_clear_message(text: Any) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"), [(30, "30s"), (90, "90s"), (900, "15m"), (3600, "1h"), (604800, "7d")]
)
def test_format_duration_uses_the_largest_exact_unit(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


# ---------------------------------------------------------------------------
# Glob matching and the candidate cache
# ---------------------------------------------------------------------------

SEGMENTS = ["stripe", "refund", "db", "users", "delete", "send", "x_1"]
segment = st.sampled_from(SEGMENTS)
pattern_segment = st.one_of(segment, st.just("*"), st.sampled_from(["re*", "*_1", "s*d"]))
patterns = st.lists(pattern_segment, min_size=1, max_size=4).map(".".join)
actions = st.lists(segment, min_size=1, max_size=4).map(".".join)


def reference_match(pattern: str, action: str) -> bool:
    """Segment-by-segment reading of the pattern rules, independent of the compiled regex."""
    pattern, action = pattern.lower(), action.lower()
    if pattern == "*":
        return True
    p, a = pattern.split("."), action.split(".")
    if p[-1] == "*":
        if len(a) < len(p):
            return False
        a = [*a[: len(p) - 1], ".".join(a[len(p) - 1 :])]
    if len(p) != len(a):
        return False
    for ps, seg in zip(p, a, strict=True):
        if ps == "*":
            continue
        pieces = ps.split("*")
        if len(pieces) == 1:
            if ps != seg:
                return False
            continue
        if not (seg.startswith(pieces[0]) and seg.endswith(pieces[-1])):
            return False
        if len(seg) < len(pieces[0]) + len(pieces[-1]):
            return False
    return True


@settings(max_examples=300, deadline=None)
@given(pattern=patterns, action=actions, upper=st.booleans())
def test_glob_matching_agrees_with_a_segment_by_segment_reading(
    pattern: str, action: str, upper: bool
) -> None:
    action = action.upper() if upper else action
    assert action_matches(pattern, action) is reference_match(pattern, action)


rule_strategy = st.tuples(
    patterns,
    st.sampled_from(["allow", "requires_approval", "block"]),
    st.integers(0, 3),
    st.sampled_from(["agent", "org"]),
    st.sampled_from([["test"], ["live"], ["test", "live"]]),
    st.sampled_from([None, 10]),
)


@settings(max_examples=150, deadline=None)
@given(
    raw_rules=st.lists(rule_strategy, max_size=12),
    calls=st.lists(
        st.tuples(actions, st.sampled_from(["test", "live"]), st.sampled_from([None, 5, 50])),
        min_size=1,
        max_size=20,
    ),
    default=st.sampled_from(["allow", "block"]),
)
def test_cached_evaluation_gives_the_same_answers_as_uncached(
    raw_rules: list[tuple[Any, ...]], calls: list[tuple[str, str, Any]], default: str
) -> None:
    specs = [
        rule(
            f"rule {i}",
            action=pattern,
            effect=effect,
            id=f"r{i}",
            position=pos,
            scope=scope,
            environments=env,
            **({"max_amount": amount} if amount else {}),
        )
        for i, (pattern, effect, pos, scope, env, amount) in enumerate(raw_rules)
    ]
    from agents.policy import CompiledPolicy

    policy = CompiledPolicy(tuple(specs), default=default, cache_size=3)
    for action, environment, amount in calls * 2:
        call = Call(action, {} if amount is None else {"amount": amount}, environment)
        cached = policy.evaluate(call)
        assert cached == policy.evaluate_uncached(call)
        expected = [
            s.id
            for s in specs
            if environment in s.environments
            and reference_match(s.action, action)
            and not (s.effect == "allow" and s.max_amount is not None and amount != 5)
        ]
        assert sorted(m.rule.id for m in cached.matched) == sorted(expected)


def test_candidate_cache_stays_bounded() -> None:
    policy = compile_policy([rule(action="tool.*")])
    for i in range(CANDIDATE_CACHE_SIZE + 10):
        policy.evaluate(Call(f"tool.t{i}"))
    assert len(policy._cache) <= CANDIDATE_CACHE_SIZE
    assert policy.evaluate(Call("tool.t1")).decision == "block"
