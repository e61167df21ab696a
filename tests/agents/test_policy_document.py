from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
import yaml

from agents.policy import AllOf, AnyOf, Call, Cond, Limit, Not, compile_policy
from agents.policy_document import (
    MAX_DEPTH,
    MAX_DOCUMENT_BYTES,
    MAX_RULES,
    PolicyDocument,
    PolicyDocumentError,
    PolicyError,
    dump_policy_document,
    parse_policy_document,
    path_parts,
    path_text,
    rule_spec_from_mapping,
    rule_to_mapping,
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


# The new language, as the policy engine v2 issue writes it.
LANGUAGE = """\
agent: payments-bot
default: allow
lists:
  blocked_domains: [mailinator.com, tempmail.dev]
rules:
  - name: large or foreign refunds
    action: stripe.refund
    effect: requires_approval
    message: "Refunds over 1,000 or in another currency need a finance reviewer."
    when:
      any:
        - {field: amount, op: gt, value: 1000}
        - all:
            - {field: currency, op: ne, value: USD}
            - not: {field: customer.tier, op: eq, value: vip}
  - name: no deletes except scratch
    action: "database.*.delete"
    effect: block
    unless:
      - {field: $action, op: eq, value: database.scratch.delete}
  - name: business hours only
    action: "payments.*"
    effect: requires_approval
    when:
      - {field: $time.hour, op: not_in, value: [9, 10, 11, 12, 13, 14, 15, 16]}
  - name: any line item over 500
    action: orders.create
    effect: requires_approval
    when:
      - {field: items.*.amount, op: gt, value: 500}
  - name: no throwaway addresses
    action: email.send
    effect: block
    when:
      - {field: to, op: email_domain_in, value: $lists.blocked_domains}
  - name: per customer budget
    action: stripe.refund
    effect: requires_approval
    limit: {sum: amount, over: 500, per: 1d, by: customer_id}
"""


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


def test_example_document_parses_into_validated_rules() -> None:
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
    assert vip.when == AllOf((Cond("customer.tier", "ne", "vip"),))
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
    from dataclasses import replace

    document = parse_policy_document(EXAMPLE)
    specs = [replace(spec, id=f"r{i}", position=i) for i, spec in enumerate(document.rules)]
    policy = compile_policy(specs, default=document.default)
    decision = policy.evaluate(Call("stripe.refund", {"amount": 150}), {"r3": 0})
    assert decision.decision == "requires_approval"
    assert decision.reason == "amount 150 exceeds max_amount 100 of rule 'refund limit'"
    vip = Call("crm.discount", {"customer": {"tier": "vip"}})
    assert policy.evaluate(vip).decision == "allow"


def test_a_single_rule_carries_id_position_and_scope() -> None:
    mapping = yaml.safe_load(EXAMPLE)["rules"][2]
    spec = rule_spec_from_mapping(mapping, id="rul_1", position=7, scope="org")
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
    ({"when": {"field": "x"}}, "when.op", "is required"),
    ({"when": []}, "when", "must not be an empty list"),
    ({"when": 5}, "when", "must be a condition"),
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
    ({"when": [{"field": "x", "op": "eq", "value": 1, "not": 1}]}, "when[0]", "stand alone"),
    ({"when": [{"field": "x", "op": "eq", "value": 1, "colour": 1}]}, "when[0].colour", "unknown"),
    ({"when": ["x == 1"]}, "when[0]", "must be a condition"),
    ({"when": {"any": []}}, "when.any", "non-empty list"),
    ({"when": {"any": {"field": "x"}}}, "when.any", "non-empty list"),
    ({"when": {"any": [{"all": [{"op": "eq"}]}]}}, "when.any[0].all[0].field", "is required"),
    (
        {"when": {"any": [{"not": {"field": "x", "op": "near", "value": 1}}]}},
        "when.any[0].not.op",
        "unknown operator",
    ),
    ({"when": [{"field": "$time.minute", "op": "eq", "value": 1}]}, "when[0].field", "context"),
    ({"when": [{"field": "$metadata.", "op": "eq", "value": 1}]}, "when[0].field", "context"),
    ({"when": [{"field": "a..b", "op": "eq", "value": 1}]}, "when[0].field", "empty segment"),
    ({"when": [{"field": "a.b*", "op": "eq", "value": 1}]}, "when[0].field", "whole segment"),
    ({"when": [{"field": "x", "op": "cidr", "value": "10.0.0.0/33"}]}, "when[0].value", "network"),
    ({"when": [{"field": "x", "op": "cidr", "value": 10}]}, "when[0].value", "network"),
    (
        {"when": [{"field": "x", "op": "email_domain_in", "value": ["a@b.com"]}]},
        "when[0].value",
        "not a domain",
    ),
    ({"when": [{"field": "x", "op": "ieq", "value": 5}]}, "when[0].value", "needs a string"),
    ({"when": [{"field": "x", "op": "endswith", "value": None}]}, "when[0].value", "string"),
    ({"when": [{"field": "x", "op": "in", "value": "$lists.nope"}]}, "when[0].value", "unknown"),
    ({"when": [{"field": "x", "op": "eq", "value": "$lists.a"}]}, "when[0].value", "only be"),
    ({"unless": []}, "unless", "non-empty list"),
    ({"unless": [{"field": "x", "op": "eq"}]}, "unless[0].value", "is required"),
    ({"message": 5}, "message", "must be a string"),
    ({"message": "m" * 1001}, "message", "at most 1000"),
    ({"name": "n" * 121}, "name", "at most 120"),
    ({"name": "tab\there"}, "name", "control characters"),
    ({"action": "stripe.refund "}, "action", "may only contain"),
    ({"limit": {"count": 1, "per": "1h", "by": "items.*.id"}}, "limit.by", "wildcard"),
    ({"limit": {"count": 1, "per": "1h", "by": "$nope"}}, "limit.by", "context field"),
    ({"amount_field": "items.*"}, "amount_field", "wildcard"),
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
    ({"approval": {"approvals_required": 0}}, "approval.approvals_required", "from 1 to 20"),
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
    label = "r" if "name" not in fields else "rules[0]"
    assert [(e.rule, e.field, e.path) for e in errors] == [(label, field, f"rules[0].{field}")]
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
    assert "- rules[0].effect (rule 'r'): must be one of" in text
    assert "- rules[0].max_amount (rule 'r'): must be greater than 0" in text


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
# Plan limits (plan features are checked by the services: tests/agents/test_manage_api.py)
# ---------------------------------------------------------------------------


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


def test_rule_spec_from_mapping_validates_one_rule() -> None:
    spec = rule_spec_from_mapping(
        {"name": "cap", "action": "stripe.refund", "effect": "block", "max_amount": "10.50"}
    )
    assert (spec.name, spec.action, spec.effect, spec.max_amount) == (
        "cap",
        "stripe.refund",
        "block",
        Decimal("10.50"),
    )


def test_rule_spec_from_mapping_reports_all_errors() -> None:
    with pytest.raises(PolicyDocumentError) as caught:
        rule_spec_from_mapping({"name": "cap", "action": "", "effect": "maybe"})
    assert [(e.rule, e.field) for e in caught.value.errors] == [
        ("cap", "action"),
        ("cap", "effect"),
    ]


def test_rule_spec_from_mapping_refuses_a_non_mapping() -> None:
    with pytest.raises(PolicyDocumentError):
        rule_spec_from_mapping(["not", "a", "rule"])


# ---------------------------------------------------------------------------
# Dumping and round trips
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("source", [EXAMPLE, RICH, LANGUAGE], ids=["example", "rich", "language"])
@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_parse_dump_parse_round_trips_exactly(source: Any, fmt: str) -> None:
    document = parse_policy_document(source)
    text = dump_policy_document(
        document.agent, document.default, document.rules, format=fmt, lists=document.lists
    )
    again = parse_policy_document(text, format=fmt)
    assert again == document
    assert (
        dump_policy_document(again.agent, again.default, again.rules, format=fmt, lists=again.lists)
        == text
    )


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


def test_dump_writes_durations_and_plain_amounts() -> None:
    spec = rule_spec_from_mapping(
        {
            "name": "cap",
            "action": "stripe.refund",
            "effect": "block",
            "max_amount": "100.00",
            "limit": {"count": 3, "per": 900},
        }
    )
    text = dump_policy_document("bot", "allow", [spec])
    assert "max_amount: 100\n" in text
    assert "per: 15m" in text
    assert parse_policy_document(text).rules[0] == spec
    assert spec.limit == Limit(kind="count", per_seconds=900, count=3)


def test_strings_that_look_like_other_types_survive_a_yaml_round_trip() -> None:
    source = one_rule(when=[{"field": "flag", "op": "in", "value": ["no", "100", "null", "1h"]}])
    document = parse_policy_document(source)
    text = dump_policy_document(document.agent, document.default, document.rules)
    assert parse_policy_document(text) == document


def test_dump_rejects_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="format"):
        dump_policy_document("a", "allow", [], format="toml")


