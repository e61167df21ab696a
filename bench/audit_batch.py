"""CPU per audit row by group-commit batch size: the web process's and PostgreSQL's.

    .venv/bin/python bench/audit_batch.py [--rows 4000] [--sizes 1,2,4,8,16]

Writes check rows (the same row the check benchmark writes) with ``rows_insert``, one
autocommitted multi-row INSERT per batch as ``audit/writer.py`` does, into the check
benchmark's database (BENCH_DATABASE_URL, seeded if needed), and reports for each batch size
the CPU per row of this process and of its PostgreSQL backend (from /proc), and the wall
time per INSERT. One connection, no concurrency: what a batch's size alone changes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_load import seeded_in_process

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--sizes", default="1,2,4,8,16")
    args = parser.parse_args()

    seeded_in_process()
    from django.db import connection
    from django.utils import timezone

    from agents.models import Agent, ApiKey
    from audit.models import AuditEntry
    from wardenproject.db import rows_insert
    from wardenproject.ids import public_id

    agent = Agent.objects.select_related("organization").get(name="bench-bot")
    key = ApiKey.objects.filter(agent=agent).first()

    def entry() -> AuditEntry:
        return AuditEntry(
            public_id=public_id("act"),
            organization=agent.organization,
            kind=AuditEntry.Kind.CHECK,
            created_at=timezone.now(),
            actor_key=key,
            actor_label="bench",
            agent=agent,
            agent_public_id=agent.public_id,
            action="stripe.refund",
            arguments={"amount": 42, "customer": {"tier": "vip"}},
            environment="live",
            session_id="bench",
            decision="allow",
            status="allowed",
            reason="amount 42 is within max_amount 100 of rule 'refund limit'",
            source="native",
        )

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    print("| rows per INSERT | web process CPU / row | PostgreSQL CPU / row | wall per INSERT |")
    print("|---|---|---|---|")
    for size in [int(s) for s in args.sizes.split(",")]:
        batches = [[entry() for _ in range(size)] for _ in range(max(args.rows // size, 10))]
        for batch in batches[:5]:  # warm: prepared statement, psycopg's cached conversion
            rows_insert(batch)
        batches = batches[5:]
        pg, cpu, wall = backend_cpu(backend), time.process_time(), time.perf_counter()
        for batch in batches:
            rows_insert(batch)
        pg, cpu = backend_cpu(backend) - pg, time.process_time() - cpu
        wall = time.perf_counter() - wall
        rows = len(batches) * size
        print(
            f"| {size} | {cpu / rows * 1e6:.0f} µs | {pg / rows * 1e6:.0f} µs "
            f"| {wall / len(batches) * 1e6:.0f} µs |"
        )


if __name__ == "__main__":
    main()
