"""When do retries go out? The gap between a failed attempt and its retry, against its due time.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/warden_h_locks_bench \\
    REDIS_URL=redis://127.0.0.1:6379/3 .venv/bin/python bench/retry_timing.py [--events 20]

The database is dropped and created afresh. Starts a Celery worker as ``make run`` does (the
default queue, 4 threads, the embedded beat with its 5 s sweep) and a receiver in a process
of its own that fails each event's first request (one run with ``503`` and ``Retry-After:
2``, one with ``500``, which the retry schedule answers) and accepts the second. Emits
``--events`` events 0.7 s apart (so they meet the sweep at every phase), each to an endpoint
of its own (so no drain of another delivery picks its retry up) and reports, per
run, the gap between the first and the second request of each event: p50 / max, against
the delay the retry was due after (``next_attempt_at`` minus the first attempt's end).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wardenproject.settings.base")
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-not-for-production")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/warden_h_locks_bench")
os.environ["WARDEN_WEBHOOKS_ALLOW_PRIVATE"] = "true"
os.environ["WARDEN_WEBHOOKS_ALLOW_HTTP"] = "true"
os.environ["LOG_LEVEL"] = "WARNING"

from servers import database_prepare, purge, start_worker  # noqa: E402

database_prepare(os.environ["DATABASE_URL"], fresh=True)

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from webhook_delivery import DATA  # noqa: E402

from accounts.models import Organization, Plan  # noqa: E402
from webhooks import services  # noqa: E402
from webhooks.models import Attempt  # noqa: E402

RECEIVER = r"""
import sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
out = open(sys.argv[1], "a", buffering=1)
seen = set()
lock = threading.Lock()
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        event, at = self.headers.get("webhook-id", ""), time.time()
        with lock:
            first = event not in seen
            seen.add(event)
            out.write(f"{event} {at}\n")
        mode = self.path.strip("/")
        if first and mode == "retry-after":
            self.send_response(503)
            self.send_header("Retry-After", "2")
        elif first:
            self.send_response(500)
        else:
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


def run(port: int, log: Path, mode: str, events: int) -> str:
    """Each event to an endpoint of its own: no other delivery's drain picks its retry up."""
    pro = Plan.objects.get(slug="pro")
    orgs = [Organization.objects.create(name=f"retry {mode} {n}", plan=pro) for n in range(events)]
    for org in orgs:
        services.endpoint_create(
            actor=None,
            organization=org,
            url=f"http://127.0.0.1:{port}/{mode}",
            events=["approval.approved"],
        )
    log.write_text("")
    ids = []
    for org in orgs:
        with transaction.atomic():
            ids.append(
                services.event_emit(
                    organization=org, event_type="approval.approved", data=DATA
                ).public_id
            )
        time.sleep(0.7)
    deadline = time.time() + 120
    arrivals: dict[str, list[float]] = {}
    while time.time() < deadline:
        arrivals = {}
        for line in log.read_text().splitlines():
            event, _, at = line.partition(" ")
            arrivals.setdefault(event, []).append(float(at))
        if all(len(arrivals.get(i, [])) >= 2 for i in ids):
            break
        time.sleep(0.2)
    gaps = [arrivals[i][1] - arrivals[i][0] for i in ids if len(arrivals.get(i, [])) >= 2]
    due = []
    for attempt in Attempt.objects.filter(number=1, delivery__event__public_id__in=ids):
        delivery = attempt.delivery
        finished = attempt.created_at.timestamp() + attempt.duration_ms / 1000
        due.append(delivery.next_attempt_at.timestamp() - finished)
    connection.close()
    return (
        f"{mode}: {len(gaps)} of {len(ids)} retried; gap first -> second request p50 "
        f"{statistics.median(gaps):.2f} s, max {max(gaps):.2f} s (due after p50 "
        f"{statistics.median(due):.2f} s, max {max(due):.2f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    tmp = Path(f"/tmp/retry-bench-{os.getpid()}")
    tmp.mkdir()
    log = tmp / "arrivals.log"
    receiver = subprocess.Popen(
        [sys.executable, "-c", RECEIVER, str(log)], stdout=subprocess.PIPE, text=True
    )
    port = int(receiver.stdout.readline())
    connection.close()
    purge()
    worker = start_worker("celery", 4, tmp / "worker.log", beat=True)
    try:
        lines = [run(port, log, mode, args.events) for mode in ("retry-after", "schedule")]
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(60)
        receiver.kill()
        purge()
    print("\n".join(lines))
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )


if __name__ == "__main__":
    main()