# ---------------------------------------------------------------------------
# The language: any/all/not, unless, lists, message, paths and lines
# ---------------------------------------------------------------------------


def test_the_issue_example_parses_into_nested_conditions() -> None:
    document = parse_policy_document(LANGUAGE)
    refunds, deletes, hours, items, emails, budget = document.rules
    assert refunds.message.startswith("Refunds over 1,000")
    assert refunds.when == AnyOf(
        (
            Cond("amount", "gt", 1000),
            AllOf(
                (
                    Cond("currency", "ne", "USD"),
                    Not(Cond("customer.tier", "eq", "vip")),
                )
            ),
        )
    )
    assert deletes.unless == (Cond("$action", "eq", "database.scratch.delete"),)
    assert hours.when == AllOf((Cond("$time.hour", "not_in", tuple(range(9, 17))),))
    assert items.when == AllOf((Cond("items.*.amount", "gt", 500),))
    assert emails.when == AllOf(
        (
            Cond(
                "to",
                "email_domain_in",
                ("mailinator.com", "tempmail.dev"),
                list_name="blocked_domains",
            ),
        )
    )
    assert budget.limit is not None and budget.limit.by == "customer_id"
    assert document.lists == {"blocked_domains": ("mailinator.com", "tempmail.dev")}


def test_a_list_reference_is_written_back_as_a_reference() -> None:
    document = parse_policy_document(LANGUAGE)
    mapping = rule_to_mapping(document.rules[4])
    assert mapping["when"] == [
        {"field": "to", "op": "email_domain_in", "value": "$lists.blocked_domains"}
    ]


