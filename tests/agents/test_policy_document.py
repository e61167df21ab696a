from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
import yaml

from agents.policy import Condition, Limit, RuleSpec, compile_policy
from agents.policy_document import (
    MAX_DOCUMENT_BYTES,
    MAX_RULES,
    PolicyDocument,
    PolicyDocumentError,
    PolicyError,
    RuleDraft,
    dump_policy_document,
    parse_policy_document,
    rule_draft_from_mapping,
)

EXAMPLE = """\
agent: support-bot
default: allow                 # allow | block
rules:
  - name: refund limit
    action: stripe.refund
    effect: requires_approval  # allow | requires_approval | block
    max_amount: 100
  - name: no deletes
    action: "database.*.delete"
    effect: block
  - name: big transfers
    action: bank.transfer
    effect: requires_approval
    approval: {timeout: 30m, approvals_required: 2}
  - name: daily refund budget
    action: stripe.refund
    effect: requires_approval
    limit: {sum: amount, over: 2000, per: 1d}
  - name: vip only
    action: crm.discount
    effect: block
    when:
      - {field: customer.tier, op: ne, value: vip}
    environments: [live]
"""

RICH = {
    "agent": "ops-bot",
    "default": "block",
    "rules": [
        {
            "name": "reads",
            "description": "Reading is always fine",
            "action": "files.read.*",
            "effect": "allow",
        },
        {
            "name": "odd amounts",
            "action": "stripe.refund_*",
            "effect": "requires_approval",
            "max_amount": 12.5,
            "amount_field": "payment.total",
            "approval": {"timeout": "90s"},
            "environments": ["test"],
        },
        {
            "name": "email burst",
            "action": "email.*",
            "effect": "block",
            "limit": {"count": 5, "per": "1h"},
            "enabled": False,
        },
        {
            "name": "prod deletes",
            "action": "db.*.delete",
            "effect": "block",
            "when": [
                {"field": "env", "op": "in", "value": ["prod", "staging"]},
                {"field": "rows", "op": "gte", "value": 1000},
                {"field": "query", "op": "matches", "value": "(?i)drop\\s+table"},
                {"field": "force", "op": "exists", "value": False},
            ],
        },
        {
            "name": "cents budget",
            "action": "*",
            "effect": "requires_approval",
            "limit": {"sum": "cost", "over": 0.75, "per": "7d"},
            "approval": {"approvals_required": 3},
        },
    ],
}


def errors_of(text: Any, **options: Any) -> list[PolicyError]:
    with pytest.raises(PolicyDocumentError) as caught:
        parse_policy_document(text, **options)
    return caught.value.errors


def one_rule(**rule: Any) -> dict[str, Any]:
    base = {"name": "r", "action": "stripe.refund", "effect": "block"}
    base.update(rule)
    return {"agent": "a", "rules": [base]}


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------


def test_example_document_parses_into_validated_drafts() -> None:
    document = parse_policy_document(EXAMPLE)
    assert (document.agent, document.default) == ("support-bot", "allow")
    assert [r.name for r in document.rules] == [
        "refund limit",
        "no deletes",
        "big transfers",
        "daily refund budget",
        "vip only",
    ]
    refund, _, transfers, budget, vip = document.rules
    assert refund.max_amount == Decimal(100)
    assert (transfers.approval_timeout, transfers.approvals_required) == (1800, 2)
    assert budget.limit == Limit(kind="sum", per_seconds=86400, field="amount", over=Decimal(2000))
    assert vip.conditions == (Condition("customer.tier", "ne", "vip"),)
    assert vip.environments == frozenset({"live"})


def test_json_document_parses_like_the_yaml_one() -> None:
    as_json = json.dumps(yaml.safe_load(EXAMPLE))
    assert parse_policy_document(as_json) == parse_policy_document(EXAMPLE)
    assert parse_policy_document(as_json, format="json") == parse_policy_document(EXAMPLE)


def test_mapping_and_bytes_inputs_are_accepted() -> None:
    expected = parse_policy_document(EXAMPLE)
    assert parse_policy_document(yaml.safe_load(EXAMPLE)) == expected
    assert parse_policy_document(EXAMPLE.encode()) == expected


def test_default_defaults_to_allow_and_rules_to_empty() -> None:
    assert parse_policy_document("agent: quiet") == PolicyDocument("quiet", "allow", ())


def test_float_max_amount_becomes_the_decimal_it_reads_as() -> None:
    document = parse_policy_document(one_rule(max_amount=0.1))
    assert document.rules[0].max_amount == Decimal("0.1")


