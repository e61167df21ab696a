"""Overhead of the MCP gateway on an allowed `tools/call`, against calling the upstream
directly in the same run. Target (issue 19): p50 within 5 ms, p99 within 20 ms.

Starts, as separate processes: an upstream MCP server (the SDK's ``MCPServer``, one ``echo``
tool, streamable HTTP, uvicorn) and the gateway (``manage.py warden_mcp serve``) on a fresh
PostgreSQL database (default ``warden_mcp_bench``; ``--database-url``), seeds an organisation
on the Enterprise plan (no rate limit) with an agent whose policy allows ``mcp.bench.echo``
(one allow rule, as a real policy would have), and registers the upstream. Then one SDK
client to each side calls ``echo`` alternately (direct, gateway, direct ...), after a warm-up,
and reports p50/p90/p99 of both and their difference, with the CPU time per call of the
client, the upstream and the gateway (from /proc, Linux). The gateway's check row, its outcome
row (recorded after the answer) and the policy evaluation are all inside the measured call.

    .venv/bin/python bench/mcp_overhead.py --calls 2000
    .venv/bin/python bench/mcp_overhead.py --calls 2000 --redis-url redis://127.0.0.1:6379/6
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
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
from servers import cpu_seconds, database_fresh_migrated, free_port  # noqa: E402


def serve_upstream(port: int) -> None:
    import uvicorn
    from mcp.server import MCPServer

    server = MCPServer("bench")

    @server.tool()
    def echo(text: str) -> str:
        """Say it back."""
        return text

    # The upstream stays the same whatever is installed (asyncio's loop, h11), so that only
    # the gateway's side changes between runs.
    uvicorn.run(
        server.streamable_http_app(),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        loop="asyncio",
        http="h11",
    )


def seed(upstream_url: str) -> str:
    from accounts.models import Organization, Plan
    from agents.mcp.services import mcp_server_create
    from agents.services import agent_create, api_key_create, rule_create

    org = Organization.objects.create(name="Bench", plan=Plan.objects.get(slug="enterprise"))
    agent = agent_create(organization=org, actor=None, name="bench-bot")
    rule_create(
        organization=org,
        agent=agent,
        data={"name": "echo ok", "action": "mcp.bench.*", "effect": "allow"},
        actor=None,
    )
    _key, raw = api_key_create(
        organization=org, kind="agent", agent=agent, environment="test", actor=None
    )
    mcp_server_create(
        organization=org, actor=None, name="bench", url=upstream_url, agents=[agent.name]
    )
    return raw


def wait_port(port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


def measure(
    direct_url: str, gateway_url: str, key: str, calls: int, warmup: int, pids: dict[str, int]
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Milliseconds of each call, by side; and the CPU milliseconds per measured call of the
    processes in ``pids`` (and of this client process), counted after the warm-up."""
    import anyio
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    def cpu_now() -> dict[str, float]:
        return {"client": time.process_time()} | {
            name: cpu_seconds(pid) for name, pid in pids.items()
        }

    async def main() -> tuple[dict[str, list[float]], dict[str, float]]:
        direct_http = create_mcp_http_client()
        gateway_http = create_mcp_http_client(headers={"authorization": f"Bearer {key}"})
        async with (
            direct_http,
            gateway_http,
            Client(streamable_http_client(direct_url, http_client=direct_http)) as direct,
            Client(streamable_http_client(gateway_url, http_client=gateway_http)) as gateway,
        ):
            times: dict[str, list[float]] = {"direct": [], "gateway": []}
            cpu_before: dict[str, float] = {}
            for n in range(warmup + calls):
                if n == warmup:
                    cpu_before = cpu_now()
                for name, client in (("direct", direct), ("gateway", gateway)):
                    started = time.perf_counter()
                    result = await client.call_tool("echo", {"text": f"call {n}"})
                    elapsed = (time.perf_counter() - started) * 1000
                    if result.is_error:
                        raise SystemExit(f"{name} call failed: {result.content}")
                    if n >= warmup:
                        times[name].append(elapsed)
            cpu_after = cpu_now()
            cpu = {name: (cpu_after[name] - cpu_before[name]) / calls * 1000 for name in cpu_after}
            return times, cpu

    return anyio.run(main)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/warden_mcp_bench"
    )
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)  # the child's role
    args = parser.parse_args()
    if args.upstream:
        serve_upstream(args.upstream)
        return

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "wardenproject.settings.base",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-secret-key-not-for-production"),
        "DATABASE_URL": args.database_url,
        "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend",
        "WARDEN_WEBHOOKS_ALLOW_PRIVATE": "true",
        "WARDEN_WEBHOOKS_ALLOW_HTTP": "true",
    }
    if args.redis_url:
        env["REDIS_URL"] = args.redis_url
    else:
        env.pop("REDIS_URL", None)
    os.environ.update(env)
    database_fresh_migrated(args.database_url)
    import django

    django.setup()

    upstream_port, gateway_port = free_port(), free_port()
    upstream_url = f"http://127.0.0.1:{upstream_port}/mcp"
    children = [
        subprocess.Popen(
            [sys.executable, __file__, "--upstream", str(upstream_port)], cwd=ROOT, env=env
        ),
    ]
    try:
        wait_port(upstream_port)
        key = seed(upstream_url)
        children.append(
            subprocess.Popen(
                [sys.executable, "manage.py", "warden_mcp", "serve", "--port", str(gateway_port)],
                cwd=ROOT,
                env=env,
            )
        )
        wait_port(gateway_port)
        times, cpu = measure(
            upstream_url,
            f"http://127.0.0.1:{gateway_port}/mcp/bench",
            key,
            args.calls,
            args.warmup,
            {"upstream": children[0].pid, "gateway": children[1].pid},
        )
    finally:
        for child in children:
            child.terminate()
            child.wait(10)

    load = os.getloadavg()
    print(
        f"machine: {platform.node()} {os.cpu_count()} CPUs, load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; database "
        f"{args.database_url.rsplit('/', 1)[1]}; redis {'on' if args.redis_url else 'off'}"
    )
    print(f"{args.calls} calls each (after {args.warmup} warm-up), alternating")
    print(f"{'':10}{'p50':>9}{'p90':>9}{'p99':>9}{'mean':>9}  ms")
    rows = {}
    for name in ("direct", "gateway"):
        values = times[name]
        rows[name] = [pct(values, 50), pct(values, 90), pct(values, 99), statistics.mean(values)]
        print(f"{name:10}" + "".join(f"{v:9.2f}" for v in rows[name]))
    overhead = [g - d for g, d in zip(rows["gateway"], rows["direct"], strict=True)]
    print(f"{'overhead':10}" + "".join(f"{v:9.2f}" for v in overhead))
    verdict = overhead[0] <= 5 and overhead[2] <= 20
    print(
        "CPU ms per measured call pair (one direct and one gateway call; the upstream serves "
        "both): " + ", ".join(f"{name} {value:.3f}" for name, value in cpu.items())
    )
    print(f"target p50 <= 5 ms and p99 <= 20 ms: {'met' if verdict else 'NOT met'}")


if __name__ == "__main__":
    main()
