"""Checks while reviewers decide: allowed-check latency during a burst of decisions.

    REDIS_URL=redis://127.0.0.1:6379/3 \\
    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/warden_h_locks_bench \\
    .venv/bin/python bench/decision_burst.py [--rate 200] [--seconds 10] [--decisions 300] \\
        [--without decision_turns]

The database is dropped and created afresh. gunicorn as in check_load.py (4 workers x 8
threads, or ``--threads``) and one Celery worker (both queues, 4 threads) on PostgreSQL and
Redis. Seeds two organisations on the same plan (Enterprise: no rate limit), each with the
check benchmark's agent (20 rules; a refund of 42 is allowed, one over 100 is held) and an
approver key; holds ``--decisions`` calls in organisation A and enough in organisation B
through the check API.

Phase 1: allowed checks of A, open loop at ``--rate`` for ``--seconds`` (bench/paced.py:
latency counts from each request's due time), and one decision in B every 250 ms.
Phase 2: the same, and 2 s in, a burst: A's held calls approved through the API by 16 client
threads (``--clients``) as fast as the server answers (or at ``--decision-rate``). Reports
the checks' p50/p99 over the requests due during the burst, against phase 1's, and B's
decision latency in both phases. A decision answered 503 "busy" is retried after its
Retry-After, as a client would, and counted. ``--without`` serves bench/variant_wsgi.py with
those names taken out (``decision_turns``: one organisation's decisions side by side again;
``decision_turn_request``: an API decision's turn for its transaction only). ``--warm``
first engages every server thread with checks, and with ``--warm-decisions N`` also with
approvals of N calls held for the warm-up, so the burst meets threads and PostgreSQL
backends that have run a decision, as on a server that has been serving reviewers.
The deciding clients run in a process of their own (``--clients-in-process``: as threads
beside the paced checks, as until 2026-12-07), so that their threads never hold the GIL of
the process that sends and times the checks. ``--check-pool N`` serves the paced checks from
a second gunicorn of N processes (the production topology of deploy/systemd's
``warden-check.service`` behind deploy/nginx/warden.conf; the clients talk to each server
directly, as the proxy would route them), and everything else from the first.
``--spread`` samples the connections and turn waits per gunicorn process early in the
burst (it forks ``ss`` and ``psql`` from the timing process, in the burst's phase only).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_load import BODY, PYTHON, env
from paced import paced_load
from servers import database_prepare, free_port, start_gunicorn, wait_ready

ROOT = Path(__file__).resolve().parent.parent
DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/warden_h_locks_bench"
)
HELD_BODY = '{"action": "stripe.refund", "arguments": {"amount": 150, "customer": "c"}}'

SEED = """
import json
from accounts.models import Membership, Organization, Plan, User
from agents import services
plan = Plan.objects.get(slug="enterprise")
keys = {}
for name in ("A", "B"):
    org = Organization.objects.create(name=f"Decisions {name}", plan=plan)
    agent = services.agent_create(organization=org, actor=None, name="bench-bot")
    services.rule_create(organization=org, agent=agent, actor=None, data={
        "name": "refund limit", "action": "stripe.refund", "effect": "requires_approval",
        "max_amount": 100})
    for i in range(19):
        services.rule_create(organization=org, agent=agent, actor=None, data={
            "name": f"rule {i}", "action": f"tool{i}.*", "effect": "block",
            "when": [{"field": "customer.tier", "op": "ne", "value": "vip"}]})
    _, agent_key = services.api_key_create(organization=org, kind="agent", agent=agent,
                                           environment="live", actor=None)
    # An approver key votes as the member who created it (one vote per person).
    reviewer = User.objects.create_user(
        email=f"reviewer-{name.lower()}@bench.example", password=None)
    Membership.objects.create(user=reviewer, organization=org, role=Membership.Role.APPROVER)
    _, approver_key = services.api_key_create(organization=org, kind="approver", actor=reviewer)
    keys[name] = {"agent": agent_key, "approver": approver_key}
