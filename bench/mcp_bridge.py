"""Overhead of the stdio MCP bridge (``wardenpy mcp-proxy``) on an allowed ``tools/call``.

Starts gunicorn (gthread) on PostgreSQL + Redis with an agent whose policy allows
``mcp.files.read_file``, then, in one run, times ``tools/call read_file`` from the official
MCP SDK's stdio client (one session each, warm):

- direct: the client launches ``tests/sdk/mcp_files_server.py`` itself;
- bridged: the client launches ``python -m wardenpy mcp-proxy --server files -- python
  tests/sdk/mcp_files_server.py`` (a Warden check before each call, the outcome reported
  in the background).

Calls alternate between the two sessions so both see the same machine. The overhead is
bridged minus direct at each percentile. Run by hand (PostgreSQL on 127.0.0.1:5432, Redis on
127.0.0.1:6379):

    .venv/bin/python bench/mcp_bridge.py --calls 500
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import database_fresh_migrated, free_port, start_gunicorn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SERVER_SCRIPT = ROOT / "tests" / "sdk" / "mcp_files_server.py"


def seed() -> str:
    """An Enterprise org (no rate limit), an agent allowed to read files; its test key."""
    from accounts.models import Organization, Plan
    from agents.services import agent_create, api_key_create, rule_create

    org = Organization.objects.create(name="Bench", plan=Plan.objects.get(slug="enterprise"))
    agent = agent_create(organization=org, actor=None, name="desktop-bench")
    rule_create(
        organization=org,
        agent=agent,
        data={"name": "reads", "action": "mcp.files.read_file", "effect": "allow"},
        actor=None,
    )
    _key, raw = api_key_create(
        organization=org, kind="agent", agent=agent, environment="test", actor=None
    )
    return raw


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def measure(calls: int, base: str, key: str, calls_file: str) -> dict[str, list[float]]:
    from contextlib import AsyncExitStack

    from mcp import ClientSession, StdioServerParameters, stdio_client

    import wardenpy

    env = {
        "WARDEN_API_URL": base,
        "WARDEN_API_KEY": key,
        "MCP_CALLS_FILE": calls_file,
        "PYTHONPATH": str(Path(wardenpy.__file__).resolve().parent.parent),
    }
    server = [sys.executable, str(SERVER_SCRIPT)]
    commands = {
        "direct": server,
        "bridged": [sys.executable, "-m", "wardenpy", "mcp-proxy", "--server", "files",
                    "--log-level", "WARNING", "--", *server],
    }  # fmt: skip
    results: dict[str, list[float]] = {name: [] for name in commands}
    async with AsyncExitStack() as stack:
        sessions = {}
        for name, command in commands.items():
            params = StdioServerParameters(command=command[0], args=command[1:], env=env)
            read, write = await stack.enter_async_context(stdio_client(params))
            session = await stack.enter_async_context(ClientSession(read, write))
            await session.initialize()
            for _ in range(20):  # warm-up: imports, connections, Warden's caches
                await session.call_tool("read_file", {"path": "/warm"})
            sessions[name] = session
        for n in range(calls):
            for name, session in sessions.items():
                started = time.perf_counter()
                result = await session.call_tool("read_file", {"path": f"/bench/{n}"})
                results[name].append((time.perf_counter() - started) * 1000)
                assert not result.is_error, result
            if n % 50 == 0:
                print(f"call {n}/{calls}", end="\r", file=sys.stderr, flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/warden_mcp_bridge_bench"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/7")
    args = parser.parse_args()

    env = {
        **os.environ,
        "DEBUG": "true",
        "DJANGO_SETTINGS_MODULE": "wardenproject.settings.base",
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    load_before = os.getloadavg()
    database_fresh_migrated(args.database_url)
    import django

    django.setup()
    from django.db import connection

    key = seed()
    connection.close()

    port = free_port()
    gunicorn = start_gunicorn(port=port, workers=args.workers, threads=args.threads, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                requests.get(f"{base}/healthz", timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.2)
        with tempfile.NamedTemporaryFile(suffix=".jsonl") as calls_file:
            results = asyncio.run(measure(args.calls, base, key, calls_file.name))
    finally:
        os.killpg(gunicorn.pid, signal.SIGTERM)
        gunicorn.wait(20)

    print(f"gunicorn gthread {args.workers}x{args.threads}, PostgreSQL + Redis")
    print(
        f"machine: {platform.platform()}, nproc={os.cpu_count()}, "
        f"Python {platform.python_version()}"
    )
    print(f"load average before/after: {load_before} / {os.getloadavg()}")
    print(f"tools/call read_file, {args.calls} calls each, alternating (ms):")
    for name, values in results.items():
        print(
            f"  {name:8s} p50 {percentile(values, 50):7.2f}  p90 {percentile(values, 90):7.2f}  "
            f"p99 {percentile(values, 99):7.2f}  mean {statistics.fmean(values):7.2f}"
        )
    for p in (50, 90, 99):
        overhead = percentile(results["bridged"], p) - percentile(results["direct"], p)
        print(f"  overhead p{p}: {overhead:+.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
