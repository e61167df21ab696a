"""Cost of a check with running totals against one without, at 0 and at N rows of history.

    .venv/bin/python bench/limits_bench.py [--history 1000000] [--calls 2000] [--seconds 10]

Needs PostgreSQL on 127.0.0.1 (database BENCH_DATABASE_URL, default warden_limits_bench,
dropped and created afresh) and, for the gunicorn phase, Debian's `wrk`. Seeds an Enterprise
organisation (no rate limit) with one agent whose policy has

- `stripe.refund`: a `sum` limit (amount, 1d) and a `count` limit (1d), both far from full;
- `stripe.charge`: a `max_amount` rule, no limit (the check without limits);
- 18 other rules, as in bench/check_load.py;

then, for each history size (0, then N allowed `stripe.refund` checks spread over the last
23 hours, written straight into the audit table and counted into the budgets by
`limit_counters_rebuild`, which is timed):

1. in process (the WSGI application called directly, as bench/check_inprocess.py does):
   wall time and CPU (this process) per check, limited and unlimited calls alternating in
   blocks, median of the blocks;
2. through gunicorn (bench/check_load.py's configuration) at saturation with wrk: checks/s
   and CPU per check (gunicorn + every PostgreSQL backend) for the unlimited call, for the
   limited call with one budget (every request spends the same counter row: the hot
   counter), and for the limited call keyed by customer (`by: customer_id` over 1,000
   customers, the budgets spread).

Prints Markdown tables for docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/warden_limits_bench"
)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_inprocess import wsgi_environ
from check_load import DATABASE_URL, env, parse, phase_cpu, wrk
from servers import cpu_report, database_prepare, start_gunicorn, wait_ready

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PORT = int(os.environ.get("BENCH_PORT", "8766"))

LIMITED = '{"action": "stripe.refund", "arguments": {"amount": 42, "customer_id": "cus_1"}}'
UNLIMITED = '{"action": "stripe.charge", "arguments": {"amount": 42, "customer_id": "cus_1"}}'
KEYED = "stripe.payout"  # the same two limits, by customer_id

SEED = {
    "name": "limits-bot",
    "rules": [
        {
            "name": "daily refund sum",
            "action": "stripe.refund",
            "effect": "requires_approval",
            "limit": {"sum": "amount", "over": 10**12, "per": "1d"},
        },
        {
            "name": "daily refund count",
            "action": "stripe.refund",
            "effect": "requires_approval",
            "limit": {"count": 10**9, "per": "1d"},
        },
        {
            "name": "payout sum per customer",
            "action": KEYED,
            "effect": "requires_approval",
            "limit": {"sum": "amount", "over": 10**12, "per": "1d", "by": "customer_id"},
        },
        {
            "name": "payout count per customer",
            "action": KEYED,
            "effect": "requires_approval",
            "limit": {"count": 10**9, "per": "1d", "by": "customer_id"},
        },
        {
            "name": "charge cap",
            "action": "stripe.charge",
            "effect": "requires_approval",
            "max_amount": 100,
        },
    ]
    + [
        {
            "name": f"rule {i}",
            "action": f"tool{i}.*",
            "effect": "block",
            "when": [{"field": "customer.tier", "op": "ne", "value": "vip"}],
        }
        for i in range(16)
    ],
}


def setup() -> tuple[str, object]:
    """Django in this process on a fresh benchmark database; the agent's live key, agent."""
    os.environ.update(env())
    database_prepare(DATABASE_URL, fresh=True)
    import django

    django.setup()
    from django.core.management import call_command

    from accounts.models import Organization, Plan
    from agents import services

    call_command("migrate", verbosity=0)
    org = Organization.objects.create(name="Bench", plan=Plan.objects.get(slug="enterprise"))
    agent = services.agent_create(organization=org, actor=None, name=SEED["name"])
    for rule in SEED["rules"]:
        services.rule_create(organization=org, agent=agent, actor=None, data=rule)
    _, key = services.api_key_create(
        organization=org, kind="agent", agent=agent, environment="live", actor=None
    )
    return key, agent