print("SEED=" + json.dumps(keys))
"""


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))] if values else 0


class Client:
    """One keep-alive HTTP connection to the server."""

    def __init__(self, port: int, key: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Content-Type": "application/json", "X-API-Key": key}

    def post(self, path: str, body: str = "{}") -> tuple[int, dict]:
        self.connection.request("POST", path, body=body, headers=self.headers)
        response = self.connection.getresponse()
        answer = json.loads(response.read() or b"{}")
        if response.status == 503:
            answer["retry_after"] = float(response.getheader("Retry-After") or 1)
        return response.status, answer


def hold(port: int, key: str, count: int) -> list[str]:
    client = Client(port, key)
    ids = []
    for _ in range(count):
        status, body = client.post("/api/v1/check", HELD_BODY)
        assert status == 200 and body["decision"] == "requires_approval", body
        ids.append(body["action_id"])
    return ids


BUSY: list[str] = []  # action ids answered 503 "busy", then retried


def approve(port: int, key: str, action_id: str, client: Client | None = None) -> float:
    """Approve one held call; the answer's latency in ms (a 503 "busy" is retried after its
    Retry-After and counts in the latency)."""
    client = client or Client(port, key)
    started = time.perf_counter()
    status, body = client.post(f"/api/v1/actions/{action_id}/approve")
    while status == 503 and body.get("code") == "busy":
        BUSY.append(action_id)
        time.sleep(body["retry_after"])
        status, body = client.post(f"/api/v1/actions/{action_id}/approve")
    elapsed = (time.perf_counter() - started) * 1000
    assert status == 200, (status, body)
    return elapsed


def decide_every(port: int, key: str, ids: list[str], interval: float, out: list[float]) -> None:
    client = Client(port, key)
    next_at = time.perf_counter()
    for action_id in ids:
        if (delay := next_at - time.perf_counter()) > 0:
            time.sleep(delay)
        out.append(approve(port, key, action_id, client))
        next_at += interval


def burst(
    port: int, key: str, ids: list[str], clients: int, rate: float, window: list[float]
) -> None:
    """Approve ``ids`` from ``clients`` threads, as fast as answered or at most ``rate`` per
    second (0: no limit); window = [start, end]."""
    pending = list(ids)
    lock = threading.Lock()
    start = time.perf_counter()
    sent = 0

    def run() -> None:
        nonlocal sent
        client = Client(port, key)
        while True:
            with lock:
                if not pending:
                    return
                action_id = pending.pop()
                due = start + sent / rate if rate else 0.0
                sent += 1
            if (delay := due - time.perf_counter()) > 0:
                time.sleep(delay)
            approve(port, key, action_id, client)

    threads = [threading.Thread(target=run) for _ in range(clients)]
    window.append(time.perf_counter())
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    window.append(time.perf_counter())


def burst_process(
    port: int, key: str, ids: list[str], clients: int, rate: float, start_at: float, out: Any
) -> None:
    """``burst`` in a process of its own, from ``start_at`` (a ``time.perf_counter()`` value:
    CLOCK_MONOTONIC, the same in every process); sends back its window and its busy ids.
    The deciding clients' threads then never hold the GIL of the process that sends the
    checks and times them: 16 threads starting at once there delayed the checks due in the
    burst's first ~100 ms on the client's side, and that delay counted as their latency."""
    if (delay := start_at - time.perf_counter()) > 0:
        time.sleep(delay)
    window: list[float] = []
    burst(port, key, ids, clients, rate, window)
    out.send((window, BUSY))
    out.close()


class LockWaits:
    """Samples, every 20 ms, how many backends of the database wait for a lock other than
    a decision's turn (an advisory lock), and how many wait for a turn."""

    SQL = (
        "SELECT count(*) FILTER (WHERE wait_event <> 'advisory'), "
        "count(*) FILTER (WHERE wait_event = 'advisory') FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )

    def __init__(self) -> None:
        self.samples: list[int] = []
        self.turns: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        name = DATABASE_URL.rsplit("/", 1)[1]
        with subprocess.Popen(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", name, "-tAq"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        ) as psql:  # fmt: skip
            while not self._stop.is_set():
                psql.stdin.write(self.SQL + ";\n")
                rows, turns = psql.stdout.readline().split("|")
                self.samples.append(int(rows))
                self.turns.append(int(turns))
                time.sleep(0.02)
            psql.stdin.close()

    def __enter__(self) -> LockWaits:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @staticmethod
    def _summary(samples: list[int]) -> str:
        waiting = sum(1 for n in samples if n)
        return (
            f"{waiting} of {len(samples)} samples ({waiting / max(len(samples), 1):.0%})"
            f", at most {max(samples, default=0)} backends"
        )

    def summary(self) -> str:
        return self._summary(self.samples)

    def turns_summary(self) -> str:
        return self._summary(self.turns)


def _ss(query: str) -> list[tuple[int, int]]:
    """(local port, owning pid) of the established TCP connections ``ss`` finds."""
    out = subprocess.run(
        ["ss", "-tnpH", "state", "established", query], capture_output=True, text=True
    ).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        pid = re.search(r"pid=(\d+)", line)
        if len(fields) >= 3 and pid:
            found.append((int(fields[2].rsplit(":", 1)[1]), int(pid.group(1))))
    return found


def spread(port: int) -> str:
    """Per gunicorn process: the HTTP connections it holds, and how many of its PostgreSQL
    backends wait for a decision's turn."""
    http = Counter(pid for _, pid in _ss(f"( sport = :{port} )"))
    by_port = dict(_ss("( dport = :5432 )"))
    name = DATABASE_URL.rsplit("/", 1)[1]
    ports = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", name, "-tAqc",
         "SELECT client_port FROM pg_stat_activity WHERE wait_event = 'advisory'"],
        capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    waiting = Counter(by_port.get(int(p)) for p in ports)
    pids = sorted(set(http) | {pid for pid in waiting if pid}, key=lambda pid: -http[pid])
    return ", ".join(f"{http[pid]} conn / {waiting.get(pid, 0)} waiting" for pid in pids)


def warm(
    port: int, key: str, approver: str, held: list[str], connections: int = 48, each: int = 20
) -> None:
    """Allowed checks from ``connections`` clients at once, so that every gunicorn thread has
    served a request and holds a database connection (its PostgreSQL backend started and
    warmed) before the phases; and, one per client, approvals of ``held`` (calls held for
    the warm-up only), so that the threads and backends have run a decision too, as those
    of a server that has been serving reviewers have."""

    def run(action_id: str | None) -> None:
        client = Client(port, key)
        for _ in range(each):
            status, _body = client.post("/api/v1/check", BODY)
            assert status == 200, status
        if action_id is not None:
            approve(port, approver, action_id)

    ids: list[str | None] = [*held, *[None] * connections][:connections]
    threads = [threading.Thread(target=run, args=(action_id,)) for action_id in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def phase(
    port: int, keys: dict, args, burst_ids: list[str], b_ids: list[str], check_port: int
) -> dict:
    b_latencies: list[float] = []
    b_thread = threading.Thread(
        target=decide_every, args=(port, keys["B"]["approver"], b_ids, 0.25, b_latencies)
    )
    window: list[float] = []
    start_at = time.perf_counter() + 4.0  # paced warms up 2 s; the burst starts 2 s in
    if args.clients_in_process:  # as until 2026-12-07: the clients beside the paced checks
        burster = threading.Thread(
            target=burst,
            args=(port, keys["A"]["approver"], burst_ids, args.clients, args.decision_rate, window),
        )
        timer = threading.Timer(4.0, burster.start)
    else:
        received, sent = multiprocessing.Pipe(duplex=False)
        child = multiprocessing.get_context("spawn").Process(
            target=burst_process,
            args=(port, keys["A"]["approver"], burst_ids, args.clients, args.decision_rate,
                  start_at, sent),
        )  # fmt: skip
    spreads: list[str] = []
    # Off unless asked: each sample forks `ss` twice and `psql` from this process, which
    # sends and times the checks, and only in the burst's phase (2026-12-08: the checks
    # "slow in the burst's first ~100 ms" of earlier runs finished together just after the
    # +0.1 s sample).
    samplers = [
        threading.Timer(4.0 + at, lambda at=at: spreads.append(f"+{at:.1f} s: {spread(port)}"))
        for at in ((0.1, 0.3, 1.0) if args.spread else ())
    ]
    headers = {"Content-Type": "application/json", "X-API-Key": keys["A"]["agent"]}
    b_thread.start()
    if burst_ids:
        if args.clients_in_process:
            timer.start()
        else:
            child.start()
        for sampler in samplers:
            sampler.start()
    with LockWaits() as waits:
        paced = paced_load(
            "127.0.0.1", check_port, "/api/v1/check", BODY.encode(), headers,
            rate=args.rate, seconds=args.seconds,
        )  # fmt: skip
        if burst_ids and args.clients_in_process:
            timer.join()
            burster.join()
        elif burst_ids:
            window[:], busy_ids = received.recv()
            BUSY.extend(busy_ids)
            child.join()
    b_thread.join()
    since, until = (window[0], window[1]) if window else (0.0, float("inf"))
    return {
        "paced": paced,
        "p50": paced.percentile(50, since, until),
        "p99": paced.percentile(99, since, until),
        "p90": paced.percentile(90, since, until),
        "p95": paced.percentile(95, since, until),
        "n": sum(since <= due < until for due in paced.dues),
        "burst_s": (until - since) if window else 0.0,
        "since": since,
        "until": until,
        "b": b_latencies,
        "waits": waits.summary(),
        "turns": waits.turns_summary(),
        "spreads": spreads,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=200.0, help="allowed checks per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured, per phase")
    parser.add_argument("--decisions", type=int, default=300)
    parser.add_argument("--clients", type=int, default=16, help="concurrent deciding clients")
    parser.add_argument(
        "--decision-rate", type=float, default=0.0, help="decisions/s in the burst (0: no limit)"
    )
    parser.add_argument(
        "--warm",
        action="store_true",
        help="engage every server thread (and its database "
        "connection) with concurrent checks before the phases",
    )
    parser.add_argument(
        "--warm-decisions",
        type=int,
        default=0,
        help="with --warm, also approve this many calls of A (held for the warm-up only), "
        "one per warm-up client, so threads and backends have run a decision before the burst",
    )
    parser.add_argument("--threads", type=int, default=8, help="per gunicorn process (of 4)")
    parser.add_argument(
        "--worker-nice",
        type=int,
        default=0,
        help="run the Celery worker at this niceness (nice -n N): the CPU it takes during a "
        "burst (the decisions' events, webhooks, mail) then yields to the web processes",
    )
    parser.add_argument(
        "--clients-in-process",
        action="store_true",
        help="run the deciding clients as threads of this process, beside the paced checks "
        "(the method until 2026-12-07), instead of in a process of their own",
    )
    parser.add_argument(
        "--spread",
        action="store_true",
        help="sample the connections and turn waits per gunicorn process 0.1, 0.3 and 1 s "
        "into the burst (forks `ss` and `psql` from the process that times the checks)",
    )
    parser.add_argument(
        "--check-pool",
        type=int,
        default=0,
        help="serve the paced checks from a gunicorn of their own with this many processes "
        "(as deploy/systemd's warden-check.service does), the decisions from the main one",
    )
    parser.add_argument(
        "--web-nice",
        type=int,
        default=0,
        help="with --check-pool, run the main gunicorn (the decisions) at this niceness",
    )
    parser.add_argument(
        "--without", default="", help="bench/variant_wsgi.py names to take out (comma-separated)"
    )
    args = parser.parse_args()
    os.environ["DATABASE_URL"] = DATABASE_URL
    if not os.environ.get("REDIS_URL"):
        raise SystemExit("set REDIS_URL=redis://... (Celery broker, cache)")
    database_prepare(DATABASE_URL, fresh=True)
    server_env = env() | {"DATABASE_URL": DATABASE_URL}
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT, env=server_env, check=True,
    )  # fmt: skip
    seeded = subprocess.run(
        [PYTHON, "manage.py", "shell", "-c", SEED],
        cwd=ROOT, env=server_env, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    keys = json.loads(re.search(r"SEED=(.*)", seeded).group(1))
    purge = [PYTHON, "-m", "celery", "-A", "wardenproject", "purge", "-f", "-Q", "celery,mail"]
    # Tasks left in the bench's broker by an earlier run would run against this run's rows.
    subprocess.run(purge, cwd=ROOT, env=server_env, check=True, capture_output=True)
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="decision-bench-")) / "worker.log"
    worker = subprocess.Popen(
        [*(["nice", "-n", str(args.worker_nice)] if args.worker_nice else []),
         PYTHON, "-m", "celery", "-A", "wardenproject", "worker", "-Q", "celery,mail",
         "--pool", "threads", "--concurrency", "4", "--loglevel", "WARNING",
         "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", "bench@%h"],
        cwd=ROOT, env=server_env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    if args.without:
        server = start_gunicorn(
            port=port,
            workers=4,
            threads=args.threads,
            env=server_env | {"WARDEN_WITHOUT": args.without},
            app="bench.variant_wsgi:application",
        )
    else:
        server = start_gunicorn(
            port=port, workers=4, threads=args.threads, env=server_env, nice=args.web_nice
        )
    check_port, check_server = port, None
    if args.check_pool:
        check_port = free_port()
        check_server = start_gunicorn(
            port=check_port, workers=args.check_pool, threads=args.threads, env=server_env
        )
    try:
        for ready in {port, check_port}:
            wait_ready(ready)
        a_ids = hold(port, keys["A"]["agent"], args.decisions)
        n_b = int((args.seconds + 2) / 0.25)  # one B decision every 250 ms in each phase
        b_ids = hold(port, keys["B"]["agent"], 2 * n_b)
        if args.warm:
            warm_ids = hold(port, keys["A"]["agent"], args.warm_decisions)
            warm(port, keys["A"]["agent"], keys["A"]["approver"], warm_ids)
            if check_server is not None:
                warm(check_port, keys["A"]["agent"], keys["A"]["approver"], [])
        quiet = phase(port, keys, args, [], b_ids[:n_b], check_port)
        busy = phase(port, keys, args, a_ids, b_ids[n_b : 2 * n_b], check_port)
    finally:
        for running in (server, check_server):
            if running is not None:
                running.terminate()
                running.wait(timeout=15)
        os.killpg(worker.pid, 15)
        worker.wait(30)
        subprocess.run(purge, cwd=ROOT, env=server_env, check=True, capture_output=True)
    print("| figure | no decisions | during the burst |")
    print("|---|---|---|")
    print(
        f"| allowed checks at {args.rate:.0f}/s, p50 / p99 | {quiet['p50']:.1f} / "
        f"{quiet['p99']:.1f} ms ({quiet['n']} checks) | {busy['p50']:.1f} / {busy['p99']:.1f} ms "
        f"({busy['n']} checks due during the burst) |"
    )
    print(
        f"| allowed checks, p90 / p95 | {quiet['p90']:.1f} / {quiet['p95']:.1f} ms | "
        f"{busy['p90']:.1f} / {busy['p95']:.1f} ms |"
    )
    print(
        f"| decisions in organisation B (same plan), p50 / max | "
        f"{statistics.median(quiet['b']):.1f} / {max(quiet['b']):.1f} ms ({len(quiet['b'])}) | "
        f"{statistics.median(busy['b']):.1f} / {max(busy['b']):.1f} ms ({len(busy['b'])}) |"
    )
    print(
        f"| burst | - | {args.decisions} approvals by {args.clients} clients in "
        f"{busy['burst_s']:.1f} s "
        f"({args.decisions / busy['burst_s']:.0f}/s) |"
    )
    print(f"| backends waiting for a lock (every 20 ms) | {quiet['waits']} | {busy['waits']} |")
    print(f"| backends waiting for a decision's turn | {quiet['turns']} | {busy['turns']} |")
    # When the burst's slow checks were due (ms after its start): a transient at the start,
    # or spread over the burst.
    slow = sorted(
        (round((due - busy["since"]) * 1000), round(latency))
        for latency, due in zip(busy["paced"].latencies_ms, busy["paced"].dues, strict=True)
        if busy["since"] <= due < busy["until"] and latency > 2 * quiet["p99"]
    )
    print(f"checks over 2x the quiet p99 during the burst (due at ms, latency ms): {slow}")
    if args.spread:
        print("per gunicorn process, after the burst's start: " + "; ".join(busy["spreads"]))
    errors = quiet["paced"].errors + busy["paced"].errors
    print(f"\ncheck errors: {errors}; p99 ratio busy / quiet: {busy['p99'] / quiet['p99']:.2f}")
    print(f"decisions answered 503 busy (and retried): {len(BUSY)}")
    print(
        f"without: {args.without or '-'}; warm: {args.warm} (decisions: {args.warm_decisions}); "
        f"clients: {'threads beside the checks' if args.clients_in_process else 'own process'}"
    )
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; gunicorn 4 x {args.threads} threads"
        + (
            f", checks on their own gunicorn ({args.check_pool} x {args.threads})"
            if args.check_pool
            else ""
        )
        + ", one Celery worker (4 threads)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
