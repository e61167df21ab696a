"""Webhook delivery benchmark: commit-to-first-attempt latency and burst drain.

Needs PostgreSQL and Redis; starts real Celery workers (threads pool, one with the embedded
beat), a receiver on 127.0.0.1 in a process of its own, and emitting processes (as web
processes would emit). Run by hand:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/warden_wh \\
    REDIS_URL=redis://127.0.0.1:6379/5 .venv/bin/python bench/webhook_delivery.py

Phase 1 emits events at a steady rate (default 200/s for 10 s) from ``--emitters`` processes
(4 threads each), each event in its own transaction, and measures commit -> first request at
the receiver (both clocks are this host's ``time.time()``). Phase 2 commits a burst (default
10,000 events, 100 per transaction) and measures the time until every event has reached the
receiver, checking that none is lost.
"""

from __future__ import annotations

import argparse
import multiprocessing
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
# Production settings: DEBUG would log every query in the workers.
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-not-for-production")
os.environ.setdefault("EMAIL_BACKEND", "django.core.mail.backends.locmem.EmailBackend")
os.environ["WARDEN_WEBHOOKS_ALLOW_PRIVATE"] = "true"
os.environ["WARDEN_WEBHOOKS_ALLOW_HTTP"] = "true"

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from servers import cpu_by_role, cpu_report, database_prepare  # noqa: E402

from accounts.models import Organization, Plan  # noqa: E402
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


RECEIVER = r"""
import sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
out = open(sys.argv[1], "a", buffering=1)
lock = threading.Lock()
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        at = time.time()
        with lock:
            out.write(f"{self.headers.get('webhook-id', '')} {at}\n")
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
    def log_message(self, *args):
        pass
server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
"""


class Receiver:
    """An HTTP receiver in its own process; it appends "event-id arrival-time" per request."""

    def __init__(self, log: Path) -> None:
        self.log = log
        log.write_text("")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", RECEIVER, str(log)], stdout=subprocess.PIPE, text=True
        )
        self.port = int(self.proc.stdout.readline())

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def arrivals(self) -> list[tuple[str, float]]:
        rows = []
        for line in self.log.read_text().splitlines():
            event_id, _, at = line.partition(" ")
            if at:
                rows.append((event_id, float(at)))
        return rows

    def first_arrivals(self) -> dict[str, float]:
        seen: dict[str, float] = {}
        for event_id, at in self.arrivals():
            seen.setdefault(event_id, at)
        return seen

    def clear(self) -> None:
        self.log.write_text("")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def wait_for(receiver: Receiver, ids: set[str], timeout: float) -> float:
    start = time.time()
    while time.time() - start < timeout:
        if ids <= set(receiver.first_arrivals()):
            return time.time()
        time.sleep(0.05)
    missing = len(ids - set(receiver.first_arrivals()))
    raise SystemExit(f"{missing} event(s) not delivered within {timeout}s")