def test_parsed_rules_compile_and_decide() -> None:
    document = parse_policy_document(EXAMPLE)
    specs = [draft.to_spec(f"r{i}", position=i) for i, draft in enumerate(document.rules)]
    policy = compile_policy(specs, default=document.default)
    decision = policy.evaluate("stripe.refund", {"amount": 150}, "live", {"r3": 0})
    assert decision.decision == "requires_approval"
    assert decision.reason == "amount 150 exceeds max_amount 100 of rule 'refund limit'"
    assert policy.evaluate("crm.discount", {"customer": {"tier": "vip"}}, "live").decision == (
        "allow"
    )


def test_to_spec_carries_id_position_and_scope() -> None:
    draft = parse_policy_document(EXAMPLE).rules[2]
    spec = draft.to_spec("rul_1", position=7, scope="org")
    assert (spec.id, spec.position, spec.scope, spec.approvals_required) == ("rul_1", 7, "org", 2)


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------

RULE_ERRORS = [
    # rule fields, field in error, message fragment
    ({"effect": "deny"}, "effect", "must be one of allow, requires_approval, block"),
    ({"effect": None}, "effect", "is required"),
    ({"action": "a..b"}, "action", "invalid action pattern"),
    ({"action": "stripe.**"}, "action", "'**' is not supported"),
    ({"action": 5}, "action", "must be a string"),
    ({"colour": "red"}, "colour", "unknown key"),
    ({"when": {"field": "x"}}, "when", "must be a list"),
    ({"when": [{"field": "x", "op": "like", "value": 1}]}, "when[0].op", "unknown operator"),
    ({"when": [{"field": "x", "op": "in", "value": "a"}]}, "when[0].value", "needs a list"),
    ({"when": [{"field": "x", "op": "not_in", "value": 3}]}, "when[0].value", "needs a list"),
    ({"when": [{"field": "x", "op": "gt", "value": "10"}]}, "when[0].value", "needs a number"),
    ({"when": [{"field": "x", "op": "lte", "value": True}]}, "when[0].value", "needs a number"),
    (
        {"when": [{"field": "x", "op": "matches", "value": "a" * 257}]},
        "when[0].value",
        "longer than 256",
    ),
    (
        {"when": [{"field": "x", "op": "matches", "value": "(open"}]},
        "when[0].value",
        "invalid regular expression",
    ),
    ({"when": [{"field": "x", "op": "exists", "value": "yes"}]}, "when[0].value", "true or false"),
    ({"when": [{"field": "", "op": "eq", "value": 1}]}, "when[0].field", "non-empty"),
    ({"when": [{"field": "x", "op": "eq"}]}, "when[0].value", "is required"),
    ({"when": [{"field": "x", "op": "eq", "value": 1, "not": 1}]}, "when[0].not", "unknown key"),
    ({"when": ["x == 1"]}, "when[0]", "must be a mapping"),
    (
        {"when": [{"field": "x", "op": "eq", "value": {"a": 1}}]},
        "when[0].value",
        "plain value",
    ),
    ({"when": [{"field": "x", "op": "ne", "value": [[1]]}]}, "when[0].value", "plain value"),
    ({"max_amount": 0}, "max_amount", "greater than 0"),
    ({"max_amount": -5}, "max_amount", "greater than 0"),
    ({"max_amount": "lots"}, "max_amount", "must be a number"),
    ({"max_amount": True}, "max_amount", "must be a number"),
    ({"amount_field": ""}, "amount_field", "non-empty"),
    ({"limit": {"count": 5, "per": "1w"}}, "limit.per", "invalid duration"),
    ({"limit": {"count": 5}}, "limit.per", "is required"),
    ({"limit": {"count": 0, "per": "1h"}}, "limit.count", "at least 1"),
    ({"limit": {"count": 2.5, "per": "1h"}}, "limit.count", "whole number"),
    ({"limit": {"count": 5, "sum": "amount", "per": "1h"}}, "limit", "exactly one"),
    ({"limit": {"sum": "amount", "per": "1d"}}, "limit.over", "is required"),
    ({"limit": {"sum": "amount", "over": 0, "per": "1d"}}, "limit.over", "greater than 0"),
    ({"limit": {"count": 1, "per": "1h", "burst": 2}}, "limit.burst", "unknown key"),
    ({"limit": "5/h"}, "limit", "must be"),
    ({"approval": {"timeout": "soon"}}, "approval.timeout", "invalid duration"),
    ({"approval": {"timeout": "0s"}}, "approval.timeout", "positive"),
    ({"approval": {"approvals_required": 0}}, "approval.approvals_required", "at least 1"),
    ({"approval": {"quorum": 2}}, "approval.quorum", "unknown key"),
    ({"environments": ["prod"]}, "environments", "only test and live"),
    ({"environments": []}, "environments", "non-empty"),
    ({"enabled": "maybe"}, "enabled", "true or false"),
    ({"description": 5}, "description", "must be a string"),
]


