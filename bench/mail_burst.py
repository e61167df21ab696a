"""Webhooks during an email burst: commit -> delivery while a slow mail server holds mail.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/warden_h_locks_bench \\
    REDIS_URL=redis://127.0.0.1:6379/3 .venv/bin/python bench/mail_burst.py \\
        [--held 500] [--orgs 50] [--seconds 10] [--smtp-delay 2]

The database is dropped and created afresh. Starts the Celery workers the way ``make run``
does (with a mail queue: a worker ``-Q celery`` with 4 threads and the embedded beat, and a
mail worker ``-Q mail`` with 4 threads; code without one: a single worker with 4 threads), a
webhook receiver and an SMTP server in processes of their own. The SMTP server answers every
command ``--smtp-delay`` seconds late (a slow mail relay: one email to three reviewers then
takes ~30 s).

Seeds ``--orgs`` organisations (Pro), each with three reviewers who get approval email and
a webhook endpoint subscribed to ``log.pending_approval``. Then holds ``--held`` calls over
``--seconds``, round-robin over the organisations, from 4 threads, each the way the check
path holds one (its audit row, the request and its ``log.pending_approval`` event in one
transaction; reviewer email queued after commit). Measures commit -> first arrival at the
receiver of those events, and counts the notify tasks run and the emails the SMTP server
got (per reviewer).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
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

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from webhook_delivery import Receiver, percentile  # noqa: E402

from accounts.models import Membership, Organization, Plan, User  # noqa: E402
from agents.models import Agent  # noqa: E402
from approvals.services import approval_request_create  # noqa: E402
from audit.models import AuditEntry  # noqa: E402
from audit.services import audit_record  # noqa: E402
from wardenproject.ids import public_id  # noqa: E402
from webhooks import services  # noqa: E402
from webhooks.models import Event  # noqa: E402

SMTP = r"""
import socketserver, sys, threading, time
delay = float(sys.argv[1])
out = open(sys.argv[2], "a", buffering=1)
lock = threading.Lock()
class Handler(socketserver.StreamRequestHandler):
    def reply(self, line):
        time.sleep(delay)
        self.wfile.write(line + b"\r\n")
    def handle(self):
        self.reply(b"220 slow.example ESMTP")
        recipients = []
        while True:
            line = self.rfile.readline()
            if not line:
                return
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                self.reply(b"250 slow.example")
            elif verb == b"MAIL":
                recipients = []
                self.reply(b"250 ok")
            elif verb == b"RCPT":
                recipients.append(line.split(b"<", 1)[1].split(b">", 1)[0].decode())
                self.reply(b"250 ok")
            elif verb == b"DATA":
                self.reply(b"354 go on")
                while self.rfile.readline() not in (b".\r\n", b""):
                    pass
                with lock:
                    for rcpt in recipients:
                        out.write(f"{rcpt} {time.time()}\n")
                self.reply(b"250 queued")
            elif verb == b"QUIT":
                self.reply(b"221 bye")
                return
            else:
                self.reply(b"250 ok")
class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def seed(orgs: int, receiver_url: str) -> list[Agent]:
    call_command("migrate", verbosity=0)
    pro = Plan.objects.get(slug="pro")
    agents = []
    for n in range(orgs):
        org = Organization.objects.create(name=f"Mail bench {n}", plan=pro)
        for r in range(3):
            user = User.objects.create_user(email=f"reviewer{r}-org{n}@example.com")
            Membership.objects.create(user=user, organization=org, role="approver")
        services.endpoint_create(
            actor=None, organization=org, url=receiver_url, events=["log.pending_approval"]
        )
        agents.append(Agent.objects.create(organization=org, name="bench-bot"))
    return agents


