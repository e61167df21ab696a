"""CPU per request of the check path inside one process: no HTTP server, no load generator.

    .venv/bin/python bench/check_inprocess.py [--requests 5000] [--profile] [--https]

Calls the project's WSGI application directly with a prepared environ (the same body and
key as bench/check_load.py, against the same PostgreSQL database, seeded if needed) and
reports process CPU per call for ``POST /api/v1/check`` and for ``GET /healthz``; the
difference between the two is what the check itself costs in the web process (PostgreSQL's
own CPU is not included). ``--profile`` prints the top of a cProfile of the check calls.
``--https`` sends the calls as HTTPS requests (as behind a TLS proxy), so the answers carry
HSTS (the benchmark runs with production settings: SECURE_HSTS_SECONDS of one year).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_load import BODY, seeded_in_process

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def wsgi_environ(method: str, path: str, body: bytes, key: str, scheme: str = "http") -> dict:
    return {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8765",
        "HTTP_HOST": "127.0.0.1:8765",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_AUTHORIZATION": f"Bearer {key}",
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": scheme,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def run(application, method: str, path: str, key: str, count: int, scheme: str = "http") -> float:
    """CPU seconds per call over ``count`` calls (each answer must be 200)."""
    body = BODY.encode() if method == "POST" else b""
    statuses: list[str] = []

    def start_response(status, headers, exc_info=None):
        statuses.append(status)

    cpu = time.process_time()
    for _ in range(count):
        for _chunk in application(wsgi_environ(method, path, body, key, scheme), start_response):
            pass
    spent = time.process_time() - cpu
    bad = [s for s in statuses if not s.startswith("200")]
    if bad:
        raise SystemExit(f"{path}: {len(bad)} answers were not 200, e.g. {bad[0]}")
    return spent / count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--https", action="store_true", help="calls as HTTPS (HSTS answers)")
    args = parser.parse_args()
    scheme = "https" if args.https else "http"

    key = seeded_in_process()

    from django.core.wsgi import get_wsgi_application

    application = get_wsgi_application()
    run(application, "POST", "/api/v1/check", key, 200, scheme)  # warm caches, connections
    run(application, "GET", "/healthz", key, 200, scheme)
    check = run(application, "POST", "/api/v1/check", key, args.requests, scheme)
    health = run(application, "GET", "/healthz", key, args.requests, scheme)
    print(f"POST /api/v1/check: {check * 1e6:.0f} µs CPU per call ({args.requests} calls)")
    print(f"GET /healthz:       {health * 1e6:.0f} µs CPU per call")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        run(application, "POST", "/api/v1/check", key, args.requests, scheme)
        profiler.disable()
        stats = pstats.Stats(profiler).sort_stats("cumulative")
        stats.print_stats(45)
        stats.sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()
