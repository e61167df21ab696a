"""Decision-to-wake latency of the approval long-poll, with many agents waiting.

Starts gunicorn (gthread) on PostgreSQL (+ Redis unless --no-redis), creates N pending
approval requests, opens N long-poll clients (`GET /api/v1/actions/{id}?wait=60`, one
thread each), then decides the requests one by one in this process (approval_decide, the
same service every channel uses) and measures, per request, the time from the start of the
decision to the moment its waiting client has the answer. Target: p99 < 250 ms, 100 clients.

Run by hand (PostgreSQL on 127.0.0.1:5432, Redis on 127.0.0.1:6379):

    .venv/bin/python bench/approval_wake.py --clients 100
    .venv/bin/python bench/approval_wake.py --clients 30 --no-redis   # DB-polling fallback
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import sys
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import database_fresh_migrated, free_port, start_gunicorn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def seed(clients: int) -> tuple[list[str], str]:
    """An Enterprise org (no rate limit), an agent, its key, ``clients`` pending requests."""
    from accounts.models import Membership, Organization, Plan, User
    from agents.services import agent_create, api_key_create
    from approvals.services import approval_request_create
    from audit.models import AuditEntry
    from audit.services import audit_record
    from wardenproject.ids import public_id

    org = Organization.objects.create(
        name="Bench", plan=Plan.objects.get(slug="enterprise"), default_approval_timeout=3600
    )
    reviewer = User.objects.create_user("reviewer@bench.local", "bench-password")
    Membership.objects.create(user=reviewer, organization=org, role=Membership.Role.APPROVER)
    agent = agent_create(organization=org, actor=None, name="bench-bot")
    _key, raw = api_key_create(
        organization=org, kind="agent", agent=agent, environment="test", actor=None
    )
    action_ids = []
    for n in range(clients):
        entry = audit_record(
            organization=org,
            kind=AuditEntry.Kind.CHECK,
            public_id=public_id("act"),
            agent=agent,
            agent_public_id=agent.public_id,
            action="stripe.refund",
            arguments={"amount": 500 + n},
            environment="test",
            decision="requires_approval",
            status="pending",
            rule_name="bench",
            reason="bench",
        )
        approval_request_create(entry=entry, api_key=None, rule=None, timeout_seconds=3600)
        action_ids.append(entry.public_id)
    return action_ids, raw


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--gap-ms", type=float, default=20.0, help="pause between decisions")
    parser.add_argument("--no-redis", action="store_true")
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/warden_appr_bench"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/5")
    args = parser.parse_args()
    if args.clients > args.workers * args.threads:
        parser.error("more clients than gunicorn threads: raise --workers or --threads")

    env = {
        **os.environ,
        "DEBUG": "true",
        "DJANGO_SETTINGS_MODULE": "wardenproject.settings.base",
        "DATABASE_URL": args.database_url,
        "LOG_LEVEL": "WARNING",
    }
    env.pop("REDIS_URL", None)
    if not args.no_redis:
        env["REDIS_URL"] = args.redis_url
    os.environ.update(env)
    if args.no_redis:
        os.environ.pop("REDIS_URL", None)

    load_before = os.getloadavg()
    database_fresh_migrated(args.database_url)
    import django

    django.setup()
    from django.db import connection

    from approvals.services import approval_decide

    action_ids, agent_key = seed(args.clients)
    connection.close()

    port = free_port()
    server = start_gunicorn(port=port, workers=args.workers, threads=args.threads, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                requests.get(f"{base}/healthz", timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.2)
        woke: dict[str, float] = {}
        statuses: dict[str, str] = {}

        def wait(action_id: str) -> None:
            response = requests.get(
                f"{base}/api/v1/actions/{action_id}",
                params={"wait": 60},
                headers={"X-API-Key": agent_key},
                timeout=90,
            )
            woke[action_id] = time.perf_counter()
            statuses[action_id] = response.json().get("status", f"http {response.status_code}")

        waiters = [threading.Thread(target=wait, args=(a,), daemon=True) for a in action_ids]
        for thread in waiters:  # agents arrive over ~2 s, as they would
            thread.start()
            time.sleep(2.0 / len(waiters))
        time.sleep(2.0)  # every client is parked in its long-poll
        early = len(woke)

        from accounts.models import User

        reviewer = User.objects.get(email="reviewer@bench.local")
        decided_at: dict[str, float] = {}  # when the decision committed
        decide_ms: list[float] = []
        for action_id in action_ids:
            started = time.perf_counter()
            approval_decide(request_or_action_id=action_id, actor_user=reviewer, approve=True)
            decided_at[action_id] = time.perf_counter()
            decide_ms.append((decided_at[action_id] - started) * 1000)
            time.sleep(args.gap_ms / 1000)
        for thread in waiters:
            thread.join(70)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(20)

    latencies = sorted(
        (woke[a] - decided_at[a]) * 1000 for a in action_ids if statuses.get(a) == "approved"
    )
    wrong = [a for a in action_ids if statuses.get(a) != "approved"]

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, round(p / 100 * (len(latencies) - 1)))]

    print(
        f"clients={args.clients} redis={'no' if args.no_redis else 'yes'} "
        f"gunicorn gthread {args.workers}x{args.threads}"
    )
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(f"answered before any decision (should be 0): {early}; not approved: {len(wrong)}")
    print(
        f"decision-to-wake ms: p50={pct(50):.1f} p90={pct(90):.1f} p99={pct(99):.1f} "
        f"max={latencies[-1]:.1f} mean={statistics.mean(latencies):.1f} (n={len(latencies)})"
    )
    print(
        f"the decision itself (approval_decide, commit): p50={statistics.median(decide_ms):.1f} ms"
    )
    print(f"load average before/after: {load_before} / {os.getloadavg()}")
    return 0 if not wrong and early == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
