"""The processes Warden runs: `make run`'s supervisor (scripts/run_all.py), the worker's and
beat's logs, gunicorn's control socket, and the production process definitions."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from agents.models import Agent
from approvals.models import ApprovalRequest
from tests.approvals.conftest import request_create
from tests.live import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]


class Output:
    """A child process's stdout, read line by line in a thread."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        with self._lock:
            return "\n".join(self.lines)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def children(parent: int) -> dict[str, int]:
    """The supervisor's live children by role: web (the dashboard, the API and the MCP gateway:
    ``warden_mcp serve --dashboard``), worker and beat (celery)."""
    found = {}
    out = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True).stdout
    for pid in map(int, out.split()):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        words = {Path(arg.decode()).name for arg in argv}
        if "warden_mcp" in words and "--dashboard" in words:
            found["web"] = pid
        elif "worker" in words or "beat" in words:
            found["worker" if "worker" in words else "beat"] = pid
    return found


@pytest.fixture
def make_run(tmp_path) -> Iterator[tuple[subprocess.Popen, Output, set[int]]]:
    """scripts/run_all.py on the embedded default (SQLite and the filesystem broker in a
    temporary folder), on a free port."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(
        {
            "DEBUG": "true",
            "DJANGO_SETTINGS_MODULE": "wardenproject.settings.base",
            "PORT": str(free_port()),
            "WARDEN_VAR_DIR": str(tmp_path / "var"),
            "WEB_CONCURRENCY": "1",
            "WEB_THREADS": "4",
            "CELERY_CONCURRENCY": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "run_all.py")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = Output(process)
    started: set[int] = set()
    try:
        yield process, output, started
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        for pid in started:
            if alive(pid):
                os.killpg(pid, signal.SIGKILL)


@pytest.mark.live
def test_make_run_restarts_a_child_that_dies_and_ctrl_c_stops_all(make_run):
    process, output, started = make_run

    def running() -> dict[str, int] | None:
        if process.poll() is not None:
            pytest.fail(f"make run exited with {process.returncode}:\n{output.text()[-4000:]}")
        found = children(process.pid)
        started.update(found.values())
        return found if len(found) == 3 and "Warden is running" in output.text() else None

    first = wait_until(running, timeout=180, what="make run to start web, worker and beat")
    os.killpg(first["worker"], signal.SIGKILL)  # as the kernel's OOM killer would

    restarted = wait_until(
        lambda: (found := running()) and found["worker"] != first["worker"] and found,
        timeout=60,
        what="a new worker",
    )
    assert (restarted["web"], restarted["beat"]) == (first["web"], first["beat"])

    process.send_signal(signal.SIGINT)  # Ctrl-C
    assert process.wait(60) == 0
    assert not [pid for pid in started if alive(pid)]


@pytest.mark.postgres
@pytest.mark.live
def test_the_housekeeping_tasks_do_not_flood_the_worker_and_beat_log(celery_worker, org_a):
    """Beat sends approvals.expire_overdue every 2 s and webhooks.sweep every 5 s; at INFO
    each added three lines ("Sending due task", "received", "succeeded")."""
    overdue = request_create(Agent.objects.create(organization=org_a, name="refund-bot"))
    ApprovalRequest.objects.filter(pk=overdue.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    wait_until(  # beat sent the housekeeping task and the worker ran it
        lambda: ApprovalRequest.objects.get(pk=overdue.pk).status == "expired",
        timeout=60,
        what="the overdue request to be expired by the scheduled task",
    )
    log = celery_worker.log()
    assert " ready." in log  # the worker still logs at INFO
    assert "Sending due task" not in log
    assert "approvals.expire_overdue[" not in log


def start_gunicorn(tmp_path: Path, **env: str) -> subprocess.Popen:
    """gunicorn with the project's config (tests/core/pid_app), its home directory in
    ``tmp_path``; returns once it answers."""
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    environ.update({"HOME": str(tmp_path), "PYTHONPATH": str(ROOT), **env})
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "-c",
            str(ROOT / "gunicorn.conf.py"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "tests.core.pid_app:application",
        ],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )

    def answers() -> bool:
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
                return sock.recv(16).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    wait_until(answers, timeout=60, what="gunicorn to answer")
    return process


def stop_gunicorn(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(30)


@pytest.mark.live
def test_gunicorn_opens_no_control_socket_in_a_shared_default_path(tmp_path):
    """gunicorn 25+ opens one for `gunicornc` at $HOME/.gunicorn/gunicorn.ctl (or under
    $XDG_RUNTIME_DIR), the same path for every server the user runs."""
    process = start_gunicorn(tmp_path)
    try:
        assert not (tmp_path / ".gunicorn").exists()
    finally:
        stop_gunicorn(process)


@pytest.mark.live
def test_gunicorn_opens_its_control_socket_where_gunicorn_control_socket_says(tmp_path):
    path = tmp_path / "var" / "gunicorn.ctl"
    process = start_gunicorn(tmp_path, GUNICORN_CONTROL_SOCKET=str(path))
    try:
        wait_until(path.is_socket, timeout=30, what="the control socket")
        assert not (tmp_path / ".gunicorn").exists()
    finally:
        stop_gunicorn(process)


UNITS = (
    "warden-web.service",
    "warden-check.service",
    "warden-worker.service",
    "warden-mail-worker.service",
    "warden-beat.service",
    "warden-mcp.service",
)


def unit_settings(unit: str) -> list[str]:
    text = (ROOT / "deploy" / "systemd" / unit).read_text()
    return [line.strip() for line in text.replace("\\\n", " ").splitlines()]


@pytest.mark.parametrize("unit", UNITS)
def test_the_systemd_unit_restarts_always_and_reads_one_environment_file(unit):
    lines = unit_settings(unit)
    assert "Restart=always" in lines
    assert "EnvironmentFile=/etc/warden/warden.env" in lines
    assert "User=warden" in lines
    assert "ProtectSystem=strict" in lines
    assert "NoNewPrivileges=yes" in lines


def test_the_workers_yield_the_cpu_to_the_web_server():
    """On a shared host the checks come first: the Celery workers run at a lower CPU priority
    (niceness and cgroup weight) than the web server, which keeps the defaults."""

    def priority(unit: str) -> tuple[int, int]:
        lines = unit_settings(unit)
        nice = [int(line.split("=", 1)[1]) for line in lines if line.startswith("Nice=")]
        weight = [int(line.split("=", 1)[1]) for line in lines if line.startswith("CPUWeight=")]
        return (nice or [0])[-1], (weight or [100])[-1]

    web_nice, web_weight = priority("warden-web.service")
    assert priority("warden-check.service") == (web_nice, web_weight)
    for worker in ("warden-worker.service", "warden-mail-worker.service"):
        nice, weight = priority(worker)
        assert nice > web_nice and weight < web_weight, (worker, nice, weight)


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_accepts_the_unit_and_rates_it_ok(unit, tmp_path):
    """``systemd-analyze verify`` (syntax, and that the command exists: the units are
    pointed at this checkout) and ``systemd-analyze security`` (exposure at most 2.0)."""
    if not shutil.which("systemd-analyze"):
        pytest.skip("needs systemd-analyze (Debian's systemd package)")
    text = (ROOT / "deploy" / "systemd" / unit).read_text()
    (tmp_path / "warden.env").write_text("")
    local = tmp_path / unit
    local.write_text(
        text.replace("/opt/warden", str(ROOT)).replace(
            "/etc/warden/warden.env", str(tmp_path / "warden.env")
        )
    )
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(local)], capture_output=True, text=True, timeout=60
    )
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(local)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    exposure = re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout)
    assert exposure, security.stdout + security.stderr
    assert float(exposure.group(1)) <= 2.0
