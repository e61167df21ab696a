"""The evaluation trace (agents/policy_trace.py): what a decision looked at, bounded, and the
same in plain words. Pure: no database."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.policy import (
    Call,
    Cond,
    PlanFeatures,
    RuleSpec,
    compile_condition,
    compile_policy,
    condition_judge,
    field_getter,
    plan_gate,
)
from agents.policy_document import rule_spec_from_mapping
from agents.policy_trace import (
    NO_EXPLANATION,
    TRACE_MAX_CONDITIONS,
    TRACE_MAX_RULES,
    TRACE_MAX_TEXT,
    UNREADABLE,
    decision_trace,
    grouped,
    show,
    trace_explain,
)
from tests.agents.test_policy import OPERATOR_TABLE

_ids = itertools.count(1)


def rule(
    name: str = "r", action: str = "stripe.refund", effect: str = "block", **fields: Any
) -> RuleSpec:
    rule_id = fields.pop("id", f"rule-{next(_ids)}")
    position = fields.pop("position", 0)
    lists = fields.pop("lists", None)
    mapping = {"name": name, "action": action, "effect": effect, **fields}
    return rule_spec_from_mapping(mapping, lists=lists, id=rule_id, position=position)


def traced(
    rules: list[RuleSpec],
    arguments: dict[str, Any] | None = None,
    action: str = "stripe.refund",
    totals: dict[str, Any] | None = None,
    default: str = "allow",
    plan: PlanFeatures | None = None,
    **context: Any,
) -> tuple[dict[str, Any], list[str]]:
    """(trace, explanation) of one call, as the check path makes them."""
    policy = compile_policy(rules, default=default)
    call = Call(action, arguments or {}, "live", **context)
    decision = policy.evaluate(call, totals)
    if plan is not None:
        decision = plan_gate(decision, plan)
    trace = decision_trace(policy, call, totals, decision, plan)
    json.dumps(trace)  # plain JSON, as the audit row stores it
    return trace, trace_explain(trace)


REFUND_LIMIT = {"name": "refund limit", "effect": "requires_approval", "max_amount": 100}


# --- max_amount -----------------------------------------------------------------------------


def test_an_amount_over_max_amount_is_traced_with_both_numbers():
    trace, lines = traced([rule(**REFUND_LIMIT)], {"amount": 150})
    (node,) = trace["rules"]
    assert node["max_amount"] == {"field": "amount", "max": "100", "saw": "150", "within": False}
    assert node["outcome"] == "requires_approval"
    assert node["decides"] is True
    assert trace["decision"] == "requires_approval"
    assert lines == [
        "refund limit: amount 150 > max_amount 100 -> requires_approval",
        "decision: requires_approval (rule 'refund limit')",
    ]


def test_an_amount_within_max_amount_has_no_effect():
    trace, lines = traced([rule(**REFUND_LIMIT)], {"amount": 42})
    assert trace["rules"][0]["max_amount"]["within"] is True
    assert lines[0] == "refund limit: amount 42 <= max_amount 100 -> no effect"
    assert lines[-1] == "decision: allow (rule 'refund limit')"


def test_a_missing_amount_cannot_be_checked_and_the_rule_applies():
    trace, lines = traced([rule(**REFUND_LIMIT)], {"amount": "ten"})
    node = trace["rules"][0]["max_amount"]
    assert node["problem"] == "not_a_number"
    assert node["saw"] == '"ten"'
    assert node["within"] is False
    assert lines[0] == (
        'refund limit: amount "ten" is not a number, so max_amount 100 cannot be checked '
        "-> requires_approval"
    )


# --- Conditions -----------------------------------------------------------------------------


def test_a_failing_condition_is_traced_with_the_value_it_saw():
    rules = [rule("big refunds", when=[{"field": "amount", "op": "gt", "value": 1000}])]
    trace, lines = traced(rules, {"amount": 5})
    node = trace["rules"][0]
    assert node["when"] == {
        "field": "amount",
        "op": "gt",
        "value": "1000",
        "saw": "5",
        "result": "failed",
    }
    assert node["applies"] == "failed"
    assert node["outcome"] is None
    assert lines == [
        "big refunds: when amount 5 > 1000 failed -> does not apply",
        "no rule applies: the agent's default (allow) applies -> allow",
    ]


def test_an_undecidable_condition_fails_closed_and_says_why():
    rules = [rule("basic tier", when=[{"field": "customer.tier", "op": "eq", "value": "basic"}])]
    trace, lines = traced(rules, {"amount": 5})
    node = trace["rules"][0]
    assert node["when"]["result"] == "undecidable"
    assert node["when"]["why"] == "missing"
    assert "saw" not in node["when"]
    assert node["applies"] == "undecidable"
    assert node["outcome"] == "block"
    assert trace["decision"] == "block"
    assert lines[0] == (
        'basic tier: when customer.tier = "basic" undecidable (customer.tier is missing) '
        "-> block (undecidable, so the rule applies: fail closed)"
    )


def test_an_undecidable_condition_never_makes_an_allow_rule_apply():
    rules = [rule("vip ok", effect="allow", when=[{"field": "tier", "op": "gt", "value": 2}])]
    trace, lines = traced(rules, {"tier": "gold"}, default="block")
    node = trace["rules"][0]
    assert node["when"]["why"] == "type"
    assert node["when"]["saw"] == '"gold"'
    assert node["outcome"] is None
    assert trace["decision"] == "block"
    assert "tier is not a number" in lines[0]
    assert lines[0].endswith(
        "does not apply (an allow rule allows only when its conditions are decided)"
    )
    assert lines[-1] == "no rule applies: the agent's default (block) applies -> block"


def test_nested_any_all_not_and_unless_are_traced_node_by_node():
    spec = rule(
        "risky",
        effect="requires_approval",
        when={
            "any": [
                {"field": "amount", "op": "gt", "value": 1000},
                {
                    "all": [
                        {"field": "currency", "op": "ne", "value": "USD"},
                        {"not": {"field": "country", "op": "in", "value": "$lists.safe"}},
                    ]
                },
            ]
        },
        unless=[{"field": "$metadata.trusted", "op": "eq", "value": True}],
        lists={"safe": ("FR", "DE")},
    )
    arguments = {"amount": 50, "currency": "EUR", "country": "BR"}
    trace, lines = traced([spec], arguments, metadata={"trusted": False})
    node = trace["rules"][0]
    low, both = node["when"]["any"]
    assert low["result"] == "failed"
    currency, negation = both["all"]
    assert currency["result"] == "held"
    assert negation["not"] == {
        "field": "country",
        "op": "in",
        "value": "$lists.safe",
        "saw": '"BR"',
        "result": "failed",
    }
    assert negation["result"] == "held"
    assert both["result"] == "held"
    assert node["when"]["result"] == "held"
    assert node["unless"] == [
        {
            "field": "$metadata.trusted",
            "op": "eq",
            "value": "true",
            "saw": "false",
            "result": "failed",
        }
    ]
    assert node["applies"] == "held"
    assert node["outcome"] == "requires_approval"
    assert lines[0] == (
        'risky: when any of [amount 50 > 1000 failed, all of [currency "EUR" != "USD" held, '
        'not [country "BR" in $lists.safe failed] held] held] held; '
        "unless $metadata.trusted false = true failed -> requires_approval"
    )


def test_an_exception_that_holds_stops_the_rule():
    spec = rule(
        "no deletes", action="db.delete", unless=[{"field": "$session", "op": "eq", "value": "ops"}]
    )
    trace, lines = traced([spec], action="db.delete", session_id="ops")
    node = trace["rules"][0]
    assert node["unless"][0]["result"] == "held"
    assert node["applies"] == "failed"
    assert node["outcome"] is None
    assert trace["decision"] == "allow"
    assert lines[0] == 'no deletes: unless $session "ops" = "ops" held -> does not apply'


# --- Running totals -------------------------------------------------------------------------


def daily_budget(position: int = 0, **limit: Any) -> RuleSpec:
    return rule(
        "daily budget",
        id="budget",
        position=position,
        limit={"sum": "amount", "over": 2000, "per": "1d", **limit},
    )


def test_a_running_total_within_its_limit_is_traced_and_has_no_effect():
    trace, lines = traced([daily_budget()], {"amount": 150}, totals={"budget": 1840})
    node = trace["rules"][0]["limit"]
    assert node == {
        "kind": "sum",
        "per": "1d",
        "field": "amount",
        "over": "2000",
        "amount": "150",
        "total": "1840",
        "within": True,
    }
    assert lines[0] == "daily budget: 1,840 + 150 <= 2,000 (amount per 1d) -> no effect"


def test_a_running_total_over_its_limit_applies_the_rule():
    trace, lines = traced(
        [daily_budget(by="customer_id")],
        {"amount": 150, "customer_id": "cus_1"},
        totals={"budget": 1900},
    )
    node = trace["rules"][0]["limit"]
    assert (node["total"], node["amount"], node["within"]) == ("1900", "150", False)
    assert node["key"] == '"cus_1"'
    assert trace["decision"] == "block"
    assert lines[0] == (
        'daily budget: 1,900 + 150 > 2,000 (amount per 1d for customer_id "cus_1") -> block'
    )


def test_the_issues_example_reads_as_written():
    rules = [rule(**REFUND_LIMIT, position=0), daily_budget(position=1)]
    _, lines = traced(rules, {"amount": 150}, totals={"budget": 1840})
    assert "; ".join(lines[:2]) == (
        "refund limit: amount 150 > max_amount 100 -> requires_approval; "
        "daily budget: 1,840 + 150 <= 2,000 (amount per 1d) -> no effect"
    )


def test_a_count_limit_shows_the_calls_so_far():
    spec = rule("hourly", id="hourly", action="email.send", limit={"count": 10, "per": "1h"})
    trace, lines = traced([spec], action="email.send", totals={"hourly": 10})
    node = trace["rules"][0]["limit"]
    assert (node["total"], node["amount"], node["count"], node["within"]) == ("10", "1", 10, False)
    assert lines[0] == "hourly: 10 + 1 > 10 (10 calls per 1h) -> block"


def test_a_running_total_that_is_unavailable_applies_the_rule_and_says_so():
    trace, lines = traced([daily_budget()], {"amount": 150}, totals=None)
    assert trace["rules"][0]["limit"]["problem"] == "unavailable"
    assert trace["decision"] == "block"
    assert (
        "the running total is unavailable, so the limit (amount per 1d) cannot be checked"
        in (lines[0])
    )


# --- No rule, the default, the plan gate -----------------------------------------------------


def test_no_rule_matching_the_action_is_the_default():
    trace, lines = traced([rule(**REFUND_LIMIT)], action="kb.search", default="block")
    assert trace["rules"] == []
    assert trace["default"] == "block"
    assert lines == ["no rule matches this action: the agent's default (block) applies -> block"]


def test_the_plan_gate_turning_requires_approval_into_block_is_traced():
    plan = PlanFeatures(approvals_enabled=False, approvals_plan="Pro")
    trace, lines = traced([rule(**REFUND_LIMIT)], {"amount": 150}, plan=plan)
    assert trace["decision"] == "block"
    assert trace["rules"][0]["outcome"] == "requires_approval"
    assert trace["plan_gate"] == {"from": "requires_approval", "needs": "Pro"}
    assert lines[-2:] == [
        "plan: requires_approval -> block, because approvals need the Pro plan or higher",
        "decision: block (rule 'refund limit')",
    ]


def test_a_quorum_the_plan_cannot_reach_is_traced_with_the_approvals_needed():
    spec = rule(
        "big transfers",
        action="bank.transfer",
        effect="requires_approval",
        approval={"approvals_required": 2},
    )
    plan = PlanFeatures(quorum_enabled=False, quorum_plan="Business")
    trace, lines = traced([spec], action="bank.transfer", plan=plan)
    assert trace["plan_gate"] == {"from": "requires_approval", "needs": "Business", "approvals": 2}
    assert "2 approvals need the Business plan or higher" in lines[-2]


def test_a_plan_that_allows_the_hold_leaves_no_gate_in_the_trace():
    trace, _ = traced([rule(**REFUND_LIMIT)], {"amount": 150}, plan=PlanFeatures())
    assert trace["decision"] == "requires_approval"
    assert "plan_gate" not in trace


# --- Bounds ---------------------------------------------------------------------------------


def test_long_values_are_cut_to_the_bound():
    long_text = "x" * 10_000
    rules = [rule("c", when=[{"field": "note", "op": "contains", "value": "y" * 500}])]
    trace, _ = traced(rules, {"note": long_text})
    node = trace["rules"][0]["when"]
    assert len(node["saw"]) == TRACE_MAX_TEXT and node["saw"].endswith("…")
    assert len(node["value"]) == TRACE_MAX_TEXT and node["value"].endswith("…")


def test_a_huge_or_deep_argument_is_shown_within_the_bound():
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]
    wide = {f"k{i}": i for i in range(100_000)}
    for value in (deep, wide, list(range(100_000)), 10**5000):
        text = show(value)
        assert len(text) <= TRACE_MAX_TEXT
    assert show({"a": [1, "b"]}) == '{"a": [1, "b"]}'


def test_only_so_many_conditions_are_listed_the_rest_are_counted():
    many = [{"field": f"f{i}", "op": "eq", "value": i} for i in range(40)]
    arguments = {f"f{i}": i for i in range(40)}
    trace, lines = traced([rule("strict", when=many)], arguments)
    items = trace["rules"][0]["when"]["all"]
    listed = [item for item in items if "field" in item]
    assert len(listed) == TRACE_MAX_CONDITIONS
    assert items[-1] == {"omitted": 40 - TRACE_MAX_CONDITIONS}
    assert trace["rules"][0]["when"]["result"] == "held"  # the omitted ones still count
    assert trace["decision"] == "block"
    assert f"{40 - TRACE_MAX_CONDITIONS} more conditions (not traced)" in lines[0]


def test_the_condition_bound_is_shared_by_all_the_rules_of_a_call():
    many = [{"field": f"f{i}", "op": "eq", "value": i} for i in range(20)]
    rules = [rule(f"r{n}", position=n, when=many) for n in range(3)]
    trace, _ = traced(rules, {f"f{i}": i for i in range(20)})
    first, second, third = trace["rules"]
    assert len(first["when"]["all"]) == 20
    assert second["when"]["all"][-1] == {"omitted": 20 - (TRACE_MAX_CONDITIONS - 20)}
    assert third["when"] == {"omitted": 20, "result": "held"}


def test_only_so_many_rules_are_traced_but_always_the_deciding_one():
    rules = [
        rule(f"fine {n}", action="stripe.*", effect="allow", position=n) for n in range(12)
    ] + [rule("stop", action="stripe.refund", effect="block", position=99)]
    trace, lines = traced(rules, {"amount": 1})
    names = [node["rule"] for node in trace["rules"]]
    assert names == [f"fine {n}" for n in range(TRACE_MAX_RULES)] + ["stop"]
    assert trace["rules_omitted"] == 12 - TRACE_MAX_RULES
    assert trace["rules"][-1]["decides"] is True
    assert f"{12 - TRACE_MAX_RULES} more rules matched the action (not traced)" in lines


def test_a_worst_case_trace_stays_small():
    when = [{"field": "f" * 200, "op": "in", "value": ["v" * 300] * 50} for _ in range(100)]
    rules = [
        rule("n" * 120, action="stripe.*", position=n, when=when, max_amount=5) for n in range(20)
    ]
    trace, lines = traced(rules, {"f" * 200: "w" * 10_000})
    assert len(json.dumps(trace)) < 16_000
    assert len(lines) <= TRACE_MAX_RULES + 4


# --- Reading traces -------------------------------------------------------------------------


def test_a_check_without_a_trace_says_no_explanation_was_recorded():
    assert trace_explain(None) == [NO_EXPLANATION]
    assert trace_explain({}) == [NO_EXPLANATION]


def test_a_trace_that_cannot_be_read_says_so_instead_of_failing():
    assert trace_explain({"v": 99, "rules": []}) == [UNREADABLE]
    assert trace_explain({"v": 1, "rules": [{"nonsense": True}], "decision": "allow"}) == [
        UNREADABLE
    ]
    assert trace_explain("text") == [UNREADABLE]


def test_numbers_are_grouped_in_thousands():
    assert [grouped(n) for n in ("1840", "2000.5", "-12345", "999", "1E+40")] == [
        "1,840",
        "2,000.5",
        "-12,345",
        "999",
        "1E+40",
    ]


# --- The trace agrees with the decision -------------------------------------------------------

VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 3000),
    st.sampled_from(["vip", "basic", "USD", "EUR", "12", "x", ""]),
    st.lists(st.integers(0, 5), max_size=3),
)
ARGUMENTS = st.dictionaries(
    st.sampled_from(["amount", "tier", "currency", "customer_id"]), VALUES, max_size=4
)
POLICY = [
    rule(**REFUND_LIMIT, id="p0", position=0, when=[{"field": "tier", "op": "ne", "value": "vip"}]),
    rule(
        "eur",
        id="p1",
        position=1,
        effect="allow",
        when={
            "any": [
                {"field": "currency", "op": "eq", "value": "EUR"},
                {"not": {"field": "amount", "op": "lt", "value": 10}},
            ]
        },
        max_amount=500,
    ),
    rule(
        "budget",
        id="p2",
        position=2,
        limit={"sum": "amount", "over": 2000, "per": "1d", "by": "customer_id"},
    ),
    rule(
        "tiny",
        id="p3",
        position=3,
        effect="requires_approval",
        unless=[{"field": "amount", "op": "gte", "value": 1}],
    ),
]


@settings(max_examples=300, deadline=None)
@given(arguments=ARGUMENTS, total=st.one_of(st.none(), st.integers(0, 2100)))
def test_the_trace_names_exactly_the_rules_that_applied_and_their_effects(arguments, total):
    policy = compile_policy(POLICY, default="block")
    call = Call("stripe.refund", arguments, "live")
    totals = {"p2": total} if total is not None else None
    decision = policy.evaluate(call, totals)
    trace = decision_trace(policy, call, totals, decision)
    applied = {m.rule.name: m.effect for m in decision.matched}
    assert {n["rule"]: n["outcome"] for n in trace["rules"] if n["outcome"]} == applied
    assert trace["decision"] == decision.decision
    deciding = [n["rule"] for n in trace["rules"] if n.get("decides")]
    assert deciding == ([decision.rule.name] if decision.rule else [])
    assert trace_explain(trace) not in ([NO_EXPLANATION], [UNREADABLE])


@pytest.mark.parametrize(("op", "value", "arguments", "answer"), OPERATOR_TABLE)
@pytest.mark.parametrize("field", ["x", "items.*.x", "$metadata.x"])
def test_a_trace_judges_a_condition_as_the_evaluator_does(op, value, arguments, answer, field):
    cond = Cond(field, op, value)
    if field == "items.*.x":
        arguments = {"items": [arguments, {}]}
    context = {"metadata": arguments} if field.startswith("$metadata") else {}
    call = Call("t", {} if context else arguments, **context)
    judged = condition_judge(cond)(field_getter(field)(call))
    assert judged is compile_condition(cond)(call)
    if field == "x":
        assert judged is answer
