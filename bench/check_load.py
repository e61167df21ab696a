"""Load benchmark of the check API: gunicorn (gthread) on PostgreSQL, wrk beside it.

    .venv/bin/python bench/check_load.py [--seconds 15] [--workers 2] [--threads 8]

Needs PostgreSQL on 127.0.0.1 (database BENCH_DATABASE_URL, default warden_bench, dropped and
created afresh unless --keep-data) and Debian's `wrk`. Seeds an Enterprise organisation (no
rate limit) with one agent, 20 rules (one with an amount limit) and a live key, then measures:

1. checks/s at saturation (wrk, 32 connections unless --connections), every answer writing
   its audit row;
2. p50/p99 latency at 500 checks/s, open loop (bench/paced.py: each request is due at a fixed
   time and its latency counts from then, so server queueing is not hidden);
3. the trivial JSON view /healthz at saturation, for the ratio;
4. with ``--rounds N``, N more pairs of short saturation phases (``--round-seconds``, 5 by
   default), checks and /healthz back to back, the order swapped every round: the ratio of
   each pair and their median. The VM's speed drifts by tens of percent within minutes, and
   phases 1 and 3 are a minute apart; a pair's phases are seconds apart, so its ratio
   compares the two at the same speed of the machine.

``--seal`` runs the worker's audit chain sealing beside the server for the whole run (the
figures with chaining on) and reports how many entries were still unsealed at the end.

Prints a Markdown table for docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paced import paced_load
from servers import cpu_by_role, cpu_report, database_prepare, start_gunicorn, wait_ready

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python")
PORT = int(os.environ.get("BENCH_PORT", "8765"))
DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/warden_bench"
)
BODY = (
    '{"action": "stripe.refund", "arguments": {"amount": 42, "customer": {"tier": "vip"}},'
    ' "session_id": "bench"}'
)

SEED = """
from accounts.models import Organization, Plan
from agents import services
from agents.models import Agent
org, _ = Organization.objects.get_or_create(
    name="Bench", defaults={"plan": Plan.objects.get(slug="enterprise")})
agent = Agent.objects.filter(organization=org, name="bench-bot").first()
if agent is None:
    agent = services.agent_create(organization=org, actor=None, name="bench-bot")
    services.rule_create(organization=org, agent=agent, actor=None, data={
        "name": "refund limit", "action": "stripe.refund", "effect": "requires_approval",
        "max_amount": 100})
    for i in range(19):
        services.rule_create(organization=org, agent=agent, actor=None, data={
            "name": f"rule {i}", "action": f"tool{i}.*", "effect": "block",
            "when": [{"field": "customer.tier", "op": "ne", "value": "vip"}]})
_, raw = services.api_key_create(organization=org, kind="agent", agent=agent,
                                 environment="live", actor=None)
print("KEY=" + raw)
"""


# The worker's beat task `audit.seal`, in a loop of its own (--seal).
SEALER = """
import time
from django.conf import settings
from audit.services import audit_seal
while True:
    audit_seal()
    time.sleep(settings.WARDEN_AUDIT_SEAL_INTERVAL)
"""

UNSEALED = """
from audit.models import AuditEntry, AuditLink
print(AuditEntry.objects.count() - AuditLink.objects.count())
"""


def env() -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": DATABASE_URL,
        "DJANGO_SETTINGS_MODULE": "wardenproject.settings.base",
        "DEBUG": "false",
        "SECRET_KEY": "bench-only-secret-key-not-for-production",
        "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        "LOG_LEVEL": "WARNING",
        # Connections outlive the run, so no PostgreSQL backend exits (taking its CPU
        # counters with it) between the before and after readings of a phase.
        "DATABASE_CONN_MAX_AGE": "600",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
    }


def seeded_in_process() -> str:
    """Set up Django in this process on the benchmark's database (migrated, seeded as for
    the load benchmark); the agent's live key."""
    os.environ.update(env())
    database_prepare(DATABASE_URL, fresh=False)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    out = io.StringIO()
    real_stdout, sys.stdout = sys.stdout, out
    try:
        exec(SEED, {})  # noqa: S102 - the benchmark's own seed script
    finally:
        sys.stdout = real_stdout
    return out.getvalue().split("KEY=", 1)[1].strip()


def manage(*args: str, capture: bool = False) -> str:
    result = subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=ROOT,
        env=env(),
        check=True,
        capture_output=capture,
        text=True,
    )
    return result.stdout if capture else ""


