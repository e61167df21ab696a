"""Webhook delivery benchmark: commit-to-first-attempt latency and burst drain.

Needs PostgreSQL and Redis; starts a real Celery worker (threads pool, embedded beat) and a
local receiver on 127.0.0.1. Run by hand:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/warden_wh \\
    REDIS_URL=redis://127.0.0.1:6379/5 .venv/bin/python bench/webhook_delivery.py

Phase 1 emits events at a steady rate (default 200/s for 10 s), each in its own transaction,
and measures commit -> first request at the receiver. Phase 2 commits a burst (default
10,000 events, 100 per transaction) and measures the time until every event has reached the
receiver, checking that none is lost.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wardenproject.settings.base")
os.environ.setdefault("DEBUG", "true")
os.environ["WARDEN_WEBHOOKS_ALLOW_PRIVATE"] = "true"
os.environ["WARDEN_WEBHOOKS_ALLOW_HTTP"] = "true"

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from accounts.models import Organization, Plan  # noqa: E402
from tests.live import WebhookReceiver  # noqa: E402
from webhooks import services  # noqa: E402
from webhooks.models import Delivery, Endpoint, Event  # noqa: E402

DATA = {
    "action_id": "act_bench",
    "agent_id": "agt_bench",
    "agent_name": "bench",
    "action": "stripe.refund",
    "arguments": {"amount": 120},
    "status": "approved",
    "environment": "live",
    "session_id": None,
    "rule": None,
    "reason": "bench",
    "requested_at": None,
    "expires_at": None,
    "decided_at": None,
    "decided_by": "bench@example.com",
    "notes": None,
}


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def first_arrivals(receiver: WebhookReceiver) -> dict[str, float]:
    seen: dict[str, float] = {}
    for request in receiver.received():
        seen.setdefault(request.headers.get("webhook-id", ""), request.at)
    return seen


def wait_for(receiver: WebhookReceiver, ids: set[str], timeout: float) -> float:
    start = time.time()
    while time.time() - start < timeout:
        if ids <= set(first_arrivals(receiver)):
            return time.time()
        time.sleep(0.05)
    missing = len(ids - set(first_arrivals(receiver)))
    raise SystemExit(f"{missing} event(s) not delivered within {timeout}s")


def start_worker(concurrency: int, log: Path, beat: bool = True) -> subprocess.Popen:
    beat_args = ["-B", "-s", str(log.with_suffix(".beat"))] if beat else []
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "wardenproject", "worker",
            "--pool", "threads", "--concurrency", str(concurrency), "--loglevel", "WARNING",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-n", f"bench-{os.getpid()}-{log.stem}@%h", *beat_args,
        ],
        cwd=ROOT,
        env=os.environ.copy(),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    time.sleep(6)
    if proc.poll() is not None:
        raise SystemExit(f"worker died: {log.read_text()[-2000:]}")
    return proc


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--burst", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--emitters", type=int, default=8, help="emitting threads")
    args = parser.parse_args()
    if not (settings.DATABASES["default"]["ENGINE"].endswith("postgresql") and settings.REDIS_URL):
        raise SystemExit("set DATABASE_URL=postgres://... and REDIS_URL=redis://...")

    call_command("migrate", verbosity=0)
    Delivery.objects.all().delete()
    Event.objects.filter(organization__name="webhook-bench").delete()
    org, _ = Organization.objects.get_or_create(
        name="webhook-bench", defaults={"plan": Plan.objects.get(slug="pro")}
    )
    Endpoint.objects.filter(organization=org).delete()
    receiver = WebhookReceiver()
    receiver.start()
    services.endpoint_create(organization=org, url=receiver.url(), events=["approval.approved"])
    log = Path("/tmp") / f"webhook-bench-worker-{os.getpid()}.log"
    workers = [
        start_worker(args.concurrency, log.with_name(f"{log.stem}-{n}.log"), beat=n == 0)
        for n in range(args.workers)
    ]
    try:
        # Phase 1: steady rate
        # Events come from many web threads at once in production: emit from several
        # threads, each on its own schedule, so the emitter is not the bottleneck.
        commits: dict[str, float] = {}
        emitters = args.emitters
        interval = emitters / args.rate
        start = time.time() + 0.2

        def emit_share(offset: int) -> None:
            for n in range(args.rate * args.seconds // emitters):
                target = start + (n + offset / emitters) * interval
                if (delay := target - time.time()) > 0:
                    time.sleep(delay)
                with transaction.atomic():
                    event = services.event_emit(
                        organization=org, event_type="approval.approved", data=DATA
                    )
                commits[event.public_id] = time.time()
            connection.close()

        threads = [threading.Thread(target=emit_share, args=(i,)) for i in range(emitters)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        achieved = len(commits) / (time.time() - start)
        wait_for(receiver, set(commits), 120)
        arrivals = first_arrivals(receiver)
        latencies = [(arrivals[i] - t) * 1000 for i, t in commits.items()]
        print(
            f"steady: {len(commits)} events at {achieved:.0f}/s; commit->first attempt "
            f"p50 {statistics.median(latencies):.1f} ms, p99 {percentile(latencies, 99):.1f} ms, "
            f"max {max(latencies):.1f} ms"
        )

        # Phase 2: burst
        receiver.requests.clear()
        burst_ids: set[str] = set()
        start = time.time()
        for _ in range(args.burst // 100):
            with transaction.atomic():
                for _ in range(100):
                    event = services.event_emit(
                        organization=org, event_type="approval.approved", data=DATA
                    )
                    burst_ids.add(event.public_id)
        committed = time.time()
        done = wait_for(receiver, burst_ids, 900)
        received = len(receiver.received())
        succeeded = Delivery.objects.filter(
            event__public_id__in=burst_ids, status=Delivery.Status.SUCCEEDED
        ).count()
        print(
            f"burst: {len(burst_ids)} events committed in {committed - start:.1f} s, all "
            f"delivered {done - start:.1f} s after the first commit "
            f"({len(burst_ids) / (done - start):.0f}/s); {received} requests, "
            f"{received - len(burst_ids)} duplicates, {succeeded} deliveries succeeded, "
            f"lost {len(burst_ids - set(first_arrivals(receiver)))}"
        )
        print(
            f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}, {args.workers} worker processes --pool threads "
            f"--concurrency {args.concurrency}, {args.emitters} emitting threads, max in "
            f"flight per endpoint "
            f"{getattr(settings, 'WARDEN_WEBHOOKS_MAX_IN_FLIGHT', 4)}"
        )
    finally:
        for worker in workers:
            os.killpg(worker.pid, 15)
        for worker in workers:
            worker.wait(20)
        receiver.stop()


if __name__ == "__main__":
    main()
