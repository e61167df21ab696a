"""The web server's worker (wardenproject/gunicorn_worker.py): real gunicorn processes with
the project's gunicorn.conf.py, and keep-alive connections like the SDKs'."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.live import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]


def start_gunicorn(workers: int, threads: int) -> tuple[subprocess.Popen, int]:
    """gunicorn with the project's config serving tests/core/pid_app; (process, port)."""
    port = free_port()
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "-c",
            str(ROOT / "gunicorn.conf.py"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "tests.core.pid_app:application",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_until(lambda: len(worker_pids(process.pid)) == workers, timeout=30, what="workers")
    return process, port


@pytest.fixture
def server() -> Iterator[Callable[[int, int], int]]:
    """``server(workers, threads)`` starts one; the port. Stopped after the test."""
    processes: list[subprocess.Popen] = []

    def start(workers: int, threads: int) -> int:
        process, port = start_gunicorn(workers, threads)
        processes.append(process)
        return port

    yield start
    for process in processes:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


def worker_pids(master: int) -> list[str]:
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout
    return out.split()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=30)


def send(sock: socket.socket, sleep: float) -> None:
    sock.sendall(f"GET /?{sleep} HTTP/1.1\r\nHost: test\r\n\r\n".encode())


def receive(sock: socket.socket) -> int:
    """The answer to one request on ``sock``: the pid of the worker that served it."""
    data = b""
    while b"\r\n\r\n" not in data or not data.split(b"\r\n\r\n", 1)[1]:
        chunk = sock.recv(4096)
        assert chunk, "connection closed"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200")
    return int(body)


def answer(sock: socket.socket, sleep: float) -> int:
    send(sock, sleep)
    return receive(sock)


def served_by(connections: list[socket.socket], sleep: float) -> list[int]:
    """Send one request on every connection at once; the serving pid of each."""
    for sock in connections:
        send(sock, sleep)
    return [receive(sock) for sock in connections]


def test_a_worker_whose_threads_are_all_busy_leaves_new_connections_to_another(server):
    # gunicorn's own gthread worker accepts whatever it can: a new connection went to the
    # busy worker about half the time, there to wait for its only thread.
    port = server(2, 1)
    busy = connect(port)
    send(busy, 3)  # holds one worker's only thread for 3 s
    wait_until(lambda: listener_idle(port), what="the slow request to be taken")
    probes = []
    for _ in range(6):
        with connect(port) as sock:
            probes.append(answer(sock, 0))
    busy_worker = receive(busy)
    busy.close()
    assert len(set(probes)) == 1
    assert busy_worker not in probes


def test_keep_alive_connections_opened_together_spread_over_the_workers(server):
    port = server(2, 2)
    connections = [connect(port) for _ in range(4)]
    try:
        first = served_by(connections, sleep=1)
        assert sorted(Counter(first).values()) == [2, 2]
        # Each connection stays with the worker that accepted it.
        assert served_by(connections, sleep=0) == first
    finally:
        for sock in connections:
            sock.close()


def listener_idle(port: int) -> bool:
    """No connection waits in the listen backlog (``ss``: Recv-Q of the listening socket)."""
    out = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    return bool(out) and out[1] == "0"