def add_history(agent: object, rows: int) -> float:
    """``rows`` allowed stripe.refund checks spread over the last 23 hours (straight into
    the audit table), then the budgets rebuilt from them; seconds the rebuild took."""
    from django.db import connection

    from agents import services

    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO audit_auditentry (public_id, organization_id, kind, created_at,
                actor_label, agent_id, agent_public_id, action, action_id, arguments,
                environment, session_id, decision, status, rule_public_id, rule_name, reason,
                source, target_type, target_id, data, idempotency_key)
            SELECT 'act_hist' || g, %s, 'check', now() - (g %% 82800) * interval '1 second',
                'bench', %s, %s, 'stripe.refund', '',
                jsonb_build_object('amount', 1 + g %% 50, 'customer_id', 'cus_' || g %% 1000),
                'live', '', 'allow', 'allowed', '', 'daily refund sum', 'bench history',
                'native', '', '', '{}', ''
            FROM generate_series(1, %s) AS g
            """,
            [agent.organization_id, agent.pk, agent.public_id, rows],
        )
    started = time.perf_counter()
    services.limit_counters_rebuild(agent=agent)
    took = time.perf_counter() - started
    # Settle the table before measuring: autovacuum and the checkpoint after a million new
    # rows would otherwise run during the measurements.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE audit_auditentry")
        cursor.execute("CHECKPOINT")
    return took


def in_process(key: str, calls: int, blocks: int = 20) -> dict[str, tuple[float, float]]:
    """Median wall and CPU microseconds per check, limited vs unlimited, alternating in
    small blocks (the machine's speed drifts; medians of many short blocks resist it)."""
    from django.core.wsgi import get_wsgi_application

    application = get_wsgi_application()

    def run(body: str, count: int) -> tuple[float, float]:
        data = body.encode()
        statuses: list[str] = []

        def start_response(status, headers, exc_info=None):
            statuses.append(status)

        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(count):
            environ = wsgi_environ("POST", "/api/v1/check", data, key)
            for _chunk in application(environ, start_response):
                pass
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        bad = [s for s in statuses if not s.startswith("200")]
        if bad:
            raise SystemExit(f"{len(bad)} answers were not 200, e.g. {bad[0]}")
        return wall / count * 1e6, cpu / count * 1e6

    run(LIMITED, 100)
    run(UNLIMITED, 100)
    samples: dict[str, list[tuple[float, float]]] = {"limited": [], "unlimited": []}
    per_block = max(1, calls // blocks)
    for _ in range(blocks):
        samples["limited"].append(run(LIMITED, per_block))
        samples["unlimited"].append(run(UNLIMITED, per_block))
    return {
        name: (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
        for name, runs in samples.items()
    }


KEYED_LUA = """
math.randomseed(os.time())
request = function()
  local body = string.format(
    '{"action": "%s", "arguments": {"amount": 42, "customer_id": "cus_%d"}}',
    "KEYED", math.random(1, 1000))
  return wrk.format("POST", nil, nil, body)
end
"""


def through_gunicorn(key: str, seconds: int, connections: int) -> dict[str, tuple[float, str]]:
    tmp = Path(tempfile.mkdtemp(prefix="warden-limits-"))
    scripts = {}
    head = (
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["X-API-Key"] = "{key}"\n'
    )
    for name, body in (("unlimited", UNLIMITED), ("limited, one budget", LIMITED)):
        path = tmp / f"{name.split(',')[0]}.lua"
        path.write_text(head + f"wrk.body = '{body}'\n")
        scripts[name] = path
    keyed = tmp / "keyed.lua"
    keyed.write_text(head + KEYED_LUA.replace("KEYED", KEYED))
    scripts["limited, 1,000 budgets"] = keyed
    server = start_gunicorn(port=PORT, workers=4, threads=8, env=env())
    base = f"http://127.0.0.1:{PORT}"
    results = {}
    try:
        wait_ready(PORT)
        for script in scripts.values():
            wrk(f"{base}/api/v1/check", 2, 8, 2, str(script))  # warm every worker
        for name, script in scripts.items():
            before = phase_cpu(server)
            result = parse(wrk(f"{base}/api/v1/check", seconds, connections, 2, str(script)))
            cpu = cpu_report(before, phase_cpu(server), int(result["requests"]), "check")
            if result["errors"]:
                raise SystemExit(f"{name}: {result['errors']:.0f} non-2xx answers")
            results[name] = (result["rps"], cpu)
    finally:
        server.terminate()
        server.wait(timeout=10)
    return results


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--history", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=2000, help="in-process calls per kind")
    parser.add_argument("--seconds", type=int, default=10, help="wrk seconds per phase")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--skip-gunicorn", action="store_true")
    args = parser.parse_args()

    key, agent = setup()
    for rows in (0, args.history):
        rebuild = add_history(agent, rows) if rows else 0.0
        print(f"\n## {rows:,} rows of history" + (f" (rebuild: {rebuild:.1f} s)" if rows else ""))
        costs = in_process(key, args.calls)
        (lw, lc), (uw, uc) = costs["limited"], costs["unlimited"]
        print("| in process | wall µs / check | CPU µs / check |")
        print("|---|---|---|")
        print(f"| without limits | {uw:.0f} | {uc:.0f} |")
        print(f"| sum + count limits | {lw:.0f} | {lc:.0f} |")
        print(f"| ratio | {lw / uw:.2f} | {lc / uc:.2f} |")
        if not args.skip_gunicorn:
            print(f"\n| gunicorn, {args.connections} connections | checks/s | CPU per check |")
            print("|---|---|---|")
            for name, (rps, cpu) in through_gunicorn(key, args.seconds, args.connections).items():
                print(f"| {name} | {rps:.0f} | {cpu.removeprefix('CPU ms per check: ')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
