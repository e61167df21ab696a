"""How fast the overview renders with 10 million audit rows in the organisation (target:
under 300 ms).

    .venv/bin/python bench/overview_bench.py [--rows 10000000] [--requests 30]

Needs PostgreSQL on 127.0.0.1. Uses its own database (BENCH_OVERVIEW_DATABASE_URL, default
warden_overview_bench, dropped and created afresh). Seeds one organisation with 8 agents and
``--rows`` check entries over the last 30 days (SQL ``INSERT ... SELECT generate_series``,
1,000,000 per statement; agent, action, environment and decision drawn at random: 85 %
allowed, 10 % blocked, 5 % held; 20 actions; 80 % live), one
approval request per 100 checks (decided after 5 s to 30 min, by 4 reviewers; 40 pending),
and ``--usage-rows`` token usage rows (default one per 50 checks; 4 models, one without a
price; sessions of ``--calls-per-session`` consecutive calls, each of one agent and
environment). Then runs the roll-up (``audit.insights.rollup.overview_rollup``) until it has
caught up, adds 3,000 newer checks and 1,000 newer usage rows above its watermarks (the tail
the pages read themselves), and requests the dashboard (which renders the overview), the
live panel and the token usage page (``--paths`` chooses) through Django's test client:
``--requests`` timed requests per period after 3 warm-up ones, p50 / p95 / max.

The token usage page with many sessions (what docs/PERFORMANCE.md reports):

    BENCH_OVERVIEW_DATABASE_URL=postgres://postgres@127.0.0.1:5432/warden_tokens_bench \
    .venv/bin/python bench/overview_bench.py --rows 100000 --usage-rows 2000000 \
        --paths /insights/tokens/
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import cpu_seconds, database_prepare

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATABASE_URL = os.environ.get(
    "BENCH_OVERVIEW_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/warden_overview_bench"
)
CHUNK = 1_000_000

# Each check's agent, action, environment and decision drawn at random (independently), so
# the roll-up holds every combination (8 x 20 x 2 x 3 per hour), as a busy organisation's does.
CHECKS_SQL = """
INSERT INTO audit_auditentry (
    public_id, organization_id, kind, created_at, actor_label, agent_id, agent_public_id,
    action, action_id, environment, session_id, decision, status, rule_public_id, rule_name,
    reason, latency_us, source, target_type, target_id, data, idempotency_key
)
SELECT
    'act_b' || g, %(org)s, 'check',
    %(start)s::timestamptz + (g::bigint * %(step)s::bigint) * interval '1 microsecond',
    'key wk_live_ab… (bench)', (%(agents)s::bigint[])[1 + floor(r1 * 8)::int], 'agt_bench',
    'tool.action_' || floor(r2 * 20)::int, '',
    CASE WHEN r3 < 0.2 THEN 'test' ELSE 'live' END, 'bench',
    CASE WHEN r4 < 0.05 THEN 'requires_approval' WHEN r4 < 0.15 THEN 'block'
         ELSE 'allow' END,
    '', '', '', '', 850, 'native', '', '', '{}'::jsonb, ''
FROM (
    SELECT g, random() AS r1, random() AS r2, random() AS r3, random() AS r4
    FROM generate_series(%(first)s, %(last)s) AS g
) AS s
"""

APPROVALS_SQL = """
INSERT INTO approvals_approvalrequest (
    action_id, organization_id, agent_id, action, arguments, arguments_hash, environment,
    session_id, rule_name, reason, source, status, approvals_required, requested_at,
    expires_at, decided_at, decided_by_label, notes, approvers, escalate_to, escalations,
    notice, redact
)
SELECT
    'act_h' || g, %(org)s, (%(agents)s::bigint[])[1 + g %% 8], 'tool.action_' || (g %% 20),
    '{"amount": 420}'::jsonb, repeat('0', 64), CASE WHEN g %% 5 = 0 THEN 'test' ELSE 'live' END,
    '', 'large refunds', 'bench', 'native',
    CASE WHEN g %% 7 = 0 THEN 'denied' ELSE 'approved' END, 1,
    %(start)s::timestamptz + (g::bigint * %(step)s::bigint) * interval '1 microsecond',
    %(start)s::timestamptz + (g::bigint * %(step)s::bigint) * interval '1 microsecond'
        + interval '1 hour',
    %(start)s::timestamptz + (g::bigint * %(step)s::bigint) * interval '1 microsecond'
        + ((5 + (g * 37) %% 1800) * interval '1 second'),
    'reviewer' || (g %% 4) || '@example.com', '', '[]'::jsonb, '[]'::jsonb, 0, '', '[]'::jsonb