def emit_process(
    org_pk: int,
    start: float,
    rate: int,
    seconds: int,
    share: int,
    shares: int,
    results: multiprocessing.Queue,
) -> None:
    """One emitting process: 4 threads, each event in its own transaction, on a fixed plan."""
    connection.close()  # the parent's connection must not be shared across fork
    org = Organization.objects.get(pk=org_pk)
    threads_per_process = 4
    lanes = shares * threads_per_process
    interval = lanes / rate
    commits: dict[str, float] = {}

    def lane(offset: int) -> None:
        for n in range(rate * seconds // lanes):
            target = start + (n + offset / lanes) * interval
            if (delay := target - time.time()) > 0:
                time.sleep(delay)
            with transaction.atomic():
                event = services.event_emit(
                    organization=org, event_type="approval.approved", data=DATA
                )
            commits[event.public_id] = time.time()
        connection.close()

    threads = [
        threading.Thread(target=lane, args=(share * threads_per_process + i,))
        for i in range(threads_per_process)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put((commits, time.process_time()))


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
    parser.add_argument("--warmup", type=int, default=2, help="seconds emitted, not measured")
    parser.add_argument("--burst", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--emitters", type=int, default=1, help="emitting processes")
    args = parser.parse_args()
    if not (settings.DATABASES["default"]["ENGINE"].endswith("postgresql") and settings.REDIS_URL):
        raise SystemExit("set DATABASE_URL=postgres://... and REDIS_URL=redis://...")

    database_prepare(os.environ["DATABASE_URL"], fresh=False)
    call_command("migrate", verbosity=0)
    Delivery.objects.all().delete()
    Event.objects.filter(organization__name="webhook-bench").delete()
    org, _ = Organization.objects.get_or_create(
        name="webhook-bench", defaults={"plan": Plan.objects.get(slug="pro")}
    )
    Endpoint.objects.filter(organization=org).delete()
    receiver = Receiver(Path("/tmp") / f"webhook-bench-arrivals-{os.getpid()}.log")
    services.endpoint_create(
        actor=None, organization=org, url=receiver.url(), events=["approval.approved"]
    )
    log = Path("/tmp") / f"webhook-bench-worker-{os.getpid()}.log"
    workers = [
        start_worker(args.concurrency, log.with_name(f"{log.stem}-{n}.log"), beat=n == 0)
        for n in range(args.workers)
    ]
    try:
        # Phase 1: steady rate, emitted from processes of their own as web processes would.
        connection.close()
        cpu_before = cpu_by_role(
            {"workers": {w.pid for w in workers}, "receiver": {receiver.proc.pid}}
        )
        results: multiprocessing.Queue = multiprocessing.get_context("fork").Queue()
        start = time.time() + 0.5
        emitters = [
            multiprocessing.get_context("fork").Process(
                target=emit_process,
                args=(
                    org.pk,
                    start,
                    args.rate,
                    args.warmup + args.seconds,
                    n,
                    args.emitters,
                    results,
                ),
            )
            for n in range(args.emitters)
        ]
        for proc in emitters:
            proc.start()
        commits: dict[str, float] = {}
        emitter_cpu = 0.0
        for _ in emitters:
            emitted, cpu = results.get(timeout=args.warmup + args.seconds + 120)
            commits.update(emitted)
            emitter_cpu += cpu
        for proc in emitters:
            proc.join()
        wait_for(receiver, set(commits), 120)
        time.sleep(1)  # let the drainers' last records commit before reading CPU
        cpu_after = cpu_by_role(
            {"workers": {w.pid for w in workers}, "receiver": {receiver.proc.pid}}
        )
        arrivals = receiver.first_arrivals()
        emitted_all = len(commits)
        # The first --warmup seconds (connections opening, caches filling) are not measured.
        start += args.warmup
        commits = {i: t for i, t in commits.items() if t >= start}
        achieved = len(commits) / (max(commits.values()) - start)
        latencies = [(arrivals[i] - t) * 1000 for i, t in commits.items()]
        if os.environ.get("BENCH_TIMELINE"):  # p50 / max latency per second of the run
            for second in range(args.seconds + 1):
                window = [(arrivals[i] - t) * 1000 for i, t in commits.items()
                          if second <= t - start < second + 1]  # fmt: skip
                if window:
                    print(
                        f"  t={second:>3}s n={len(window):>4} p50 "
                        f"{statistics.median(window):7.1f} max {max(window):7.1f} ms"
                    )
        print(
            f"steady: {len(commits)} events at {achieved:.0f}/s; commit->first attempt "
            f"p50 {statistics.median(latencies):.1f} ms, p90 {percentile(latencies, 90):.1f} ms, "
            f"p99 {percentile(latencies, 99):.1f} ms, max {max(latencies):.1f} ms; "
            f"{len(receiver.arrivals()) - emitted_all} duplicates"
        )
        print(
            cpu_report(cpu_before, cpu_after, emitted_all, "event")
            + f", emitters {emitter_cpu / emitted_all * 1000:.2f}"
        )

        # Phase 2: burst
        receiver.clear()
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
        received = len(receiver.arrivals())
        succeeded = Delivery.objects.filter(
            event__public_id__in=burst_ids, status=Delivery.Status.SUCCEEDED
        ).count()
        print(
            f"burst: {len(burst_ids)} events committed in {committed - start:.1f} s, all "
            f"delivered {done - start:.1f} s after the first commit "
            f"({len(burst_ids) / (done - start):.0f}/s); {received} requests, "
            f"{received - len(burst_ids)} duplicates, {succeeded} deliveries succeeded, "
            f"lost {len(burst_ids - set(receiver.first_arrivals()))}"
        )
        print(
            f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}, {args.workers} worker processes --pool threads "
            f"--concurrency {args.concurrency}, {args.emitters} emitting processes x 4 threads, "
            f"max in flight per endpoint {getattr(settings, 'WARDEN_WEBHOOKS_MAX_IN_FLIGHT', 4)}"
        )
    finally:
        for worker in workers:
            os.killpg(worker.pid, 15)
        for worker in workers:
            worker.wait(20)
        receiver.stop()


if __name__ == "__main__":
    main()
