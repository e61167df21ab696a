"""How fast the audit sealer links entries into their chains (target: 2,000 entries/s).

    .venv/bin/python bench/audit_seal.py [--rows 50000] [--orgs 10] [--rounds 3]

Needs PostgreSQL on 127.0.0.1. Uses its own database (BENCH_AUDIT_SEAL_DATABASE_URL, default
warden_audit_seal_bench, dropped and created afresh), seeds ``--rows`` check rows spread over
``--orgs`` organisations (the row the check benchmark writes, inserted 1,000 per statement
as the group commit does), then seals them as the beat task does (``audit_seal``: batches of
WARDEN_AUDIT_SEAL_BATCH, a signed checkpoint per organisation) and prints entries/s, the CPU
of this process and of its PostgreSQL backend per entry. Each round seeds and seals again on
top of what is there, so a later round shows whether the cost grows with history. Finally
``verify`` reads one organisation's chain back (entries/s).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import database_prepare

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATABASE_URL = os.environ.get(
    "BENCH_AUDIT_SEAL_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/warden_audit_seal_bench"
)


def backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--orgs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    os.environ.update(
        {
            "DATABASE_URL": DATABASE_URL,
            "DJANGO_SETTINGS_MODULE": "wardenproject.settings.base",
            "DEBUG": "false",
            "SECRET_KEY": "bench-only-secret-key-not-for-production",
            "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
            # A fixed key (bytes 0..31): the bench signs checkpoints as production does.
            "WARDEN_AUDIT_SIGNING_KEYS": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        }
    )
    database_prepare(DATABASE_URL, fresh=True)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    from accounts.models import Organization, Plan
    from audit.models import AuditEntry
    from audit.selectors import audit_chain_verify
    from audit.services import audit_seal
    from wardenproject.db import rows_insert
    from wardenproject.ids import public_id

    plan = Plan.objects.get(slug="enterprise")
    orgs = [Organization.objects.create(name=f"Bench {n}", plan=plan) for n in range(args.orgs)]

    def seed(count: int) -> None:
        rows = []
        for n in range(count):
            rows.append(
                AuditEntry(
                    public_id=public_id("act"),
                    organization=orgs[n % len(orgs)],
                    kind=AuditEntry.Kind.CHECK,
                    created_at=timezone.now(),
                    actor_label="key wk_live_ab… (bench)",
                    agent_public_id="agt_bench",
                    action="stripe.refund",
                    arguments={"amount": 42, "customer": {"tier": "vip"}},
                    environment="live",
                    session_id="bench",
                    decision="allow",
                    status="allowed",
                    rule_name="refund limit",
                    reason="amount 42 is within max_amount 100 of rule 'refund limit'",
                    latency_us=850,
                    source="native",
                )
            )
            if len(rows) == 1000:
                rows_insert(rows)
                rows = []
        if rows:
            rows_insert(rows)

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    print(
        f"{args.rows:,} rows per round over {args.orgs} organisations, "
        f"WARDEN_AUDIT_SEAL_BATCH={os.environ.get('WARDEN_AUDIT_SEAL_BATCH', '5000')}"
    )
    print("| round | history before | entries/s | process CPU / entry | PostgreSQL CPU / entry |")
    print("|---|---|---|---|---|")
    for round_number in range(1, args.rounds + 1):
        history = AuditEntry.objects.count()
        seed(args.rows)
        sealed = 0
        cpu0, pg0, wall0 = time.process_time(), backend_cpu(backend), time.perf_counter()
        while True:
            result = audit_seal(max_batches=1_000_000)
            sealed += result.sealed
            if result.sealed == 0:
                break
        wall = time.perf_counter() - wall0
        cpu, pg = time.process_time() - cpu0, backend_cpu(backend) - pg0
        assert sealed == args.rows, (sealed, args.rows)
        print(
            f"| {round_number} | {history:,} | {sealed / wall:,.0f} | "
            f"{cpu / sealed * 1e6:,.0f} µs | {pg / sealed * 1e6:,.0f} µs |"
        )
    started = time.perf_counter()
    report = audit_chain_verify(organization=orgs[0])
    took = time.perf_counter() - started
    assert report.ok, report.problem
    print(f"verify: {report.entries:,} entries of one organisation, {report.entries / took:,.0f}/s")


if __name__ == "__main__":
    main()
