#!/usr/bin/env python
"""`make run`: migrate, seed the demo organisation, and run web + worker + mail worker + beat.

Ctrl-C (or SIGTERM) stops them all. Works on the embedded default (SQLite, filesystem
broker) and on PostgreSQL/Redis when DATABASE_URL/REDIS_URL are set.
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


def main() -> int:
    port = os.environ.get("PORT", "8000")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wardenproject.settings.base")
    os.environ.setdefault("WARDEN_BASE_URL", f"http://127.0.0.1:{port}")
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
    threads = os.environ.get("WEB_THREADS", "64")
    commands = {
        "web": [
            str(BIN / "gunicorn"),
            "-c",
            str(ROOT / "gunicorn.conf.py"),
            "wardenproject.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            os.environ.get("WEB_CONCURRENCY", "2"),
            "--threads",
            threads,
            "--access-logfile",
            "-",
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
        # Mail has its own queue and worker: a slow mail server never delays a webhook.
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
            "mail",
            "-n",
            "mail@%h",
        ],
        "beat": [str(BIN / "celery"), "-A", "wardenproject", "beat", "--loglevel", "INFO"],
    }
    # Each child in its own process group: Ctrl-C reaches only this script, which then sends
    # every child exactly one SIGTERM (a second signal mid-shutdown can wedge a gunicorn
    # gthread worker) and, past the grace period, kills the child's whole group.
    procs = {
        name: subprocess.Popen(cmd, cwd=ROOT, start_new_session=True)
        for name, cmd in commands.items()
    }
    time.sleep(1.5)
    user = seeded.get("user", {})
    agent = seeded.get("agent") or {}
    print(
        "\n"
        f"  Warden is running at http://127.0.0.1:{port}/\n"
        f"  Log in as {user.get('email')} with password {user.get('password') or DEMO_PASSWORD}\n"
        + (f"  Demo agent test key: {agent.get('test_key')}\n" if agent.get("test_key") else "")
        + "  Web, worker, mail worker and beat are running; press Ctrl-C to stop them all.\n",
        flush=True,
    )

    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    exit_code = 0
    while not stopping:
        for name, proc in procs.items():
            if proc.poll() is not None:
                print(f"{name} exited with {proc.returncode}; stopping the others.", flush=True)
                exit_code = proc.returncode or 1
                stopping = True
        time.sleep(0.5)
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for proc in procs.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the group: no orphaned worker survives
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
