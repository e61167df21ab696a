"""CPU and statements per decision through the API, inside one process (no HTTP server).

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/warden_decision_bench \\
    .venv/bin/python bench/decision_inprocess.py [--decisions 300] [--profile]

Drops and recreates its database, seeds decision_burst.py's organisation (the check
benchmark's agent, 20 rules, an approver key whose member votes), holds ``--decisions`` calls
through ``POST /api/v1/check``, then approves them one by one through
``POST /api/v1/actions/{id}/approve``, calling the WSGI application directly. Reports the web
process's CPU and wall time per decision and the SQL statements each one sends (PostgreSQL's
own CPU is not included). ``--profile`` prints the top of a cProfile of the decisions.
Without REDIS_URL the wake-ups and tasks queued on commit go to the filesystem broker.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import io
import json
import os
import pstats
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_load import env
from decision_burst import HELD_BODY, SEED
from servers import database_prepare

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/warden_decision_bench"
)


def call(application, path: str, key: str, body: bytes = b"{}") -> dict:
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8765",
        "HTTP_HOST": "127.0.0.1:8765",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_X_API_KEY": key,
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    statuses: list[str] = []

    def start_response(status, headers, exc_info=None):
        statuses.append(status)

    answer = b"".join(application(environ, start_response))
    if not statuses[0].startswith("200"):
        raise SystemExit(f"{path}: {statuses[0]} {answer[:300]!r}")
    return json.loads(answer)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--decisions", type=int, default=300)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    os.environ.update(env() | {"DATABASE_URL": DATABASE_URL})
    database_prepare(DATABASE_URL, fresh=True)
    import django

    django.setup()
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application
    from django.db import connection

    call_command("migrate", verbosity=0)
    out = io.StringIO()
    real_stdout, sys.stdout = sys.stdout, out
    try:
        exec(SEED, {})  # noqa: S102 - the benchmark's own seed script
    finally:
        sys.stdout = real_stdout
    keys = json.loads(re.search(r"SEED=(.*)", out.getvalue()).group(1))["A"]
    application = get_wsgi_application()
    ids = [
        call(application, "/api/v1/check", keys["agent"], HELD_BODY.encode())["action_id"]
        for _ in range(args.decisions + 20)
    ]
    for action_id in ids[:20]:  # warm caches and the connection
        call(application, f"/api/v1/actions/{action_id}/approve", keys["approver"])
    ids = ids[20:]

    statements: list[str] = []

    def count(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    profiler = cProfile.Profile(time.process_time) if args.profile else None
    cpu, wall = time.process_time(), time.perf_counter()
    with connection.execute_wrapper(count):
        if profiler:
            profiler.enable()
        for action_id in ids:
            call(application, f"/api/v1/actions/{action_id}/approve", keys["approver"])
        if profiler:
            profiler.disable()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    n = len(ids)
    print(
        f"POST /api/v1/actions/{{id}}/approve: {cpu / n * 1e3:.2f} ms CPU, "
        f"{wall / n * 1e3:.2f} ms wall, {len(statements) / n:.1f} statements per decision "
        f"({n} decisions)"
    )
    one = len(statements) // n
    print("statements of the last decision:")
    for sql in statements[-one:]:
        print("  " + sql[:160])
    kinds = collections.Counter(re.sub(r'"[^"]*"\."[^"]*"', "", s)[:40] for s in statements)
    print("most frequent statement starts:", kinds.most_common(8))
    if profiler:
        stats = pstats.Stats(profiler).sort_stats("cumulative")
        stats.print_stats(120)
        stats.sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()