@pytest.mark.parametrize(("fields", "field", "fragment"), RULE_ERRORS)
def test_rule_errors_name_the_rule_and_field(
    fields: dict[str, Any], field: str, fragment: str
) -> None:
    errors = errors_of(one_rule(**fields))
    assert [(e.rule, e.field) for e in errors] == [("r", field)]
    assert fragment in errors[0].message


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({"action": "a.b", "effect": "block"}, "name"),
        ({"name": "", "action": "a.b", "effect": "block"}, "name"),
        ({"name": 7, "action": "a.b", "effect": "block"}, "name"),
        ({"name": "x", "effect": "block"}, "action"),
    ],
)
def test_rule_without_a_usable_name_is_labelled_by_index(rule: dict[str, Any], field: str) -> None:
    errors = errors_of({"agent": "a", "rules": [rule]})
    label = "x" if rule.get("name") == "x" else "rules[0]"
    assert [(e.rule, e.field) for e in errors] == [(label, field)]


def test_every_error_in_the_document_is_reported_at_once() -> None:
    document = {
        "agent": "a",
        "default": "maybe",
        "extra": 1,
        "rules": [
            {"name": "one", "action": "a..b", "effect": "deny"},
            {"name": "two", "action": "ok", "effect": "block", "max_amount": -1},
            "not a rule",
        ],
    }
    errors = errors_of(document)
    assert {(e.rule, e.field) for e in errors} == {
        (None, "extra"),
        (None, "default"),
        ("one", "action"),
        ("one", "effect"),
        ("two", "max_amount"),
        ("rules[2]", None),
    }


def test_error_text_lists_every_problem() -> None:
    with pytest.raises(PolicyDocumentError) as caught:
        parse_policy_document(one_rule(effect="deny", max_amount=0))
    text = str(caught.value)
    assert text.startswith("policy document has 2 errors:")
    assert "- rule 'r', field 'effect': must be one of" in text
    assert "- rule 'r', field 'max_amount': must be greater than 0" in text


def test_duplicate_rule_names_are_an_error() -> None:
    rule = {"name": "same", "action": "a.b", "effect": "block"}
    errors = errors_of({"agent": "a", "rules": [rule, dict(rule)]})
    assert [(e.rule, e.field, e.message) for e in errors] == [
        ("same", "name", "duplicate rule name")
    ]


@pytest.mark.parametrize(
    ("text", "field", "fragment"),
    [
        ("agent: a\nrules: [\n", None, "invalid YAML: line"),
        ('{"agent": "a", "rules": [}', None, "invalid JSON"),
        ('{"agent": "a", "rules": [], "x": NaN}', None, "invalid JSON"),
        ("- just\n- a list\n", None, "must be a mapping"),
        ("just text", None, "must be a mapping"),
        ("default: allow", "agent", "is required"),
        ("agent: ''", "agent", "non-empty"),
        ("agent: a\ndefault: deny", "default", "allow or block"),
        ("agent: a\nrules: {name: x}", "rules", "must be a list"),
        ("agent: a\npolicy: x", "policy", "unknown key"),
        ("agent: a\nrules: &r []\nmore: *r\n", None, "aliases"),
        ("agent: !!python/object:os.system x\n", None, "invalid YAML"),
    ],
)
def test_document_level_errors(text: str, field: str | None, fragment: str) -> None:
    errors = errors_of(text)
    assert errors[0].rule is None
    assert errors[0].field == field
    assert fragment in errors[0].message


def test_document_larger_than_the_cap_is_refused_before_parsing() -> None:
    errors = errors_of("agent: a\n" + "#" * MAX_DOCUMENT_BYTES)
    assert "larger than" in errors[0].message


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_deeply_nested_document_is_an_error_not_a_crash(fmt: str) -> None:
    errors = errors_of("[" * 100_000 + "]" * 100_000, format=fmt)
    assert "invalid" in errors[0].message


def test_bytes_that_are_not_utf8_are_refused() -> None:
    assert "UTF-8" in errors_of(b"agent: \xff\xfe")[0].message


def test_more_rules_than_the_sanity_cap_is_refused() -> None:
    rules = [{"name": f"r{i}", "action": "a.b", "effect": "block"} for i in range(MAX_RULES + 1)]
    errors = errors_of({"agent": "a", "rules": rules})
    assert [(e.field, e.message) for e in errors] == [
        ("rules", f"at most {MAX_RULES} rules per document")
    ]


# ---------------------------------------------------------------------------
# Plans
# ---------------------------------------------------------------------------


def test_requires_approval_without_approvals_on_the_plan_names_the_plan() -> None:
    errors = errors_of(one_rule(effect="requires_approval"), approvals_enabled=False)
    assert [(e.rule, e.field, e.message) for e in errors] == [
        ("r", "effect", "requires_approval needs the Pro plan or higher")
    ]


