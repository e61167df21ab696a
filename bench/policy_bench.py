"""Micro-benchmark of the policy evaluator: µs per `evaluate` for an agent with 100 rules.

Run by hand: `python bench/policy_bench.py` (target: under 20 µs per evaluate).
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dataclasses import replace

from agents.policy import Call, CompiledPolicy, RuleSpec, compile_policy
from agents.policy_document import rule_spec_from_mapping

SERVICES = ["stripe", "github", "slack", "database", "email", "crm", "bank", "files", "jira", "s3"]
VERBS = ["create", "read", "update", "delete", "refund", "send", "list", "transfer"]


def build_rules() -> list[RuleSpec]:
    """100 rules of mixed kinds, like a busy agent's policy, nested conditions included."""
    rules: list[RuleSpec] = []

    def add(**fields: object) -> None:
        index = len(rules)
        fields.setdefault("effect", "block")
        spec = rule_spec_from_mapping({"name": f"rule {index}", **fields}, lists=LISTS)
        rules.append(replace(spec, id=f"r{index}", position=index))

    for i in range(30):  # exact, plain
        add(action=f"{SERVICES[i % 10]}.{VERBS[i % 8]}_{i}", effect=("allow", "block")[i % 2])
    for i in range(10):  # exact, max_amount
        add(action=f"{SERVICES[i]}.refund", effect="requires_approval", max_amount=100 + i)
    for i in range(20):  # exact, a list of conditions
        add(
            action=f"{SERVICES[i % 10]}.update",
            when=[
                {"field": "customer.tier", "op": "ne", "value": "vip"},
                {"field": "count", "op": "gte", "value": 10 + i},
                {"field": "region", "op": "in", "value": ["eu", "us", "apac"]},
            ],
        )
    for i in range(10):  # exact, nested any/all/not, unless, wildcard paths, lists, context
        add(
            action=f"{SERVICES[i]}.create",
            effect="requires_approval",
            when={
                "any": [
                    {"field": "amount", "op": "gt", "value": 1000 + i},
                    {
                        "all": [
                            {"field": "currency", "op": "ne", "value": "USD"},
                            {"not": {"field": "customer.tier", "op": "eq", "value": "vip"}},
                        ]
                    },
                    {"field": "items.*.amount", "op": "gt", "value": 500},
                    {"field": "to", "op": "email_domain_in", "value": "$lists.blocked"},
                ]
            },
            unless=[{"field": "$metadata.role", "op": "ieq", "value": "finance"}],
        )
    for i in range(25):  # globs of every form
        pattern = (
            f"{SERVICES[i % 10]}.*.delete",
            f"{SERVICES[i % 10]}.admin.*",
            f"{SERVICES[i % 10]}.bulk_*",
            f"internal{i}.*",
            f"*.{VERBS[i % 8]}.dangerous",
        )[i % 5]
        add(action=pattern)
    for i in range(5):  # running-total limits
        limit = (
            {"count": 50, "per": "1h"}
            if i % 2
            else {"sum": "amount", "over": 2000, "per": "1d", "by": "customer_id"}
        )
        add(action=f"{SERVICES[i]}.send", effect="requires_approval", limit=limit)
    assert len(rules) == 100
    return rules


LISTS = {"blocked": ("mailinator.com", "tempmail.dev")}
CALLS = {
    "exact rule (max_amount)": (Call("stripe.refund", {"amount": 50}), None),
    "exact rule (3 conditions)": (
        Call("github.update", {"customer": {"tier": "basic"}, "count": 40, "region": "eu"}),
        None,
    ),
    "nested any/all/not + unless": (
        Call(
            "github.create",
            {
                "amount": 10,
                "currency": "EUR",
                "customer": {"tier": "vip"},
                "items": [{"amount": 20}, {"amount": 30}],
                "to": "a@corp.com",
            },
            metadata={"role": "ops"},
        ),
        None,
    ),
    "glob rule": (Call("crm.users.delete", {"id": 7}), None),
    "limit rule with totals": (
        Call("stripe.send", {"amount": 10, "customer_id": "c1"}),
        {"r95": 1500},
    ),
    "no matching rule": (Call("weather.forecast", {"city": "Oslo"}), None),
}


def measure(policy: CompiledPolicy, number: int = 20000, repeat: int = 7) -> dict[str, float]:
    results = {}
    evaluate = policy.evaluate
    for label, (call, totals) in CALLS.items():
        timer = timeit.Timer(lambda c=call, t=totals: evaluate(c, t))
        runs = timer.repeat(repeat=repeat, number=number)
        results[label] = statistics.median(runs) / number * 1e6
    return results


def measure_uncached(policy: CompiledPolicy, number: int = 2000, repeat: int = 5) -> float:
    call, totals = CALLS["glob rule"]
    timer = timeit.Timer(lambda: policy.evaluate_uncached(call, totals))
    return statistics.median(timer.repeat(repeat=repeat, number=number)) / number * 1e6


def measure_budgets(policy: CompiledPolicy, number: int = 20000, repeat: int = 7) -> float:
    call, _ = CALLS["limit rule with totals"]
    timer = timeit.Timer(lambda: policy.budgets(call))
    return statistics.median(timer.repeat(repeat=repeat, number=number)) / number * 1e6


def main() -> None:
    rules = build_rules()
    compile_runs = timeit.Timer(lambda: compile_policy(rules)).repeat(repeat=5, number=20)
    policy = compile_policy(rules)
    print(f"machine: {platform.platform()}, python {platform.python_version()},")
    print(f"         {platform.processor() or platform.machine()}, cpu_count={os.cpu_count()}")
    compile_ms = statistics.median(compile_runs) / 20 * 1e3
    print(f"rules: {len(rules)}; compile_policy: {compile_ms:.2f} ms")
    print("µs per evaluate (median of 7 repeats x 20000 calls, candidate cache warm):")
    for label, micros in measure(policy).items():
        print(f"  {label:<28} {micros:7.2f} µs")
    print(f"  {'glob rule, cache bypassed':<28} {measure_uncached(policy):7.2f} µs")
    print(f"  {'budgets() of a limited call':<28} {measure_budgets(policy):7.2f} µs")


if __name__ == "__main__":
    main()
