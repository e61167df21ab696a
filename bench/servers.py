"""What the benchmarks share: their PostgreSQL database and the gunicorn they measure."""

from __future__ import annotations

import subprocess
import sys
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


def start_gunicorn(
    *, port: int, workers: int, threads: int, env: dict[str, str]
) -> subprocess.Popen:
    """gunicorn -c gunicorn.conf.py (gthread, gc.freeze) on 127.0.0.1:port, in its own session."""
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "-c",
            str(ROOT / "gunicorn.conf.py"),
            "wardenproject.wsgi",
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