def hold(agent: Agent, commits: dict[str, float]) -> None:
    """What the check path does for a requires_approval decision, timed at its commit."""
    with transaction.atomic():
        action_id = public_id("act")
        transaction.on_commit(lambda: commits.__setitem__(action_id, time.time()))
        entry = audit_record(
            organization=agent.organization,
            kind=AuditEntry.Kind.CHECK,
            public_id=action_id,
            agent=agent,
            agent_public_id=agent.public_id,
            action="stripe.refund",
            action_id="",
            arguments={"amount": 500},
            environment="live",
            session_id="",
            decision="requires_approval",
            status="pending",
            rule_name="refund limit",
            reason="over 100",
            source="native",
        )
        approval_request_create(entry=entry, api_key=None, rule=None, timeout_seconds=3600)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--held", type=int, default=500)
    parser.add_argument("--orgs", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--smtp-delay", type=float, default=2.0)
    parser.add_argument(
        "--settle", type=float, default=60.0, help="count email at least this long after the start"
    )
    args = parser.parse_args()
    if not (settings.DATABASES["default"]["ENGINE"].endswith("postgresql") and settings.REDIS_URL):
        raise SystemExit("set DATABASE_URL=postgres://... and REDIS_URL=redis://...")
    tmp = Path(f"/tmp/mail-bench-{os.getpid()}")
    tmp.mkdir()
    receiver = Receiver(tmp / "arrivals.log")
    mail_log = tmp / "mail.log"
    mail_log.write_text("")
    smtp = subprocess.Popen(
        [sys.executable, "-c", SMTP, str(args.smtp_delay), str(mail_log)],
        stdout=subprocess.PIPE,
        text=True,
    )
    smtp_port = smtp.stdout.readline().strip()
    os.environ |= {"EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": smtp_port, "EMAIL_USE_TLS": "false"}
    agents = seed(args.orgs, receiver.url())
    connection.close()
    purged = purge()
    split = "mail" in getattr(settings, "CELERY_TASK_QUEUES", {})
    if split:  # as make run starts them
        workers = [
            start_worker("celery", 4, tmp / "worker.log", beat=True),
            start_worker("mail", 4, tmp / "mail-worker.log", beat=False),
        ]
    else:
        workers = [start_worker(None, 4, tmp / "worker.log", beat=True)]
    try:
        commits: dict[str, float] = {}
        start = time.time() + 0.5
        interval = args.seconds / args.held

        def lane(offset: int) -> None:
            for n in range(offset, args.held, 4):
                if (delay := start + n * interval - time.time()) > 0:
                    time.sleep(delay)
                hold(agents[n % len(agents)], commits)
            connection.close()

        threads = [threading.Thread(target=lane, args=(k,)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        held_in = max(commits.values()) - start
        events = dict(
            Event.objects.filter(event_type="log.pending_approval").values_list(
                "public_id", "action_id"
            )
        )
        deadline = time.time() + 900
        while time.time() < deadline and set(events) - set(receiver.first_arrivals()):
            time.sleep(0.2)
        arrivals = receiver.first_arrivals()
        latencies = [
            (arrivals[event] - commits[action]) * 1000
            for event, action in events.items()
            if event in arrivals
        ]
        delivered_at = max(arrivals.values())
        time.sleep(max(0.0, start + args.settle - time.time()))
        counted_at = time.time() - start
        emails = [line.split()[0] for line in mail_log.read_text().splitlines()]
        per_reviewer = Counter(emails)
        logs = "".join(p.read_text(errors="replace") for p in tmp.glob("*worker.log"))
        tasks = len(re.findall(r"Task approvals\.notify\[[^]]+\] received", logs))
        sending = len(re.findall(r"Task approvals\.notify\[[^]]+\] succeeded[^:]*: \['", logs))
    finally:
        smtp.kill()  # mail tasks fail at once, so the workers' warm shutdown is quick
        receiver.stop()
        for worker in workers:
            os.killpg(worker.pid, 15)
        for worker in workers:
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, 9)
        purge()  # what the workers gave back must not run in the next run's database
    print(
        f"held calls: {len(commits)} in {held_in:.1f} s over {args.orgs} organisations; "
        f"workers: {'-Q celery (4 threads) + -Q mail (4 threads)' if split else 'one, 4 threads'}"
    )
    print(
        f"log.pending_approval delivered: {len(latencies)} of {len(events)}; commit -> first "
        f"attempt p50 {statistics.median(latencies):.0f} ms, p99 {percentile(latencies, 99):.0f} "
        f"ms, max {max(latencies):.0f} ms; all delivered {delivered_at - start:.1f} s after the "
        f"first commit"
    )
    print(
        f"email by {counted_at:.0f} s after the first commit: {tasks} approvals.notify tasks "
        f"received ({sending} of them sent email), "
        f"{len(emails)} emails to {len(per_reviewer)} reviewers (max "
        f"{max(per_reviewer.values(), default=0)} per reviewer); SMTP answers "
        f"{args.smtp_delay:.1f} s late"
    )
    print(f"tasks purged from the broker before the run: {purged}")
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )


if __name__ == "__main__":
    main()
