"""Decision-to-resume latency: wardenpy wait mode (long-poll + claim) against ardenpy 0.5.7's
wait mode (fixed polling, default poll_interval=2.0), on the same live server.

One gunicorn (gthread) on PostgreSQL + Redis, one agent whose ``stripe.refund`` rule requires
approval. Each run: the SDK calls the guarded function in a thread, the request shows up as
pending, the bench waits a random 0.3-2.3 s (a reviewer does not decide in lock-step with
anyone's poll timer), then decides it in this process through ``approval_decide`` (the
service every channel uses). Measured: from the commit of the decision (an on_commit hook
registered before the decision, so it fires before the wake-up publish) to the first line
of the guarded function. Runs alternate between the two SDKs.

Run by hand (PostgreSQL on 127.0.0.1:5432, Redis on 127.0.0.1:6379):

    .venv/bin/python bench/sdk_resume.py --runs 30
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import database_fresh_migrated, free_port, start_gunicorn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def seed() -> str:
    """An Enterprise org (no rate limit), a reviewer, an agent with an approval rule; its key."""
    from accounts.models import Membership, Organization, Plan, User
    from agents.services import agent_create, api_key_create, rule_create

    org = Organization.objects.create(
        name="Bench", plan=Plan.objects.get(slug="enterprise"), default_approval_timeout=3600
    )
    reviewer = User.objects.create_user("reviewer@bench.local", "bench-password")
    Membership.objects.create(user=reviewer, organization=org, role=Membership.Role.APPROVER)
    agent = agent_create(organization=org, actor=None, name="bench-bot")
    rule_create(
        organization=org,
        agent=agent,
        data={"name": "refunds", "action": "stripe.refund", "effect": "requires_approval"},
        actor=None,
    )
    _key, raw = api_key_create(
        organization=org, kind="agent", agent=agent, environment="test", actor=None
    )
    return raw


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def pending_action_id(seen: set[str]) -> str:
    from approvals.models import ApprovalRequest

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for action_id in ApprovalRequest.objects.filter(status="pending").values_list(
            "action_id", flat=True
        ):
            if action_id not in seen:
                return action_id
        time.sleep(0.01)
    raise RuntimeError("no pending request appeared")


def one_run(call: Callable[[Callable[[], None]], Any], reviewer: Any, seen: set[str]) -> float:
    """Start a guarded call, decide it, return commit -> function start in milliseconds."""
    from django.db import transaction

    from approvals.services import approval_decide

    started: list[float] = []
    committed: list[float] = []
    errors: list[BaseException] = []

    def agent() -> None:
        try:
            call(lambda: started.append(time.perf_counter()))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=agent, daemon=True)
    thread.start()
    action_id = pending_action_id(seen)
    seen.add(action_id)
    time.sleep(random.uniform(0.3, 2.3))
    with transaction.atomic():
        transaction.on_commit(lambda: committed.append(time.perf_counter()))
        approval_decide(request_or_action_id=action_id, actor_user=reviewer, approve=True)
    thread.join(60)
    if errors or not started:
        raise RuntimeError(f"the guarded call did not run: {errors}")
    return (started[0] - committed[0]) * 1000


def summary(values: list[float]) -> str:
    ordered = sorted(values)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    return (
        f"p50={pct(50):.0f} ms  p90={pct(90):.0f} ms  max={ordered[-1]:.0f} ms  (n={len(ordered)})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/warden_sdk_bench"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/6")
    args = parser.parse_args()

    env = {
        **os.environ,
        "DEBUG": "true",
        "DJANGO_SETTINGS_MODULE": "wardenproject.settings.base",
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    load_before = os.getloadavg()
    database_fresh_migrated(args.database_url)
    import django

    django.setup()
    from django.db import connection

    from accounts.models import User

    agent_key = seed()
    reviewer = User.objects.get(email="reviewer@bench.local")
    connection.close()

    port = free_port()
    server = start_gunicorn(port=port, workers=args.workers, threads=args.threads, env=env)
    base = f"http://127.0.0.1:{port}"
    results: dict[str, list[float]] = {"wardenpy": [], "ardenpy": []}
    try:
        for _ in range(100):
            try:
                requests.get(f"{base}/healthz", timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.2)

        import ardenpy

        import wardenpy

        wardenpy.configure(api_key=agent_key, api_url=base, max_poll_time=60)
        ardenpy.configure(api_key=agent_key, api_url=base, max_poll_time=60)  # poll_interval 2.0

        def refund(mark: Callable[[], None], amount: float) -> None:
            mark()

        warden_refund = wardenpy.guard_tool("stripe.refund", refund)
        arden_refund = ardenpy.guard_tool("stripe.refund", refund)
        callers = {
            "wardenpy": lambda mark: warden_refund(mark, 150.0),
            "ardenpy": lambda mark: arden_refund(mark, 150.0),
        }
        seen: set[str] = set()
        for call in callers.values():  # warm-up: connections, caches, listener thread
            one_run(call, reviewer, seen)
        for n in range(args.runs):
            for name, call in callers.items():
                results[name].append(one_run(call, reviewer, seen))
            print(f"run {n + 1}/{args.runs}", end="\r", file=sys.stderr, flush=True)
        wardenpy.flush(5)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(20)

    print(f"gunicorn gthread {args.workers}x{args.threads}, PostgreSQL + Redis")
    print(
        f"machine: {platform.platform()}, nproc={os.cpu_count()}, CPU: {cpu_model()}, "
        f"Python {platform.python_version()}"
    )
    print(f"load average before/after: {load_before} / {os.getloadavg()}")
    print("decision commit -> guarded function starts:")
    for name, values in results.items():
        print(f"  {name:9s} {summary(values)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
