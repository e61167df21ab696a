from __future__ import annotations

import itertools
import math
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.policy import (
    CANDIDATE_CACHE_SIZE,
    NO_POLICY_CONFIGURED,
    OPS,
    CompiledPolicy,
    Condition,
    Decision,
    InvalidPolicy,
    Limit,
    LimitQuery,
    RuleSpec,
    action_matches,
    action_pattern_is_valid,
    compile_policy,
    format_duration,
    parse_duration,
)

_ids = itertools.count(1)


def rule(
    name: str = "r", action: str = "stripe.refund", effect: str = "block", **fields: Any
) -> RuleSpec:
    fields.setdefault("id", f"rule-{next(_ids)}")
    return RuleSpec(name=name, action=action, effect=effect, **fields)


def decide(
    rules: list[RuleSpec],
    action: str = "stripe.refund",
    arguments: dict[str, Any] | None = None,
    environment: str = "live",
    totals: dict[str, Any] | None = None,
    **options: Any,
) -> Decision:
    policy = compile_policy(rules, **options)
    return policy.evaluate(action, arguments or {}, environment, totals)


def condition_holds(op: str, value: Any, arguments: dict[str, Any], field: str = "x") -> bool:
    blocking = rule("cond", conditions=(Condition(field, op, value),))
    return decide([blocking], arguments=arguments).decision == "block"


# ---------------------------------------------------------------------------
# Operators
# ---------------------------------------------------------------------------

OPERATOR_TABLE = [
    # op, rule value, arguments, holds
    ("eq", "vip", {"x": "vip"}, True),
    ("eq", "vip", {"x": "VIP"}, False),
    ("eq", 1, {"x": 1.0}, True),
    ("eq", Decimal("0.1"), {"x": 0.1}, True),
    ("eq", 1, {"x": True}, False),
    ("eq", True, {"x": 1}, False),
    ("eq", True, {"x": True}, True),
    ("eq", None, {"x": None}, True),
    ("eq", "1", {"x": 1}, False),
    ("eq", ("a", "b"), {"x": ["a", "b"]}, True),
    ("eq", "vip", {}, False),
    ("ne", "vip", {"x": "basic"}, True),
    ("ne", "vip", {"x": "vip"}, False),
    ("ne", "vip", {}, True),
    ("ne", 1, {"x": True}, True),
    ("gt", 100, {"x": 101}, True),
    ("gt", 100, {"x": 100}, False),
    ("gt", 100, {"x": Decimal("100.01")}, True),
    ("gt", 100, {"x": 100.5}, True),
    ("gt", 100, {"x": "150"}, False),
    ("gt", 0, {"x": True}, False),
    ("gt", 100, {}, False),
    ("gt", 100, {"x": math.nan}, False),
    ("gt", Decimal("0.1"), {"x": 0.1}, False),
    ("gte", 100, {"x": 100}, True),
    ("gte", 100, {"x": 99.99}, False),
    ("gte", 100, {"x": None}, False),
    ("lt", 100, {"x": 99}, True),
    ("lt", 100, {"x": 100}, False),
    ("lt", 100, {"x": [1]}, False),
    ("lte", 100, {"x": 100}, True),
    ("lte", 100, {"x": 100.0001}, False),
    ("lte", 100, {}, False),
    ("in", ("a", "b"), {"x": "a"}, True),
    ("in", ("a", "b"), {"x": "c"}, False),
    ("in", (1, 2), {"x": 2.0}, True),
    ("in", (1, 2), {"x": True}, False),
    ("in", ("a",), {"x": ["a"]}, False),
    ("in", ("a",), {}, False),
    ("not_in", ("a", "b"), {"x": "c"}, True),
    ("not_in", ("a", "b"), {"x": "a"}, False),
    ("not_in", ("a", "b"), {}, True),
    ("contains", "DROP", {"x": "please DROP TABLE"}, True),
    ("contains", "drop", {"x": "please DROP TABLE"}, False),
    ("contains", "a", {"x": ["a", "b"]}, True),
    ("contains", 2, {"x": [1, 2.0]}, True),
    ("contains", "c", {"x": ["a", "b"]}, False),
    ("contains", 1, {"x": "1"}, False),
    ("contains", "a", {"x": {"a": 1}}, False),
    ("contains", "a", {}, False),
    ("startswith", "prod-", {"x": "prod-db"}, True),
    ("startswith", "prod-", {"x": "dev-db"}, False),
    ("startswith", "1", {"x": 123}, False),
    ("startswith", "prod-", {}, False),
    ("matches", r"^\d{3}-\d{4}$", {"x": "555-1234"}, True),
    ("matches", r"secret", {"x": "a secret here"}, True),
    ("matches", r"^secret", {"x": "a secret here"}, False),
    ("matches", r"\d", {"x": 5}, False),
    ("matches", r"\d", {}, False),
    ("exists", True, {"x": 1}, True),
    ("exists", True, {"x": None}, True),
    ("exists", True, {}, False),
    ("exists", False, {}, True),
    ("exists", False, {"x": 0}, False),
]


