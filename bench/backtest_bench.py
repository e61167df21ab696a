"""How fast a backtest replays recorded calls against a candidate policy.

    .venv/bin/python bench/backtest_bench.py [--calls 100000] [--runs 3]

Needs PostgreSQL on 127.0.0.1 (database BENCH_DATABASE_URL, default warden_backtest_bench,
dropped and created afresh). Seeds an Enterprise organisation with one agent and writes
``--calls`` recorded checks straight into the audit table, spread over the last 7 days
minus an hour (refunds with an amount and a customer, searches, emails, deletes), plus a
seventh as many in the day before (the history the candidate's 1-day windows start from).
Then times ``agents.backtest.agent_policy_backtest`` (what ``POST .../policy/backtest``
and ``warden_policy backtest`` run) over the last 7 days with a candidate of 20 rules: a
1-day sum limit, a 1-day count limit per customer, a max_amount, a list condition, and 16
rules that match nothing, ``--runs`` times, and prints calls/s (the issue asks for 100,000
calls within 10 s).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/warden_backtest_bench"
)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_load import DATABASE_URL, env
from servers import database_prepare

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CANDIDATE = """\
agent: backtest-bot
lists:
  blocked_domains: [mailinator.com, tempmail.dev]
rules:
  - name: daily refund budget
    action: stripe.refund
    effect: requires_approval
    limit: {sum: amount, over: 250000, per: 1d}
  - name: refunds per customer
    action: stripe.refund
    effect: block
    limit: {count: 40, per: 1d, by: customer_id}
  - name: large refunds
    action: stripe.refund
    effect: requires_approval
    max_amount: 450
  - name: no throwaway addresses
    action: email.send
    effect: block
    when:
      - {field: to, op: email_domain_in, value: $lists.blocked_domains}
  - name: no deletes
    action: "database.*.delete"
    effect: block
""" + "".join(
    f"""  - name: rule {i}
    action: "tool{i}.*"
    effect: block
    when:
      - {{field: customer.tier, op: ne, value: vip}}
"""
    for i in range(16)
)


def setup(calls: int) -> object:
    """Django in this process on a fresh benchmark database; the agent, with ``calls``
    recorded checks in the last 7 days and a seventh as many the day before."""
    os.environ.update(env())
    database_prepare(DATABASE_URL, fresh=True)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from accounts.models import Organization, Plan
    from agents import services

    call_command("migrate", verbosity=0)
    org = Organization.objects.create(name="Bench", plan=Plan.objects.get(slug="enterprise"))
    agent = services.agent_create(organization=org, actor=None, name="backtest-bot")
    span = 7 * 86400 - 3600
    with connection.cursor() as cursor:
        for first, count, offset, window in (
            (1, calls, 0, span),  # the period
            (calls + 1, calls // 7, span, 86400),  # the day before it
        ):
            cursor.execute(
                """
                INSERT INTO audit_auditentry (public_id, organization_id, kind, created_at,
                    actor_label, agent_id, agent_public_id, action, action_id, arguments,
                    environment, session_id, decision, status, rule_public_id, rule_name,
                    reason, source, target_type, target_id, data, idempotency_key)
                SELECT 'act_bt' || g, %s, 'check',
                    now() - interval '1 second' * (%s + (g * 7919) %% %s),
                    'bench', %s, %s,
                    (ARRAY['stripe.refund', 'stripe.refund', 'stripe.refund', 'kb.search',
                           'email.send', 'database.users.delete'])[1 + g %% 6],
                    '',
                    jsonb_build_object('amount', 1 + (g * 37) %% 500,
                                       'customer_id', 'cus_' || (g %% 2000),
                                       'to', CASE WHEN g %% 50 = 0 THEN 'x@mailinator.com'
                                                  ELSE 'x@corp.com' END,
                                       'query', 'refund policy'),
                    'live', '', 'allow', 'allowed', '', '', 'no_policy_configured',
                    'native', '', '', '{}', ''
                FROM generate_series(%s, %s) AS g
                """,
                [
                    org.pk,
                    offset,
                    window,
                    agent.pk,
                    agent.public_id,
                    first,
                    first + count - 1,
                ],
            )
        cursor.execute("VACUUM ANALYZE audit_auditentry")
        cursor.execute("CHECKPOINT")
    return agent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not 1 <= args.calls <= 100_000:
        raise SystemExit("--calls must be from 1 to 100000 (a backtest's most)")
    print(f"seeding {args.calls} recorded calls (+{args.calls // 7} the day before) ...")
    agent = setup(args.calls)
    from agents.backtest import agent_policy_backtest

    timings = []
    result: dict = {}
    for run in range(args.runs):
        wall, cpu = time.perf_counter(), time.process_time()
        result = agent_policy_backtest(agent=agent, policy=CANDIDATE, since="7d", limit=args.calls)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        timings.append((wall, cpu))
        print(
            f"run {run + 1}: {result['calls']} calls in {wall:.2f} s "
            f"({result['calls'] / wall:,.0f} calls/s; CPU of this process {cpu:.2f} s)"
        )
    if result["calls"] != args.calls:
        raise SystemExit(f"replayed {result['calls']} calls, expected {args.calls}")
    wall = statistics.median(w for w, _ in timings)
    print(
        f"\nmedian of {args.runs}: {args.calls} calls in {wall:.2f} s = "
        f"{args.calls / wall:,.0f} calls/s"
    )
    print(f"changed: {result['changed']}; transitions: {result['transitions']}")
    for row in result["by_rule"][:5]:
        print(f"  {row['rule']}: matched {row['matched']}, changed {row['changed']}")


if __name__ == "__main__":
    main()
