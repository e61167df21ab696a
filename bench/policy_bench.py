"""Micro-benchmark of the policy evaluator: µs per `evaluate` for an agent with 100 rules.

Run by hand: `python bench/policy_bench.py` (target: under 20 µs per evaluate).
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import timeit
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.policy import (
    CompiledPolicy,
    Condition,
    Limit,
    RuleSpec,
    compile_policy,
)

SERVICES = ["stripe", "github", "slack", "database", "email", "crm", "bank", "files", "jira", "s3"]
VERBS = ["create", "read", "update", "delete", "refund", "send", "list", "transfer"]


def build_rules() -> list[RuleSpec]:
    """100 rules of mixed kinds, like a busy agent's policy."""
    rules: list[RuleSpec] = []

    def add(**fields: object) -> None:
        index = len(rules)
        fields.setdefault("effect", "block")
        rules.append(RuleSpec(id=f"r{index}", name=f"rule {index}", position=index, **fields))

    for i in range(40):  # exact, plain
        add(action=f"{SERVICES[i % 10]}.{VERBS[i % 8]}_{i}", effect=("allow", "block")[i % 2])
    for i in range(10):  # exact, max_amount
        add(
            action=f"{SERVICES[i]}.refund",
            effect="requires_approval",
            max_amount=Decimal(100 + i),
        )
    for i in range(20):  # exact, conditions
        add(
            action=f"{SERVICES[i % 10]}.update",
            conditions=(
                Condition("customer.tier", "ne", "vip"),
                Condition("count", "gte", 10 + i),
                Condition("region", "in", ("eu", "us", "apac")),
            ),
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
        add(
            action=f"{SERVICES[i]}.send",
            effect="requires_approval",
            limit=(
                Limit(kind="count", per_seconds=3600, count=50)
                if i % 2
                else Limit(kind="sum", per_seconds=86400, field="amount", over=Decimal(2000))
            ),
        )
    assert len(rules) == 100
    return rules


CALLS = {
    "exact rule (max_amount)": ("stripe.refund", {"amount": 50}, None),
    "exact rule (3 conditions)": (
        "github.update",
        {"customer": {"tier": "basic"}, "count": 40, "region": "eu"},
        None,
    ),
    "glob rule": ("crm.users.delete", {"id": 7}, None),
    "limit rule with totals": ("stripe.send", {"amount": 10}, {"r95": 1500}),
    "no matching rule": ("weather.forecast", {"city": "Oslo"}, None),
}


def measure(policy: CompiledPolicy, number: int = 20000, repeat: int = 7) -> dict[str, float]:
    results = {}
    evaluate = policy.evaluate
    for label, (action, arguments, totals) in CALLS.items():
        timer = timeit.Timer(lambda a=action, g=arguments, t=totals: evaluate(a, g, "live", t))
        runs = timer.repeat(repeat=repeat, number=number)
        results[label] = statistics.median(runs) / number * 1e6
    return results


def measure_uncached(policy: CompiledPolicy, number: int = 2000, repeat: int = 5) -> float:
    action, arguments, totals = CALLS["glob rule"]
    timer = timeit.Timer(lambda: policy.evaluate_uncached(action, arguments, "live", totals))
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


if __name__ == "__main__":
    main()