@pytest.mark.parametrize(("op", "value", "arguments", "holds"), OPERATOR_TABLE)
def test_condition_operator_holds_as_specified(
    op: str, value: Any, arguments: dict[str, Any], holds: bool
) -> None:
    assert condition_holds(op, value, arguments) is holds


def test_operator_table_covers_every_operator() -> None:
    assert {row[0] for row in OPERATOR_TABLE} == set(OPS)


WEIRD_SUBJECTS = [None, True, 0, -1.5, math.inf, math.nan, Decimal("NaN"), "", "text", b"bytes"]
WEIRD_SUBJECTS += [[], [1, [2]], {}, {"a": {"b": 1}}, object()]
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
    "startswith": "a",
    "matches": "a+",
    "exists": True,
}


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("subject", WEIRD_SUBJECTS, ids=repr)
def test_condition_never_raises_on_type_mismatch(op: str, subject: Any) -> None:
    condition_holds(op, VALUES_FOR_OP[op], {"x": subject})


@pytest.mark.parametrize(
    ("field", "arguments", "holds"),
    [
        ("customer.tier", {"customer": {"tier": "vip"}}, True),
        ("customer.tier", {"customer": {"tier": "basic"}}, False),
        ("customer.tier", {"customer": "vip"}, False),
        ("customer.tier", {"customer.tier": "vip"}, True),
        ("items.0.sku", {"items": [{"sku": "vip"}]}, True),
        ("items.1.sku", {"items": [{"sku": "vip"}]}, False),
        ("a.b.c", {"a": {"b": {"c": "vip"}}}, True),
    ],
)
def test_condition_field_is_a_dot_path_into_the_arguments(
    field: str, arguments: dict[str, Any], holds: bool
) -> None:
    assert condition_holds("eq", "vip", arguments, field=field) is holds


def test_rule_matches_only_when_all_conditions_hold() -> None:
    both = rule(
        "both",
        conditions=(Condition("a", "eq", 1), Condition("b", "eq", 2)),
    )
    assert decide([both], arguments={"a": 1, "b": 2}).decision == "block"
    assert decide([both], arguments={"a": 1, "b": 3}).decision == "allow"


def test_non_mapping_arguments_are_treated_as_empty() -> None:
    needs_field = rule("needs field", conditions=(Condition("x", "exists", False),))
    policy = compile_policy([needs_field])
    assert policy.evaluate("stripe.refund", ["not", "a", "mapping"], "live").decision == "block"  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Regex safety
# ---------------------------------------------------------------------------

CATASTROPHIC = r"(a|aa)+$"
CATASTROPHIC_SUBJECT = "a" * 4000 + "b"


def test_catastrophic_regex_on_block_rule_fails_safe_to_block() -> None:
    guard = rule("sql guard", conditions=(Condition("q", "matches", CATASTROPHIC),))
    decision = decide([guard], arguments={"q": CATASTROPHIC_SUBJECT})
    assert decision.decision == "block"
    assert decision.reason == (
        "pattern condition on q could not be checked safely (input too long or pattern too "
        "slow), so rule 'sql guard' applies"
    )


def test_catastrophic_regex_on_allow_rule_does_not_allow() -> None:
    permit = rule("permit", effect="allow", conditions=(Condition("q", "matches", CATASTROPHIC),))
    decision = decide([permit], arguments={"q": CATASTROPHIC_SUBJECT}, default="block")
    assert decision.decision == "block"
    assert decision.rule is None


def test_regex_timeout_does_not_override_a_condition_that_clearly_fails() -> None:
    guard = rule(
        "sql guard",
        conditions=(Condition("q", "matches", CATASTROPHIC), Condition("db", "eq", "prod")),
    )
    decision = decide([guard], arguments={"q": CATASTROPHIC_SUBJECT, "db": "dev"})
    assert decision.decision == "allow"


def test_regex_subject_over_the_length_cap_fails_safe() -> None:
    guard = rule(
        "secret guard", effect="requires_approval", conditions=(Condition("q", "matches", "x"),)
    )
    decision = decide([guard], arguments={"q": "y" * 5000})
    assert decision.decision == "requires_approval"