def test_errors_give_the_full_path_and_the_yaml_line() -> None:
    broken = LANGUAGE.replace("op: eq, value: vip", "op: equals, value: vip")
    (error,) = errors_of(broken)
    assert error.path == "rules[0].when.any[1].all[1].not.op"
    assert error.field == "when.any[1].all[1].not.op"
    assert error.rule == "large or foreign refunds"
    assert (
        error.line
        == LANGUAGE.splitlines().index(
            "            - not: {field: customer.tier, op: eq, value: vip}"
        )
        + 1
    )
    assert str(error).startswith(
        f"rules[0].when.any[1].all[1].not.op (rule 'large or foreign refunds', line {error.line})"
    )


def test_json_documents_have_paths_but_no_lines() -> None:
    data = yaml.safe_load(LANGUAGE)
    data["rules"][3]["when"][0]["op"] = "bigger"
    (error,) = errors_of(json.dumps(data))
    assert (error.path, error.line) == ("rules[3].when[0].op", None)


@pytest.mark.parametrize(
    ("lists", "fragment"),
    [
        ("lists: [a, b]", "must map list names"),
        ("lists: {bad name: [a]}", "list names"),
        ("lists: {a: b}", "must be a list"),
        ("lists: {a: [{x: 1}]}", "must be a string, number"),
    ],
)
def test_lists_are_validated(lists: str, fragment: str) -> None:
    errors = errors_of(f"agent: a\n{lists}\n")
    assert fragment in errors[0].message


def test_a_list_used_with_email_domain_in_must_hold_domains() -> None:
    text = (
        "agent: a\nlists: {d: [ok.com, 'x@y.com']}\nrules:\n"
        "  - {name: r, action: a, effect: block, "
        "when: [{field: to, op: email_domain_in, value: $lists.d}]}\n"
    )
    (error,) = errors_of(text)
    assert error.path == "rules[0].when[0].value"
    assert "list 'd'" in error.message


def test_nesting_is_bounded() -> None:
    deep: Any = {"field": "x", "op": "eq", "value": 1}
    for _ in range(MAX_DEPTH + 2):
        deep = {"not": deep}
    errors = errors_of(one_rule(when=deep))
    assert "nested more than" in errors[0].message


def test_an_org_rule_cannot_name_a_list() -> None:
    with pytest.raises(PolicyDocumentError) as caught:
        rule_spec_from_mapping(
            {
                "name": "r",
                "action": "a",
                "effect": "block",
                "when": [{"field": "x", "op": "in", "value": "$lists.a"}],
            },
            lists=None,
        )
    assert "agent's policy" in caught.value.errors[0].message


@pytest.mark.parametrize(
    "path",
    ["rules[2].when.any[1].all[0].op", "when", "limit.per", "unless[0].not.field", "lists.a[3]"],
)
def test_path_parts_reads_back_path_text(path: str) -> None:
    assert path_text(path_parts(path)) == path


def test_exists_may_leave_out_its_value() -> None:
    spec = rule_spec_from_mapping(
        {"name": "r", "action": "a", "effect": "block", "when": [{"field": "x", "op": "exists"}]}
    )
    assert spec.when == AllOf((Cond("x", "exists", True),))


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"when": [{"field": "x", "op": "eq", "value": float("inf")}]}, "when[0].value"),
        ({"when": [{"field": "x", "op": "eq", "value": float("nan")}]}, "when[0].value"),
        ({"when": [{"field": "x", "op": "in", "value": [1, float("-inf")]}]}, "when[0].value"),
        ({"when": [{"field": "x", "op": "eq", "value": "a\x00b"}]}, "when[0].value"),
        ({"when": [{"field": "x", "op": "eq", "value": "\ud800"}]}, "when[0].value"),
        ({"when": [{"field": "x", "op": "startswith", "value": "\x00"}]}, "when[0].value"),
        ({"when": [{"field": "x\ud800", "op": "eq", "value": 1}]}, "when[0].field"),
        ({"message": "\ud800"}, "message"),
        ({"description": "a\x00"}, "description"),
        ({"max_amount": float("inf")}, "max_amount"),
    ],
)
def test_values_no_database_or_json_reader_takes_are_refused(
    fields: dict[str, Any], field: str
) -> None:
    errors = errors_of(one_rule(**fields))
    assert [e.field for e in errors] == [field]