FROM generate_series(1, %(count)s) AS g
"""

# Calls of one session follow each other (``per_session`` of them), with one agent and
# environment per session; the model changes call by call, the tokens and the cost vary.
USAGE_SQL = """
INSERT INTO agents_tokenusage (
    public_id, organization_id, agent_id, model, prompt_tokens, completion_tokens,
    total_tokens, cost_usd, session_id, environment, created_at
)
SELECT
    'usg_b' || g, %(org)s, (%(agents)s::bigint[])[1 + (g / %(per_session)s) %% 8],
    (ARRAY['gpt-4o', 'gpt-4o-mini', 'claude-sonnet-4', 'bench-unpriced'])[1 + g %% 4],
    500 + (g * 37) %% 1000, 200, 700 + (g * 37) %% 1000,
    CASE WHEN g %% 4 = 3 THEN 0 ELSE ((500 + (g * 37) %% 1000) * 2 + 200 * 8) / 1e6 END,
    'session-' || (g / %(per_session)s),
    CASE WHEN (g / %(per_session)s) %% 5 = 0 THEN 'test' ELSE 'live' END,
    %(start)s::timestamptz + (g::bigint * %(step)s::bigint) * interval '1 microsecond'
FROM generate_series(%(first)s, %(last)s) AS g
"""


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument(
        "--usage-rows", type=int, default=None, help="token usage rows (default: --rows / 50)"
    )
    parser.add_argument("--calls-per-session", type=int, default=20)
    parser.add_argument(
        "--paths",
        default="/,/insights/overview/panel/,/insights/tokens/",
        help="comma-separated pages to time",
    )
    parser.add_argument(
        "--measure-only",
        action="store_true",
        help="measure again against the database a previous run left (within 25 minutes of "
        "it, while its tail is younger than the overview's 30-minute bound)",
    )
    args = parser.parse_args()

    os.environ.update(
        {
            "DATABASE_URL": DATABASE_URL,
            "DJANGO_SETTINGS_MODULE": "wardenproject.settings.base",
            "DEBUG": "false",
            "SECRET_KEY": "bench-only-secret-key-not-for-production",
            "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
            "ALLOWED_HOSTS": "testserver,localhost",
            "SESSION_COOKIE_SECURE": "false",
            # One PostgreSQL backend for the whole run, so its CPU per request can be read.
            "DATABASE_CONN_MAX_AGE": "3600",
        }
    )
    if not args.measure_only:
        database_prepare(DATABASE_URL, fresh=True)
    import django

    django.setup()
    from django.test import Client

    if args.measure_only:
        from accounts.models import User

        user = User.objects.get(email="bench@example.com")
    else:
        user = seed_and_roll_up(args)
    client = Client()
    client.force_login(user)
    from django.db import connection

    print(
        f"| request | p50 | p95 | max | CPU per request: web / PostgreSQL | "
        f"({args.requests} requests after 3 warm-up) |"
    )
    print("|---|---|---|---|---|---|")
    for path in args.paths.split(","):
        for period in ("24h", "7d", "30d"):
            url = f"{path}?period={period}"
            for _ in range(3):
                assert client.get(url).status_code == 200, url
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                backend = cursor.fetchone()[0]
            times = []
            web_cpu, db_cpu = time.process_time(), cpu_seconds(backend)
            for _ in range(args.requests):
                t0 = time.perf_counter()
                response = client.get(url)
                times.append((time.perf_counter() - t0) * 1000)
                assert response.status_code == 200, url
            web_cpu = (time.process_time() - web_cpu) * 1000 / args.requests
            db_cpu = (cpu_seconds(backend) - db_cpu) * 1000 / args.requests
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                assert cursor.fetchone()[0] == backend, "the connection was replaced"
            print(
                f"| `{url}` | {statistics.median(times):.0f} ms | "
                f"{percentile(times, 0.95):.0f} ms | {max(times):.0f} ms | "
                f"{web_cpu:.0f} / {db_cpu:.0f} ms | |",
                flush=True,
            )
    html = client.get("/insights/tokens/?period=30d").content.decode()
    assert "no price for model bench-unpriced" in html, "the unpriced model is flagged"
    with open("/proc/loadavg") as load:
        print(f"load average at the end: {load.read().split()[:3]}")


def seed_and_roll_up(args: argparse.Namespace) -> Any:
    """Seed the database (see the module's docstring), roll it up, add the tail; the user."""
    from datetime import timedelta

    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    from accounts.models import Membership, Organization, Plan, User
    from agents.models import Agent, ModelPrice
    from audit.insights.models import RollupMark
    from audit.insights.rollup import overview_rollup

    plan = Plan.objects.get(slug="enterprise")
    org = Organization.objects.create(name="Bench", plan=plan)
    user = User.objects.create_user(email="bench@example.com", password="bench-password-1")
    Membership.objects.create(user=user, organization=org, role=Membership.Role.OWNER)
    user.current_organization = org
    user.save(update_fields=["current_organization"])
    agents = [Agent.objects.create(organization=org, name=f"agent-{n}") for n in range(8)]
    agent_ids = [a.pk for a in agents]
    for model in ("gpt-4o", "gpt-4o-mini", "claude-sonnet-4"):
        ModelPrice.objects.get_or_create(
            model=model,
            defaults={"prompt_usd_per_million": 2, "completion_usd_per_million": 8},
        )

    now = timezone.now()
    start = now - timedelta(days=30)
    span_us = int((now - timedelta(minutes=10) - start).total_seconds() * 1e6)
    step = span_us // args.rows
    seed_started = time.perf_counter()
    with connection.cursor() as cursor:
        for first in range(1, args.rows + 1, CHUNK):
            last = min(args.rows, first + CHUNK - 1)
            t0 = time.perf_counter()
            cursor.execute(
                CHECKS_SQL,
                {
                    "org": org.pk,
                    "agents": agent_ids,
                    "start": start,
                    "step": step,
                    "first": first,
                    "last": last,
                },
            )
            print(
                f"  checks {last:,} / {args.rows:,} ({time.perf_counter() - t0:.0f} s)", flush=True
            )
        approvals = args.rows // 100
        cursor.execute(
            APPROVALS_SQL,
            {
                "org": org.pk,
                "agents": agent_ids,
                "start": start,
                "count": approvals,
                "step": span_us // approvals,
            },
        )
        cursor.execute(
            "UPDATE approvals_approvalrequest SET status = 'pending', decided_at = NULL,"
            " decided_by_label = '', requested_at = %s, expires_at = %s"
            " WHERE id IN (SELECT id FROM approvals_approvalrequest ORDER BY id DESC LIMIT 40)",
            [now - timedelta(minutes=25), now + timedelta(hours=1)],
        )
        usages = args.usage_rows if args.usage_rows is not None else args.rows // 50
        for first in range(1, usages + 1, CHUNK):
            last = min(usages, first + CHUNK - 1)
            cursor.execute(
                USAGE_SQL,
                {
                    "org": org.pk,
                    "agents": agent_ids,
                    "start": start,
                    "step": span_us // usages,
                    "per_session": args.calls_per_session,
                    "first": first,
                    "last": last,
                },
            )
        cursor.execute("ANALYZE")
    seeded = time.perf_counter() - seed_started
    print(
        f"seeded {args.rows:,} checks, {approvals:,} approval requests, {usages:,} token "
        f"usage rows in {seeded:.0f} s"
    )

    rollup_started = time.perf_counter()
    read = 0
    while True:
        count = overview_rollup(now=now)
        read += count
        if count == 0 and RollupMark.objects.get().caught_up_to is not None:
            break
    took = time.perf_counter() - rollup_started
    print(f"roll-up: {read:,} rows in {took:.0f} s ({read / took:,.0f} rows/s)")
    with connection.cursor() as cursor:  # as autovacuum would have by now
        cursor.execute("ANALYZE")

    with connection.cursor() as cursor:  # the tail: newer than the roll-up's last run
        cursor.execute(
            CHECKS_SQL,
            {
                "org": org.pk,
                "agents": agent_ids,
                "start": now - timedelta(seconds=90),
                "step": 20_000,
                "first": args.rows + 1,
                "last": args.rows + 3000,
            },
        )
        cursor.execute(
            USAGE_SQL,
            {
                "org": org.pk,
                "agents": agent_ids,
                "start": now - timedelta(seconds=50),
                "step": 40_000,
                "per_session": args.calls_per_session,
                "first": usages + 1,
                "last": usages + 1000,
            },
        )
        cursor.execute("ANALYZE audit_auditentry")
        cursor.execute("ANALYZE agents_tokenusage")
    return user


if __name__ == "__main__":
    main()