ROWS_SINCE = """
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute(
        "SELECT count(*), count(DISTINCT xmin::text), coalesce(max(id), %s)"
        " FROM audit_auditentry WHERE id > %s AND kind = 'check'", [LAST_ID, LAST_ID])
    print(*cursor.fetchone())
"""


def audit_rows_since(last_id: int) -> tuple[int, int, int]:
    """Check rows with an id above ``last_id``: (count, transactions that wrote them, the
    highest id). Rows committed by one INSERT share their xmin."""
    out = manage("shell", "-c", ROWS_SINCE.replace("LAST_ID", str(int(last_id))), capture=True)
    count, transactions, highest = out.strip().splitlines()[-1].split()
    return int(count), int(transactions), int(highest)


def wrk(url: str, seconds: int, connections: int, threads: int, script: str | None) -> str:
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        command += ["-s", script]
    return subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout


def phase_cpu(server: subprocess.Popen) -> dict[str, float]:
    """CPU so far of gunicorn (master and workers), wrk (finished children) and PostgreSQL."""
    totals = cpu_by_role({"gunicorn": {server.pid}})
    totals["wrk"] = sum(resource.getrusage(resource.RUSAGE_CHILDREN)[:2])
    del totals["redis"]
    return totals


def parse(output: str) -> dict[str, float]:
    def ms(text: str) -> float:
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))}
    for pct in ("50", "99"):
        match = re.search(rf"\s{pct}%\s+([\d.]+(?:us|ms|s))", output)
        if match:
            result[f"p{pct}"] = ms(match.group(1))
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    result["errors"] = float(errors.group(1)) if errors else 0.0
    total = re.search(r"(\d+) requests in", output)
    result["requests"] = float(total.group(1)) if total else 0.0
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument(
        "--connections", type=int, default=32, help="wrk connections in both saturation phases"
    )
    parser.add_argument("--rate", type=float, default=500.0, help="open-loop checks/s")
    parser.add_argument(
        "--rounds",
        type=int,
        default=0,
        help="Then measure this many pairs of short saturation phases (checks, /healthz), "
        "back to back, alternating which goes first; prints each pair's ratio and the median.",
    )
    parser.add_argument("--round-seconds", type=int, default=5)
    parser.add_argument(
        "--keep-data",
        action="store_true",
        help="Keep the database's earlier rows (by default it is dropped and created afresh: "
        "runs that each start from millions of rows left by earlier ones are not comparable).",
    )
    parser.add_argument(
        "--async-commit",
        action="store_true",
        help="Set WARDEN_AUDIT_ASYNC_COMMIT=true: allow/block audit rows commit asynchronously.",
    )
    parser.add_argument(
        "--seal",
        action="store_true",
        help="Seal the audit chain beside the server for the whole run, as the worker does "
        "(audit_seal() every WARDEN_AUDIT_SEAL_INTERVAL seconds, at niceness 10 as the systemd "
        "unit runs the worker): the figures with chaining on.",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: install it (Debian: apt-get install wrk)")
    if args.async_commit:
        os.environ["WARDEN_AUDIT_ASYNC_COMMIT"] = "true"

    database_prepare(DATABASE_URL, fresh=not args.keep_data)
    manage("migrate", "--noinput", "-v", "0")
    key = re.search(r"KEY=(\S+)", manage("shell", "-c", SEED, capture=True)).group(1)

    tmp = Path(tempfile.mkdtemp(prefix="warden-bench-"))
    headers = (
        'wrk.method = "POST"\n'
        f"wrk.body = '{BODY}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["X-API-Key"] = "{key}"\n'
    )
    saturate = tmp / "check.lua"
    saturate.write_text(headers)

    server = start_gunicorn(port=PORT, workers=args.workers, threads=args.threads, env=env())
    sealer = None
    if args.seal:
        sealer = subprocess.Popen(
            ["nice", "-n", "10", PYTHON, "manage.py", "shell", "-c", SEALER],
            cwd=ROOT,
            env=env(),
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{PORT}"
    try:
        wait_ready(PORT)
        wrk(f"{base}/api/v1/check", 3, 8, 2, str(saturate))  # warm caches in every worker
        *_, last_id = audit_rows_since(0)
        cpu_before = phase_cpu(server)
        check = parse(wrk(f"{base}/api/v1/check", args.seconds, args.connections, 2, str(saturate)))
        check_cpu = cpu_report(cpu_before, phase_cpu(server), int(check["requests"]), "check")
        phase_rows, phase_commits, _ = audit_rows_since(last_id)
        paced = paced_load(
            "127.0.0.1",
            PORT,
            "/api/v1/check",
            BODY.encode(),
            {"Content-Type": "application/json", "X-API-Key": key},
            rate=args.rate,
            seconds=args.seconds,
        )
        cpu_before = phase_cpu(server)
        trivial = parse(wrk(f"{base}/healthz", args.seconds, args.connections, 2, None))
        trivial_cpu = cpu_report(cpu_before, phase_cpu(server), int(trivial["requests"]), "request")
        rounds = [
            rounds_pair(base, saturate, args, checks_first=index % 2 == 0, server=server)
            for index in range(args.rounds)
        ]
    finally:
        server.terminate()
        server.wait(timeout=10)
        if sealer is not None:
            sealer.terminate()
            sealer.wait(timeout=30)

    if args.seal:
        unsealed = manage("shell", "-c", UNSEALED, capture=True).strip().splitlines()[-1]
        print(f"| chaining on: entries not sealed when the server stopped | {unsealed} |")
    print(f"| checks/s at saturation ({args.connections} connections) | {check['rps']:.0f} |")
    print(
        f"| audit rows written in that phase / requests | "
        f"{phase_rows} / {check['requests']:.0f} (non-2xx: {check['errors']:.0f}) |"
    )
    print(
        f"| commits that wrote them (audit rows per commit) | {phase_commits} "
        f"({phase_rows / max(phase_commits, 1):.1f}) |"
    )
    print(
        f"| p50 / p99 at saturation | {check.get('p50', 0):.2f} ms / {check.get('p99', 0):.2f} ms |"
    )
    print(
        f"| open loop at {paced.rate:.0f}/s: sent / 2xx / errors | "
        f"{paced.sent} / {paced.ok} / {paced.errors} {paced.error_kinds or ''} |"
    )
    print(
        f"| open loop at {paced.rate:.0f}/s: p50 / p99 / max | {paced.percentile(50):.2f} ms / "
        f"{paced.percentile(99):.2f} ms / {paced.percentile(100):.2f} ms |"
    )
    print(f"| trivial JSON view /healthz at saturation | {trivial['rps']:.0f} req/s |")
    print(f"| ratio checks / trivial | {check['rps'] / trivial['rps']:.2f} |")
    print(f"\nsaturation, checks: {check_cpu}")
    print(f"saturation, /healthz: {trivial_cpu}")
    if rounds:
        print(f"\n{len(rounds)} pairs of {args.round_seconds} s phases, back to back:\n")
        print(
            "| pair | checks/s | /healthz req/s | ratio | CPU ms per check: gunicorn + PostgreSQL "
            "| CPU ms per /healthz | CPU ratio |"
        )
        print("|---|---|---|---|---|---|---|")
        for index, pair in enumerate(rounds, 1):
            print(
                f"| {index} | {pair['checks']:.0f} | {pair['healthz']:.0f} | "
                f"{pair['checks'] / pair['healthz']:.2f} | {pair['checks_cpu']:.3f} | "
                f"{pair['healthz_cpu']:.3f} | {pair['healthz_cpu'] / pair['checks_cpu']:.2f} |"
            )
        ratios = [pair["checks"] / pair["healthz"] for pair in rounds]
        cpu_ratios = [pair["healthz_cpu"] / pair["checks_cpu"] for pair in rounds]
        print(
            f"\nmedian ratio checks / trivial: {statistics.median(ratios):.2f} "
            f"(min {min(ratios):.2f}, max {max(ratios):.2f}); "
            f"by CPU per request: {statistics.median(cpu_ratios):.2f}"
        )
    return 0


def rounds_pair(
    base: str,
    script: Path,
    args: argparse.Namespace,
    *,
    checks_first: bool,
    server: subprocess.Popen,
) -> dict[str, float]:
    """One pair of short saturation phases, checks and /healthz, back to back: throughput
    of each and CPU per request (gunicorn + PostgreSQL)."""
    result: dict[str, float] = {}
    phases = [("checks", "/api/v1/check", str(script)), ("healthz", "/healthz", None)]
    for name, path, lua in phases if checks_first else phases[::-1]:
        before = phase_cpu(server)
        measured = parse(wrk(base + path, args.round_seconds, args.connections, 2, lua))
        after = phase_cpu(server)
        if measured["errors"]:
            raise SystemExit(f"{path}: {measured['errors']:.0f} non-2xx answers")
        result[name] = measured["rps"]
        spent = sum(after[role] - before[role] for role in ("gunicorn", "postgres"))
        result[f"{name}_cpu"] = spent / measured["requests"] * 1000
    return result


if __name__ == "__main__":
    sys.exit(main())