@pytest.mark.parametrize(
    "text",
    [
        "agent: a\nrules:\n  - {name: r, action: a, effect: block,\n"
        "     when: [{field: x, op: eq, value: .inf}]}\n",
        "agent: a\nrules:\n  - {name: r, action: a, effect: block,\n"
        '     when: [{field: x, op: eq, value: "\\0"}]}\n',
    ],
)
def test_yaml_infinities_and_escaped_nul_are_refused(text: str) -> None:
    assert errors_of(text)[0].path == "rules[0].when[0].value"


ROUTED = {
    "name": "big refunds",
    "action": "stripe.refund",
    "effect": "requires_approval",
    "approval": {
        "timeout": "30m",
        "approvers": ["role:admin", "group:Finance", "user:Alice@Example.com"],
        "on_timeout": "escalate",
        "escalate_to": ["role:owner"],
        "escalate_timeout": "1h",
        "slack_channel": "#finance-approvals",
        "redact": ["card_number", "customer.email"],
        "grants": ["amount", "identical"],
    },
}


def test_approval_routing_slack_redaction_and_grants_are_read_into_the_rule() -> None:
    spec = rule_spec_from_mapping(ROUTED)
    assert spec.approvers == ("role:admin", "group:Finance", "user:alice@example.com")
    assert (spec.on_timeout, spec.escalate_to, spec.escalate_timeout) == (
        "escalate",
        ("role:owner",),
        3600,
    )
    assert spec.slack_channel == "#finance-approvals"
    assert spec.redact == ("card_number", "customer.email")
    assert spec.grants == ("identical", "amount")  # in their canonical order


def test_approval_block_round_trips_through_the_document_form() -> None:
    spec = rule_spec_from_mapping(ROUTED)
    assert rule_spec_from_mapping(rule_to_mapping(spec)) == spec
    assert rule_to_mapping(spec)["approval"]["approvers"] == list(spec.approvers)


def test_a_rule_without_an_approval_block_has_no_routing_and_no_grants() -> None:
    spec = rule_spec_from_mapping({"name": "r", "action": "a.b", "effect": "requires_approval"})
    assert (spec.approvers, spec.on_timeout, spec.grants, spec.redact) == ((), "deny", (), ())
    assert "approval" not in rule_to_mapping(spec)


@pytest.mark.parametrize(
    ("approval", "field"),
    [
        ({"approvers": ["boss"]}, "approval.approvers[0]"),
        ({"approvers": ["role:viewer"]}, "approval.approvers[0]"),
        ({"approvers": ["user:not-an-email"]}, "approval.approvers[0]"),
        ({"approvers": ["team:x"]}, "approval.approvers[0]"),
        ({"approvers": []}, "approval.approvers"),
        ({"approvers": "role:admin"}, "approval.approvers"),
        ({"on_timeout": "allow"}, "approval.on_timeout"),
        ({"on_timeout": "escalate"}, "approval.escalate_to"),
        ({"escalate_to": ["role:owner"]}, "approval.escalate_to"),
        ({"escalate_timeout": "1h"}, "approval.escalate_timeout"),
        (
            {"on_timeout": "escalate", "escalate_to": ["role:owner"], "escalate_timeout": "x"},
            "approval.escalate_timeout",
        ),
        ({"slack_channel": "Finance Approvals"}, "approval.slack_channel"),
        ({"redact": ["$agent"]}, "approval.redact[0]"),
        ({"redact": ["a..b"]}, "approval.redact[0]"),
        ({"redact": "card"}, "approval.redact"),
        ({"grants": ["forever"]}, "approval.grants"),
        ({"grants": "identical"}, "approval.grants"),
        ({"remember": True}, "approval.remember"),
    ],
)
def test_a_bad_approval_block_is_an_error_naming_the_key(
    approval: dict[str, Any], field: str
) -> None:
    rule = {"name": "r", "action": "a.b", "effect": "requires_approval", "approval": approval}
    with pytest.raises(PolicyDocumentError) as caught:
        rule_spec_from_mapping(rule)
    assert field in [e.field for e in caught.value.errors]
