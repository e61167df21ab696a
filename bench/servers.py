"""Starting the web server the benchmarks measure: gunicorn with the project's config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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
