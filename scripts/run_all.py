#!/usr/bin/env python
"""`make run`: migrate, seed the demo organisation, and run web + worker + mail worker (queues mail
and slack) + beat.
The web process serves the dashboard, the API and the MCP gateway (/mcp/{name}) on one
origin, PORT (``warden_mcp serve --dashboard``: uvicorn, the gateway on its event loop and
Django in a pool of WEB_THREADS threads).

A child that exits on its own is started again (with backoff); Ctrl-C (or SIGTERM) stops
them all. Works on the embedded default (SQLite, filesystem broker) and on PostgreSQL/Redis
when DATABASE_URL/REDIS_URL are set. In production, systemd does this supervision
(deploy/systemd/).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEMO_ORG = os.environ.get("WARDEN_DEMO_ORG", "Demo")
DEMO_EMAIL = os.environ.get("WARDEN_DEMO_EMAIL", "demo@example.com")
DEMO_PASSWORD = os.environ.get("WARDEN_DEMO_PASSWORD", "warden-demo-password")


def manage(*args: str, capture: bool = False) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        check=True,
        text=True,
        stdout=subprocess.PIPE if capture else None,
    )
    return result.stdout or ""


# A child that exits is started again after a pause that doubles with each exit in a row
# (1, 2, 4 ... 30 s); one that ran for STABLE_SECONDS starts the count afresh.
BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0
STABLE_SECONDS = 60.0


class Child:
    """One supervised process (web, worker, mail worker or beat), in a process group of its
    own.

    Ctrl-C reaches only this script, which then sends every child exactly one SIGTERM (a
    second signal mid-shutdown can wedge a gunicorn gthread worker) and, past the grace
    period, kills the child's whole group, so no orphaned worker survives.
    """

    def __init__(self, name: str, command: list[str]) -> None:
        self.name = name
        self.command = command
        self.process: subprocess.Popen | None = None
        self.started_at = 0.0
        self.exits_in_a_row = 0
        self.restart_at: float | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, cwd=ROOT, start_new_session=True)
        self.started_at = time.monotonic()
        self.restart_at = None
        print(f"{self.name} started (pid {self.process.pid})", flush=True)

    def supervise(self) -> None:
        """Restart the child, with backoff, if it has exited."""
        now = time.monotonic()
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.start()
            return
        if self.process is None or self.process.poll() is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # whatever it left behind
        if now - self.started_at >= STABLE_SECONDS:
            self.exits_in_a_row = 0
        delay = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2**self.exits_in_a_row)
        self.exits_in_a_row += 1
        self.restart_at = now + delay
        print(
            f"{self.name} exited with {self.process.returncode}; restarting it in {delay:.0f} s",
            flush=True,
        )

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def reap(self, deadline: float) -> None:
        if self.process is None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def main() -> int:
    port = os.environ.get("PORT", "8000")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wardenproject.settings.base")
    os.environ.setdefault("WARDEN_BASE_URL", f"http://127.0.0.1:{port}")
    # Self-hosted: the owner changes the plan on the plan page (a hosted service leaves this
    # off, and its operator changes plans with `manage.py warden_org set-plan`).
    os.environ.setdefault("WARDEN_SELF_SERVE_PLANS", "true")
    manage("migrate", "--noinput", "-v", "0")
    manage("collectstatic", "--noinput", "-v", "0")
    seeded = json.loads(
        manage(
            "warden_bootstrap",
            "--org",
            DEMO_ORG,
            "--email",
            DEMO_EMAIL,
            "--password",
            DEMO_PASSWORD,
            "--plan",
            "business",
            "--agent",
            "demo-agent",
            "--json",
            capture=True,
        )
    )
    marker = Path(os.environ.get("WARDEN_VAR_DIR", ROOT / "var")) / ".demo-policy-imported"
    if not marker.exists():
        # First run only: later runs keep whatever the demo user changed.
        manage(
            "warden_policy",
            "import",
            str(ROOT / "scripts" / "demo-policy.yaml"),
            "--org",
            seeded["org"]["id"],
        )
        marker.touch()
    commands = {
        # One origin: the dashboard and the API (Django, in a pool of WEB_THREADS threads) and
        # the MCP gateway (/mcp/{name}: a held tool call waits on the event loop, never in
        # one of those threads). Production runs gunicorn, and the gateway behind a proxy
        # route under the same origin (README: "MCP gateway").
        "web": [
            sys.executable,
            "manage.py",
            "warden_mcp",
            "serve",
            "--dashboard",
            "--host",
            "127.0.0.1",
            "--port",
            port,
            "--threads",
            os.environ.get("WEB_THREADS", "64"),
        ],
        "worker": [
            str(BIN / "celery"),
            "-A",
            "wardenproject",
            "worker",
            "--loglevel",
            "INFO",
            "--pool",
            "threads",
            "--concurrency",
            os.environ.get("CELERY_CONCURRENCY", "4"),
            "-Q",
            "celery",
            "-n",
            "worker@%h",
        ],
        # Mail and Slack have queues of their own, consumed by this worker: a slow mail server
        # or a rate-limiting Slack never delays a webhook or an expiry.
        "mail": [
            str(BIN / "celery"),
            "-A",
            "wardenproject",
            "worker",
            "--loglevel",
            "INFO",
            "--pool",
            "threads",
            "--concurrency",
            os.environ.get("CELERY_MAIL_CONCURRENCY", "4"),
            "-Q",
            "mail,slack",
            "-n",
            "mail@%h",
        ],
        "beat": [str(BIN / "celery"), "-A", "wardenproject", "beat", "--loglevel", "INFO"],
    }
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    children = [Child(name, command) for name, command in commands.items()]
    for child in children:
        child.start()
    time.sleep(1.5)
    user = seeded.get("user", {})
    agent = seeded.get("agent") or {}
    print(
        "\n"
        f"  Warden is running at http://127.0.0.1:{port}/\n"
        f"  Log in as {user.get('email')} with password {user.get('password') or DEMO_PASSWORD}\n"
        + (f"  Demo agent test key: {agent.get('test_key')}\n" if agent.get("test_key") else "")
        + f"  MCP gateway: http://127.0.0.1:{port}/mcp/{{name}}\n"
        + "  Web (dashboard, API and MCP gateway), worker, mail worker and beat are running"
        " (one that dies is restarted);"
        " press Ctrl-C to stop them all.\n",
        flush=True,
    )

    while not stopping:
        for child in children:
            child.supervise()
        time.sleep(0.2)
    for child in children:
        child.terminate()
    deadline = time.monotonic() + 15
    for child in children:
        child.reap(deadline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