def test_regex_longer_than_256_characters_is_rejected_at_compile_time() -> None:
    with pytest.raises(InvalidPolicy, match="longer than 256"):
        compile_policy([rule(conditions=(Condition("q", "matches", "a" * 257),))])


def test_invalid_regex_is_rejected_at_compile_time() -> None:
    with pytest.raises(InvalidPolicy, match="invalid regular expression"):
        compile_policy([rule(conditions=(Condition("q", "matches", "(unclosed"),))])


# ---------------------------------------------------------------------------
# Action patterns
# ---------------------------------------------------------------------------

GLOB_TABLE = [
    ("stripe.refund", "stripe.refund", True),
    ("stripe.refund", "stripe.refunds", False),
    ("stripe.refund", "stripe.refund.full", False),
    ("database.*.delete", "database.users.delete", True),
    ("database.*.delete", "database.delete", False),
    ("database.*.delete", "database.a.b.delete", False),
    ("stripe.refund.*", "stripe.refund.full", True),
    ("stripe.refund.*", "stripe.refund.a.b", True),
    ("stripe.refund.*", "stripe.refund", False),
    ("stripe.refund.*", "stripe.refund.", False),
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
    ("a+b.(c)", "a+b.(c)", True),
    ("a+b.(c)", "aab.c", False),
]


@pytest.mark.parametrize(("pattern", "action", "expected"), GLOB_TABLE)
def test_action_pattern_matching(pattern: str, action: str, expected: bool) -> None:
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
        ("", False),
        ("stripe..refund", False),
        (".stripe", False),
        ("stripe.", False),
        ("stripe refund", False),
        ("stripe.**", False),
        ("a" * 201, False),
        (None, False),
        (42, False),
    ],
)
def test_action_pattern_validation(pattern: Any, valid: bool) -> None:
    assert action_pattern_is_valid(pattern) is valid


def test_compile_rejects_an_invalid_pattern_naming_the_rule() -> None:
    with pytest.raises(InvalidPolicy, match="broken"):
        compile_policy([rule("broken", action="a..b")])


# ---------------------------------------------------------------------------
# Environments and enabled
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environments", "environment", "matches"),
    [
        (frozenset({"live"}), "live", True),
        (frozenset({"live"}), "test", False),
        (frozenset({"test"}), "test", True),
        (frozenset({"test", "live"}), "test", True),
        (frozenset({"test", "live"}), "live", True),
    ],
)
def test_rule_applies_only_in_its_environments(
    environments: frozenset[str], environment: str, matches: bool
) -> None:
    decision = decide([rule(environments=environments)], environment=environment)
    assert (decision.decision == "block") is matches


def test_disabled_rule_never_matches() -> None:
    assert decide([rule(enabled=False)]).reason == NO_POLICY_CONFIGURED


# ---------------------------------------------------------------------------
# max_amount
# ---------------------------------------------------------------------------

REFUND_LIMIT = {"name": "refund limit", "effect": "requires_approval", "max_amount": Decimal(100)}