def test_plan_names_can_be_configured() -> None:
    errors = errors_of(
        one_rule(effect="requires_approval", approval={"approvals_required": 2}),
        approvals_enabled=False,
        quorum_enabled=False,
        approvals_plan="Team",
        quorum_plan="Enterprise",
    )
    assert [e.message for e in errors] == [
        "requires_approval needs the Team plan or higher",
        "more than one approval needs the Enterprise plan or higher",
    ]


def test_quorum_without_the_business_plan_is_an_error() -> None:
    errors = errors_of(
        one_rule(effect="requires_approval", approval={"approvals_required": 2}),
        quorum_enabled=False,
    )
    assert [(e.field, e.message) for e in errors] == [
        ("approval.approvals_required", "more than one approval needs the Business plan or higher")
    ]


def test_single_approval_is_fine_without_quorum() -> None:
    document = parse_policy_document(
        one_rule(effect="requires_approval", approval={"approvals_required": 1}),
        quorum_enabled=False,
    )
    assert document.rules[0].approvals_required == 1


def test_more_rules_than_the_plan_allows_names_the_limit() -> None:
    errors = errors_of(EXAMPLE, max_rules=3)
    assert [(e.field, e.message) for e in errors] == [
        ("rules", "your plan allows at most 3 rules per agent; this document has 5")
    ]


def test_exactly_as_many_rules_as_the_plan_allows_is_fine() -> None:
    assert len(parse_policy_document(EXAMPLE, max_rules=5).rules) == 5


# ---------------------------------------------------------------------------
# Single rules
# ---------------------------------------------------------------------------


def test_rule_draft_from_mapping_validates_one_rule() -> None:
    draft = rule_draft_from_mapping(
        {"name": "cap", "action": "stripe.refund", "effect": "block", "max_amount": "10.50"}
    )
    assert draft == RuleDraft(
        name="cap", action="stripe.refund", effect="block", max_amount=Decimal("10.50")
    )


def test_rule_draft_from_mapping_reports_all_errors() -> None:
    with pytest.raises(PolicyDocumentError) as caught:
        rule_draft_from_mapping(
            {"name": "cap", "action": "", "effect": "requires_approval"}, approvals_enabled=False
        )
    assert [(e.rule, e.field) for e in caught.value.errors] == [
        ("cap", "action"),
        ("cap", "effect"),
    ]


def test_rule_draft_from_mapping_refuses_a_non_mapping() -> None:
    with pytest.raises(PolicyDocumentError):
        rule_draft_from_mapping(["not", "a", "rule"])  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Dumping and round trips
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("source", [EXAMPLE, RICH], ids=["example", "rich"])
@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_parse_dump_parse_round_trips_exactly(source: Any, fmt: str) -> None:
    document = parse_policy_document(source)
    text = dump_policy_document(document.agent, document.default, document.rules, format=fmt)
    again = parse_policy_document(text, format=fmt)
    assert again == document
    assert dump_policy_document(again.agent, again.default, again.rules, format=fmt) == text


def test_dump_of_the_example_omits_defaults_and_writes_durations() -> None:
    document = parse_policy_document(EXAMPLE)
    dumped = yaml.safe_load(dump_policy_document(document.agent, document.default, document.rules))
    assert dumped == yaml.safe_load(EXAMPLE)


def test_dump_writes_amounts_as_plain_numbers() -> None:
    document = parse_policy_document(RICH)
    dumped = json.loads(
        dump_policy_document(document.agent, document.default, document.rules, format="json")
    )
    assert dumped["rules"][1]["max_amount"] == 12.5
    assert dumped["rules"][1]["approval"] == {"timeout": "90s"}
    assert dumped["rules"][4]["limit"] == {"sum": "cost", "over": 0.75, "per": "7d"}
    assert dumped["rules"][2]["enabled"] is False


def test_dump_accepts_rule_specs() -> None:
    spec = RuleSpec(
        id="rul_1",
        name="cap",
        action="stripe.refund",
        effect="block",
        max_amount=Decimal("100.00"),
        limit=Limit(kind="count", per_seconds=900, count=3),
    )
    text = dump_policy_document("bot", "allow", [spec])
    assert "max_amount: 100\n" in text
    assert "per: 15m" in text
    document = parse_policy_document(text)
    assert document.rules[0].to_spec("rul_1") == spec


def test_strings_that_look_like_other_types_survive_a_yaml_round_trip() -> None:
    source = one_rule(when=[{"field": "flag", "op": "in", "value": ["no", "100", "null", "1h"]}])
    document = parse_policy_document(source)
    text = dump_policy_document(document.agent, document.default, document.rules)
    assert parse_policy_document(text) == document


def test_dump_rejects_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="format"):
        dump_policy_document("a", "allow", [], format="toml")
