"""What the benchmarks share: their PostgreSQL database, the gunicorn they measure, and
Celery workers with their broker."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _psql(sql: str) -> str:
    return subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-tAqc", sql],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def database_prepare(database_url: str, *, fresh: bool) -> None:
    """Create the URL's database on 127.0.0.1 if missing (dropped first when ``fresh``)."""
    name = database_url.rsplit("/", 1)[1].split("?")[0]
    if not name.replace("_", "").isalnum():
        raise SystemExit(f"unexpected database name {name!r}")
    if fresh:
        _psql(f"DROP DATABASE IF EXISTS {name}")
    if not _psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'"):  # noqa: S608
        _psql(f"CREATE DATABASE {name}")


def database_fresh_migrated(database_url: str) -> None:
    """Drop and recreate the URL's database, then apply the migrations (``manage.py migrate``
    in a child process, which reads DATABASE_URL from the environment)."""
    database_prepare(database_url, fresh=True)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, check=True
    )


def wait_ready(port: int, *, tries: int = 100) -> None:
    """Wait until 127.0.0.1:port answers /healthz, at most ``tries`` tenths of a second."""
    for _ in range(tries):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(
    *,
    port: int,
    workers: int,
    threads: int,
    env: dict[str, str],
    app: str = "wardenproject.wsgi",
    extra: tuple[str, ...] = (),
    nice: int = 0,
) -> subprocess.Popen:
    """gunicorn -c gunicorn.conf.py (gthread, gc.freeze) on 127.0.0.1:port, in its own session;
    ``extra`` command-line options override the configuration file's; ``nice``: run it at
    that niceness."""
    return subprocess.Popen(
        [
            *(["nice", "-n", str(nice)] if nice else []),
            str(Path(sys.executable).parent / "gunicorn"),
            "-c",
            str(ROOT / "gunicorn.conf.py"),
            app,
            *extra,
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process (all its threads), from /proc; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_role(groups: dict[str, set[int]]) -> dict[str, float]:
    """CPU seconds so far of each group of processes (with their children), of PostgreSQL (every
    backend) and of Redis. Processes that have exited no longer count."""
    totals = {**dict.fromkeys(groups, 0.0), "postgres": 0.0, "redis": 0.0}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        pid = int(entry.name)
        role = next((name for name, pids in groups.items() if pid in pids or ppid in pids), None)
        if role is None and comm.startswith("postgres"):
            role = "postgres"
        elif role is None and comm.startswith("redis-server"):
            role = "redis"
        if role is not None:
            totals[role] += cpu_seconds(pid)
    return totals


def cpu_report(before: dict[str, float], after: dict[str, float], count: int, unit: str) -> str:
    """CPU milliseconds per ``unit`` by role."""
    parts = [f"{role} {(after[role] - before[role]) / count * 1000:.3f}" for role in before]
    return f"CPU ms per {unit}: " + ", ".join(parts)


def start_worker(queues: str | None, concurrency: int, log: Path, beat: bool) -> subprocess.Popen:
    """A Celery worker (threads pool; ``-Q queues`` unless None; the embedded beat if
    ``beat``) with this process's environment, in its own session; returns once it is ready."""
    command = [
        sys.executable, "-m", "celery", "-A", "wardenproject", "worker",
        "--pool", "threads", "--concurrency", str(concurrency), "--loglevel", "INFO",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
        "-n", f"bench-{log.stem}@%h",
    ]  # fmt: skip
    if queues:
        command += ["-Q", queues]
    if beat:
        command += ["-B", "-s", str(log.with_suffix(".beat"))]
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        env=os.environ.copy(),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    for _ in range(600):
        if b" ready." in log.read_bytes():
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise SystemExit(f"worker did not start: {log.read_text()[-2000:]}")


def purge() -> int:
    """Empty this broker's queues (the bench's Redis database): tasks left by an earlier run
    would run against this run's rows, whose ids start again from 1."""
    from wardenproject.celery import app

    return app.control.purge()