@pytest.mark.parametrize(
    ("arguments", "decision", "reason"),
    [
        ({"amount": 50}, "allow", "amount 50 within max_amount 100 of rule 'refund limit'"),
        ({"amount": 100}, "allow", "amount 100 within max_amount 100 of rule 'refund limit'"),
        ({"amount": "99.5"}, "allow", "amount 99.5 within max_amount 100 of rule 'refund limit'"),
        ({"amount": 100.01}, "requires_approval", "amount 100.01 exceeds max_amount 100"),
        ({"amount": 150}, "requires_approval", "amount 150 exceeds max_amount 100"),
        ({"amount": "150"}, "requires_approval", "amount 150 exceeds max_amount 100"),
        ({}, "requires_approval", "amount is missing"),
        ({"amount": "lots"}, "requires_approval", "amount is not a number"),
        ({"amount": True}, "requires_approval", "amount is not a number"),
        ({"amount": math.nan}, "requires_approval", "amount is not a number"),
        ({"amount": "Infinity"}, "requires_approval", "amount is not a number"),
    ],
)
def test_max_amount_allows_up_to_the_limit_and_applies_the_effect_above_or_when_unknown(
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
    capped = rule("cap", max_amount=Decimal("10.50"))
    result = decide([capped], arguments={"amount": 11})
    assert (result.decision, result.reason) == (
        "block",
        "amount 11 exceeds max_amount 10.5 of rule 'cap'",
    )


def test_float_max_amount_is_compared_as_the_decimal_it_reads_as() -> None:
    capped = rule("cap", max_amount=0.3)  # type: ignore[arg-type]
    assert decide([capped], arguments={"amount": "0.3"}).decision == "allow"


def test_environments_given_as_a_plain_set_or_list_are_accepted() -> None:
    for environments in ({"live"}, ["live"]):
        live_only = rule(environments=environments)  # type: ignore[arg-type]
        assert decide([live_only], environment="test").decision == "allow"
        assert decide([live_only], environment="live").decision == "block"


# ---------------------------------------------------------------------------
# Running-total limits
# ---------------------------------------------------------------------------


def bulk_email() -> RuleSpec:
    return rule(
        "bulk email",
        action="email.send",
        limit=Limit(kind="count", per_seconds=3600, count=5),
        id="bulk",
    )


@pytest.mark.parametrize(
    ("total", "decision", "reason"),
    [
        (0, "allow", "1st call in 1h within limit of 5 per 1h of rule 'bulk email'"),
        (3, "allow", "4th call in 1h within limit of 5 per 1h of rule 'bulk email'"),
        (4, "allow", "5th call in 1h within limit of 5 per 1h of rule 'bulk email'"),
        (5, "block", "6th call in 1h exceeds limit of 5 per 1h of rule 'bulk email'"),
        (6, "block", "7th call in 1h exceeds limit of 5 per 1h of rule 'bulk email'"),
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


def refund_budget() -> RuleSpec:
    return rule(
        "daily refund budget",
        effect="requires_approval",
        limit=Limit(kind="sum", per_seconds=86400, field="amount", over=Decimal(2000)),
        id="budget",
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
        (
            2000,
            150,
            "requires_approval",
            "amount total 2150 in 1d would exceed 2000 of rule 'daily refund budget'",
        ),
        (0, 2001, "requires_approval", "amount total 2001 in 1d would exceed 2000"),
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
        max_amount=Decimal(100),
        limit=Limit(kind="sum", per_seconds=86400, field="amount", over=Decimal(2000)),
        id="both",
    )
    result = decide([both], arguments={"amount": amount}, totals={"both": total})
    assert result.decision == decision
    assert result.reason.startswith(reason_start)


# ---------------------------------------------------------------------------
# limit_queries
# ---------------------------------------------------------------------------


def test_limit_queries_lists_rules_with_running_totals_for_the_action() -> None:
    policy = compile_policy([bulk_email(), rule("plain", action="email.send")])
    assert policy.limit_queries("email.send", "live") == (
        LimitQuery(
            rule_id="bulk",
            action_pattern="email.send",
            kind="count",
            field=None,
            per_seconds=3600,
        ),
    )


@pytest.mark.parametrize(
    ("action", "environment", "expected_ids"),
    [
        ("stripe.refund", "live", ("sum-glob",)),
        ("stripe.refund", "test", ()),
        ("stripe.charge", "live", ("sum-glob",)),
        ("email.send", "live", ()),
    ],
)
def test_limit_queries_follow_patterns_and_environments(
    action: str, environment: str, expected_ids: tuple[str, ...]
) -> None:
    glob = rule(
        "stripe budget",
        action="stripe.*",
        environments=frozenset({"live"}),
        limit=Limit(kind="sum", per_seconds=60, field="amount", over=Decimal(5)),
        id="sum-glob",
    )
    policy = compile_policy([glob, rule("no limit", action="email.send")])
    assert tuple(q.rule_id for q in policy.limit_queries(action, environment)) == expected_ids


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


# ---------------------------------------------------------------------------
# Defaults and plans
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


def test_requires_approval_without_approvals_on_the_plan_becomes_block() -> None:
    result = decide([rule("refund limit", effect="requires_approval")], approvals_enabled=False)
    assert result.decision == "block"
    assert (
        result.reason == "rule 'refund limit' requires approval, which needs the Pro plan or higher"
    )


def test_plan_block_reason_keeps_the_amount_explanation_and_names_the_configured_plan() -> None:
    result = decide(
        [rule(**REFUND_LIMIT)],
        arguments={"amount": 150},
        approvals_enabled=False,
        approvals_plan="Team",
    )
    assert result.decision == "block"
    assert result.reason == (
        "amount 150 exceeds max_amount 100 of rule 'refund limit'; "
        "rule 'refund limit' requires approval, which needs the Team plan or higher"
    )


def test_quorum_rule_without_quorum_on_the_plan_becomes_block_naming_the_plan() -> None:
    transfer = rule("big transfers", effect="requires_approval", approvals_required=2)
    result = decide([transfer], quorum_enabled=False)
    assert result.decision == "block"
    assert result.reason == (
        "rule 'big transfers' requires 2 approvals, which needs the Business plan or higher"
    )


def test_single_approver_rule_still_asks_for_approval_without_quorum_on_the_plan() -> None:
    result = decide([rule("refunds", effect="requires_approval")], quorum_enabled=False)
    assert result.decision == "requires_approval"


def test_decision_carries_approval_settings_of_the_deciding_rule() -> None:
    transfer = rule(
        "big transfers", effect="requires_approval", approval_timeout=1800, approvals_required=2
    )
    result = decide([transfer])
    assert (result.approval_timeout, result.approvals_required) == (1800, 2)


def test_decision_without_a_rule_has_default_approval_settings() -> None:
    result = decide([])
    assert (result.approval_timeout, result.approvals_required) == (None, 1)


# ---------------------------------------------------------------------------
# Compile-time validation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (rule("bad effect", effect="deny"), "effect"),
        (rule("bad op", conditions=(Condition("x", "like", "a"),)), "unknown operator"),
        (rule("bad gt", conditions=(Condition("x", "gt", "10"),)), "needs a number"),
        (rule("bad in", conditions=(Condition("x", "in", "abc"),)), "needs a list"),
        (rule("bad exists", conditions=(Condition("x", "exists", "yes"),)), "true or false"),
        (rule("bad amount", max_amount=Decimal(0)), "max_amount"),
        (rule("bad env", environments=frozenset({"prod"})), "environments"),
        (rule("bad env", environments=frozenset()), "environments"),
        (rule("bad quorum", approvals_required=0), "approvals_required"),
        (rule("bad scope", scope="team"), "scope"),
        (rule("bad count", limit=Limit(kind="count", per_seconds=60, count=0)), "limit.count"),
        (rule("bad window", limit=Limit(kind="count", per_seconds=0, count=1)), "limit.per"),
    ],
)
def test_compile_rejects_invalid_rules(spec: RuleSpec, message: str) -> None:
    with pytest.raises(InvalidPolicy, match=message):
        compile_policy([spec])


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
# Candidate cache
# ---------------------------------------------------------------------------

SEGMENTS = ["stripe", "refund", "db", "users", "delete", "send", "x_1"]
segment = st.sampled_from(SEGMENTS)
pattern_segment = st.one_of(segment, st.just("*"), st.sampled_from(["re*", "*_1", "s*d"]))
patterns = st.lists(pattern_segment, min_size=1, max_size=4).map(".".join)
actions = st.lists(segment, min_size=1, max_size=4).map(".".join)


def reference_match(pattern: str, action: str) -> bool:
    """Segment-by-segment reading of the pattern rules, independent of the compiled regex."""
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
@given(pattern=patterns, action=actions)
def test_glob_matching_agrees_with_a_segment_by_segment_reading(pattern: str, action: str) -> None:
    assert action_matches(pattern, action) is reference_match(pattern, action)


rule_strategy = st.builds(
    lambda pattern, effect, pos, scope, env, amount: (pattern, effect, pos, scope, env, amount),
    patterns,
    st.sampled_from(["allow", "requires_approval", "block"]),
    st.integers(0, 3),
    st.sampled_from(["agent", "org"]),
    st.sampled_from([frozenset({"test"}), frozenset({"live"}), frozenset({"test", "live"})]),
    st.sampled_from([None, Decimal(10)]),
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
        RuleSpec(
            id=f"r{i}",
            name=f"rule {i}",
            action=pattern,
            effect=effect,
            position=pos,
            scope=scope,
            environments=env,
            max_amount=amount,
        )
        for i, (pattern, effect, pos, scope, env, amount) in enumerate(raw_rules)
    ]
    policy = CompiledPolicy(
        tuple(specs), default=default, approvals_enabled=True, approvals_plan="Pro", cache_size=3
    )
    for action, environment, amount in calls * 2:
        arguments = {} if amount is None else {"amount": amount}
        cached = policy.evaluate(action, arguments, environment)
        assert cached == policy.evaluate_uncached(action, arguments, environment)
        expected_matches = [
            s.id
            for s in specs
            if environment in s.environments and reference_match(s.action, action)
        ]
        assert sorted(m.rule.id for m in cached.matched) == sorted(expected_matches)


def test_candidate_cache_stays_bounded() -> None:
    policy = compile_policy([rule(action="tool.*")])
    for i in range(CANDIDATE_CACHE_SIZE + 10):
        policy.evaluate(f"tool.t{i}", {}, "live")
    assert len(policy._cache) <= CANDIDATE_CACHE_SIZE
    assert policy.evaluate("tool.t1", {}, "live").decision == "block"
