"""Does each speed trick that reaches into private internals earn its keep? A/B through
gunicorn at saturation, the trick in and out, alternating.

    .venv/bin/python bench/tricks_ab.py [--rounds 3] [--seconds 10] [--only a,b]

Needs PostgreSQL on 127.0.0.1 (BENCH_DATABASE_URL, default warden_bench, dropped and created
afresh), Redis on 127.0.0.1:6379 (db 13, for the cache-client trick) and Debian's `wrk`.
Each trick runs in rounds of "with, without" (and "without, with" in every other round) on
the configuration of bench/check_load.py (4 workers x 8 threads, 32 wrk connections);
bench/variant_wsgi.py takes a trick out. Reports checks/s and CPU per check (gunicorn and
every PostgreSQL backend, this machine's whole share) with and without, medians over the
rounds. The project keeps a trick only if it earns at least 5 % of check throughput.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_load import BODY, DATABASE_URL, env, manage, parse, phase_cpu, wrk
from servers import database_prepare, start_gunicorn, wait_ready

ROOT = Path(__file__).resolve().parent.parent
PORT = int(os.environ.get("BENCH_PORT", "8767"))
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
# The limited checks spread over 1,000 budgets (one per customer), as bench/limits_bench.py's
# keyed phase: one budget that every call spends is locked at once whatever the tricks.
LIMITED = """
math.randomseed(os.time())
request = function()
  local body = string.format(
    '{"action": "stripe.refund", "arguments": {"amount": 42, "customer_id": "cus_%d"}}',
    math.random(1, 1000))
  return wrk.format("POST", nil, nil, body)
end
"""

SEED = """
from accounts.models import Organization, Plan
from agents import services
enterprise = Plan.objects.get(slug="enterprise")
def agent_with_key(org, name, rules):
    agent = services.agent_create(organization=org, actor=None, name=name)
    for rule in rules:
        services.rule_create(organization=org, agent=agent, actor=None, data=rule)
    _, raw = services.api_key_create(organization=org, kind="agent", agent=agent,
                                     environment="live", actor=None)
    return raw
plain = [{"name": "refund limit", "action": "stripe.refund", "effect": "requires_approval",
          "max_amount": 100}] + [
    {"name": f"rule {i}", "action": f"tool{i}.*", "effect": "block",
     "when": [{"field": "customer.tier", "op": "ne", "value": "vip"}]} for i in range(19)]
limited = [
    {"name": "sum", "action": "stripe.refund", "effect": "requires_approval",
     "limit": {"sum": "amount", "over": 10**12, "per": "1d", "by": "customer_id"}},
    {"name": "count", "action": "stripe.refund", "effect": "requires_approval",
     "limit": {"count": 10**9, "per": "1d", "by": "customer_id"}}]
org = Organization.objects.create(name="Bench", plan=enterprise)
print("PLAIN=" + agent_with_key(org, "bench-bot", plain))
print("LIMITED=" + agent_with_key(org, "limits-bot", limited))
metered = Plan.objects.filter(slug="bench-metered").first()
if metered is None:
    metered = Plan.objects.get(pk=enterprise.pk)
    metered.pk, metered.slug, metered.name = None, "bench-metered", "Bench metered"
    metered.rank = 99
    metered.api_requests_per_minute = 10**9
    metered.save()
paying = Organization.objects.create(name="Metered", plan=metered)
print("METERED=" + agent_with_key(paying, "metered-bot", plain))
"""

# trick -> (which key, body, extra environment, extra gunicorn options when taken out)
TRICKS = {
    "trace": ("PLAIN", BODY, {}, ()),
    "balanced_worker": ("PLAIN", BODY, {}, ("--worker-class", "gthread")),
    "optimistic_spend": ("LIMITED", LIMITED, {}, ()),
    "prepared_limits": ("LIMITED", LIMITED, {}, ()),
    "prepared_audit": ("PLAIN", BODY, {}, ()),
    "redis_client_reuse": ("METERED", BODY, {"REDIS_URL": REDIS_URL}, ()),
}


def run_once(
    key: str,
    body: str,
    extra_env: dict[str, str],
    options: tuple[str, ...],
    without: str,
    seconds: int,
) -> tuple[float, float]:
    """(checks/s, CPU ms per check of gunicorn + PostgreSQL) of one gunicorn."""
    variant_env = {**env(), **extra_env, "WARDEN_WITHOUT": without}
    script = Path(tempfile.mkdtemp(prefix="warden-ab-")) / "check.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["X-API-Key"] = "{key}"\n'
        + (body if "request = function" in body else f"wrk.body = '{body}'\n")
    )
    server = start_gunicorn(
        port=PORT,
        workers=4,
        threads=8,
        env=variant_env,
        app="bench.variant_wsgi:application",
        extra=options if without else (),
    )
    base = f"http://127.0.0.1:{PORT}"
    try:
        wait_ready(PORT, tries=150)
        wrk(f"{base}/api/v1/check", 3, 32, 2, str(script))  # warm every worker
        before = phase_cpu(server)
        result = parse(wrk(f"{base}/api/v1/check", seconds, 32, 2, str(script)))
        after = phase_cpu(server)
    finally:
        server.terminate()
        server.wait(timeout=10)
    if result["errors"]:
        raise SystemExit(f"{without or 'all tricks'}: {result['errors']:.0f} non-2xx answers")
    cpu = sum(after[r] - before[r] for r in ("gunicorn", "postgres")) / result["requests"] * 1e3
    return result["rps"], cpu


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--only", default="", help="comma-separated tricks")
    args = parser.parse_args()
    database_prepare(DATABASE_URL, fresh=True)
    manage("migrate", "--noinput", "-v", "0")
    out = manage("shell", "-c", SEED, capture=True)
    keys = dict(re.findall(r"(\w+)=(\S+)", out))
    subprocess.run(["redis-cli", "-u", REDIS_URL, "flushdb"], capture_output=True, check=False)
    chosen = [t for t in args.only.split(",") if t] or list(TRICKS)
    print("| trick | checks/s with / without | gain | CPU ms per check with / without |")
    print("|---|---|---|---|")
    for trick in chosen:
        key_name, body, extra_env, options = TRICKS[trick]
        runs: dict[str, list[tuple[float, float]]] = {"with": [], "without": []}
        for round_ in range(args.rounds):
            order = ("with", "without") if round_ % 2 == 0 else ("without", "with")
            for variant in order:
                without = "" if variant == "with" else trick
                runs[variant].append(
                    run_once(keys[key_name], body, extra_env, options, without, args.seconds)
                )
        rps = {v: statistics.median(r for r, _ in runs[v]) for v in runs}
        cpu = {v: statistics.median(c for _, c in runs[v]) for v in runs}
        gain = rps["with"] / rps["without"] - 1
        print(
            f"| {trick} | {rps['with']:.0f} / {rps['without']:.0f} | {gain:+.1%} | "
            f"{cpu['with']:.3f} / {cpu['without']:.3f} |",
            flush=True,
        )
        print(f"<!-- {trick} runs: {runs} -->", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
