"""``wardenpy mcp-proxy`` at the wire: the real command between a test speaking raw
newline-delimited JSON-RPC and a raw stdio peer (``echo_mcp_server.py``), against the fake
Warden. The end-to-end tests with the MCP SDK's client and server and a live Warden are in the
server's suite (tests/sdk/test_mcp_bridge.py).
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_warden import AGENT_KEY, ORG_KEY, FakeWarden

import wardenpy

ECHO_SERVER = Path(__file__).with_name("echo_mcp_server.py")
SDK_SRC = Path(wardenpy.__file__).resolve().parent.parent


class Proxy:
    """``python -m wardenpy mcp-proxy`` with pipes the test reads and writes."""

    def __init__(self, url: str, key: str, tmp: Path, *options: str) -> None:
        self.received_file = tmp / "received.jsonl"
        self.stderr_file = tmp / "stderr.log"
        env = {
            **os.environ,
            "WARDEN_API_URL": url,
            "WARDEN_API_KEY": key,
            "PYTHONPATH": str(SDK_SRC),
            "ECHO_RECEIVED": str(self.received_file),
        }
        self._stderr = open(self.stderr_file, "wb")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wardenpy",
                "mcp-proxy",
                "--server",
                "echo",
                "--retries",
                "0",
                "--progress-interval",
                "1",
                *options,
                "--",
                sys.executable,
                str(ECHO_SERVER),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
        )
        self.lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def send(self, message: Any) -> None:
        data = message if isinstance(message, bytes) else json.dumps(message).encode() + b"\n"
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def recv_line(self, timeout: float = 15.0) -> bytes:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"no message from the bridge in {timeout}s; stderr:\n{self.stderr_file.read_text()}"
            ) from None

    def recv(self, timeout: float = 15.0) -> dict[str, Any]:
        return json.loads(self.recv_line(timeout))

    def nothing_for(self, seconds: float) -> bool:
        try:
            self.lines.get(timeout=seconds)
        except queue.Empty:
            return True
        return False

    def received(self) -> list[dict[str, Any]]:
        if not self.received_file.exists():
            return []
        return [json.loads(line) for line in self.received_file.read_text().splitlines()]

    def close(self) -> int:
        if self.process.stdin and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            code = self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(5)
        self._stderr.close()
        return code


@pytest.fixture
def proxy(fake: FakeWarden, tmp_path: Path) -> Iterator[Proxy]:
    bridge = Proxy(fake.url, AGENT_KEY, tmp_path)
    yield bridge
    bridge.close()


def call(request_id: Any, tool: str, arguments: Any = None, **params: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": tool, **params}
    if arguments is not None:
        body["arguments"] = arguments
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": body}


def checked_actions(fake: FakeWarden) -> list[str]:
    return [r.body["action"] for r in fake.calls("POST", "/api/v1/check")]


# --- pass-through -------------------------------------------------------------------------------


def test_other_requests_reach_the_server_as_sent_and_are_not_checked(fake, proxy):
    request = {
        "jsonrpc": "2.0",
        "id": "init-1",
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {"x-new": [1, 2.5, None]}},
    }
    proxy.send(request)
    answer = proxy.recv()
    assert answer["id"] == "init-1"
    assert answer["result"]["echo"] == request
    assert proxy.received() == [request]
    assert checked_actions(fake) == []


def test_the_servers_lines_reach_the_client_byte_for_byte(proxy):
    proxy.send({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert b",   " in proxy.recv_line()  # the server's own spacing, not re-encoded


def test_notifications_pass_through(proxy):
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    proxy.send(note)
    proxy.send({"jsonrpc": "2.0", "id": 2, "method": "ping"})
    proxy.recv()
    assert proxy.received()[0] == note


# --- tools/call ---------------------------------------------------------------------------------


def test_a_tool_call_is_checked_as_mcp_server_tool(fake, proxy):
    proxy.send(call(1, "search", {"q": "refunds"}))
    answer = proxy.recv()
    assert answer["result"]["content"][0]["text"] == "ran search"
    (check,) = fake.calls("POST", "/api/v1/check")
    assert check.body["action"] == "mcp.echo.search"
    assert check.body["arguments"] == {"q": "refunds"}


def test_a_tool_call_without_arguments_is_checked_with_none(fake, proxy):
    proxy.send(call(1, "now"))
    proxy.recv()
    (check,) = fake.calls("POST", "/api/v1/check")
    assert check.body["arguments"] == {}


def test_an_allowed_failing_tool_is_reported_failed(fake, proxy):
    proxy.send(call(1, "fail", {}))
    assert proxy.recv()["result"]["isError"] is True
    (action_id,) = list(fake.actions)
    outcome = fake.wait_for_outcome(action_id)
    assert outcome["status"] == "failed"
    assert outcome["error"] == "ran fail"


def test_a_blocked_call_is_answered_by_the_bridge(fake, proxy):
    fake.set_policy("mcp.echo.rm", "block")
    proxy.send(call(7, "rm", {"path": "/"}))
    answer = proxy.recv()
    assert answer["id"] == 7
    assert answer["result"]["isError"] is True
    assert answer["result"]["content"][0]["text"].startswith("Blocked by Warden")
    assert proxy.received() == []


def test_a_string_id_and_a_number_id_are_different_requests(fake, proxy):
    fake.set_policy("mcp.echo.rm", "block")
    proxy.send(call("1", "rm", {}))
    proxy.send(call(1, "search", {}))
    answers = {json.dumps(a["id"]): a for a in (proxy.recv(), proxy.recv())}
    assert answers['"1"']["result"]["isError"] is True
    assert answers["1"]["result"]["content"][0]["text"] == "ran search"


def test_arguments_that_are_not_an_object_are_invalid_params(fake, proxy):
    proxy.send(call(1, "search", ["refunds"]))
    assert proxy.recv()["error"]["code"] == -32602
    assert checked_actions(fake) == []
    assert proxy.received() == []


def test_a_tool_call_sent_as_a_notification_is_dropped(fake, proxy):
    message = call(1, "search", {})
    del message["id"]
    proxy.send(message)
    proxy.send({"jsonrpc": "2.0", "id": 2, "method": "ping"})
    assert proxy.recv()["id"] == 2
    assert [m["method"] for m in proxy.received()] == ["ping"]


def test_a_line_that_is_not_json_is_refused_and_not_forwarded(proxy):
    proxy.send(b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "x"},}\n')
    answer = proxy.recv()
    assert answer["error"]["code"] == -32700
    assert answer["id"] is None
    proxy.send(b'{"jsonrpc": "2.0", "id": 2, "method": "ping", "params": {"n": NaN}}\n')
    assert proxy.recv()["error"]["code"] == -32700
    assert proxy.received() == []


def test_a_tool_call_inside_a_batch_is_checked_too(fake, proxy):
    fake.set_policy("mcp.echo.rm", "block")
    proxy.send([call(1, "rm", {"path": "/"}), {"jsonrpc": "2.0", "id": 2, "method": "ping"}])
    answers = {a["id"]: a for a in (proxy.recv(), proxy.recv())}
    assert answers[1]["result"]["isError"] is True
    assert "echo" in answers[2]["result"]
    assert [m["method"] for m in proxy.received()] == ["ping"]


# --- holds --------------------------------------------------------------------------------------


def test_a_held_call_sends_progress_then_runs_once_approved(fake, proxy):
    fake.set_policy("mcp.echo.pay", "requires_approval")
    proxy.send(call(1, "pay", {"amount": 5}, _meta={"progressToken": "tok"}))
    progress = proxy.recv()
    assert progress["method"] == "notifications/progress"
    assert progress["params"]["progressToken"] == "tok"
    action_id = fake.wait_for_pending()
    assert action_id in progress["params"]["message"]
    assert proxy.received() == []
    time.sleep(2.5)  # two more progress notifications
    fake.decide(action_id, "approved")
    values = [progress["params"]["progress"]]
    answer = proxy.recv()
    while "method" in answer:
        assert answer["method"] == "notifications/progress"
        values.append(answer["params"]["progress"])
        answer = proxy.recv()
    assert len(values) >= 3
    assert values == sorted(set(values))  # progress only grows
    assert answer["id"] == 1
    assert answer["result"]["content"][0]["text"] == "ran pay"
    claim = fake.calls("POST", f"/api/v1/actions/{action_id}/claim")[0]
    assert claim.body == {"arguments": {"amount": 5}}
    assert fake.wait_for_outcome(action_id)["status"] == "success"


def test_a_held_call_without_a_progress_token_sends_no_progress(fake, proxy):
    fake.set_policy("mcp.echo.pay", "requires_approval")
    proxy.send(call(1, "pay", {"amount": 5}))
    action_id = fake.wait_for_pending()
    assert proxy.nothing_for(1.5)
    fake.decide(action_id, "denied", notes="no")
    answer = proxy.recv()
    assert answer["id"] == 1
    assert "A reviewer denied pay" in answer["result"]["content"][0]["text"]


def test_an_approval_claimed_elsewhere_is_not_run_again(fake, proxy):
    fake.set_policy("mcp.echo.pay", "requires_approval")
    proxy.send(call(1, "pay", {"amount": 5}))
    action_id = fake.wait_for_pending()
    fake.actions[action_id]["claimed_at"] = "2026-01-01T00:00:00+00:00"
    fake.decide(action_id, "approved")
    answer = proxy.recv()
    assert "already claimed" in answer["result"]["content"][0]["text"]
    assert proxy.received() == []


def test_a_cancelled_held_call_is_never_forwarded(fake, proxy):
    fake.set_policy("mcp.echo.pay", "requires_approval")
    proxy.send(call(9, "pay", {"amount": 5}))
    action_id = fake.wait_for_pending()
    proxy.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 9}})
    time.sleep(0.3)
    fake.decide(action_id, "approved")
    assert proxy.nothing_for(2.0)  # a cancelled request gets no answer
    assert proxy.received() == []  # neither the call nor its cancellation reached the server
    assert fake.calls("POST", f"/api/v1/actions/{action_id}/claim") == []


def test_a_client_that_leaves_during_a_hold_ends_the_bridge_at_once(fake, tmp_path):
    fake.set_policy("mcp.echo.pay", "requires_approval")
    bridge = Proxy(fake.url, AGENT_KEY, tmp_path, "--progress-interval", "30")
    bridge.send(call(1, "pay", {"amount": 5}))
    action_id = fake.wait_for_pending()
    time.sleep(0.5)  # the bridge is in a 30-second long-poll now
    started = time.monotonic()
    assert bridge.close() == 0
    assert time.monotonic() - started < 8  # not held up by that long-poll
    fake.decide(action_id, "approved")
    assert bridge.received() == []


def test_a_second_tool_call_with_a_running_calls_id_is_refused(fake, proxy):
    fake.set_policy("mcp.echo.pay", "requires_approval")
    proxy.send(call(4, "pay", {"amount": 5}))
    action_id = fake.wait_for_pending()
    proxy.send(call(4, "search", {}))
    answer = proxy.recv()
    assert answer["id"] == 4
    assert answer["error"]["code"] == -32600
    fake.decide(action_id, "denied")
    assert "denied" in proxy.recv()["result"]["content"][0]["text"]
    assert checked_actions(fake) == ["mcp.echo.pay"]


def test_max_wait_ends_a_hold_with_a_tool_error(fake, tmp_path):
    fake.set_policy("mcp.echo.pay", "requires_approval")
    bridge = Proxy(fake.url, AGENT_KEY, tmp_path, "--max-wait", "1")
    try:
        bridge.send(call(1, "pay", {"amount": 5}))
        answer = bridge.recv()
        assert "No decision on pay" in answer["result"]["content"][0]["text"]
        assert answer["result"]["_meta"]["warden"]["status"] == "pending"
        assert bridge.received() == []
    finally:
        bridge.close()


# --- failures -----------------------------------------------------------------------------------


def test_warden_answering_503_is_unavailable_and_fails_closed(fake, proxy):
    fake.script("POST", "/api/v1/check", 503)
    proxy.send(call(1, "search", {}))
    answer = proxy.recv()
    assert answer["result"]["content"][0]["text"].startswith("Warden unavailable")
    assert proxy.received() == []


def test_a_server_that_dies_mid_call_gives_an_error_and_a_failed_outcome(fake, proxy):
    proxy.send(call(1, "die", {}))
    answer = proxy.recv()
    assert answer["id"] == 1
    assert answer["error"]["code"] == -32603
    (action_id,) = list(fake.actions)
    assert fake.wait_for_outcome(action_id)["status"] == "failed"
    assert proxy.close() == 3  # the bridge exits with the server's exit code


def test_the_bridge_exits_when_the_client_closes_its_input(proxy):
    proxy.send({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    proxy.recv()
    started = time.monotonic()
    assert proxy.close() == 0
    assert time.monotonic() - started < 10


def test_answers_the_server_gives_after_the_client_closes_its_input_still_arrive(proxy):
    proxy.send({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert proxy.close() == 0  # closes the bridge's stdin at once, then waits for it
    assert proxy.recv(timeout=1)["id"] == 1


def test_an_org_key_sends_the_agent_named_by_agent(fake, tmp_path):
    bridge = Proxy(fake.url, ORG_KEY, tmp_path, "--agent", "desktop")
    try:
        bridge.send(call(1, "search", {}))
        bridge.recv()
    finally:
        bridge.close()
    (check,) = fake.calls("POST", "/api/v1/check")
    assert check.body["agent"] == "desktop"


# --- the command --------------------------------------------------------------------------------


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wardenpy", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(SDK_SRC), **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def test_the_command_needs_the_server_command_after_a_double_dash():
    done = run_cli("mcp-proxy", "--server", "files", "python", "server.py")
    assert done.returncode == 2
    assert "after --" in done.stderr


def test_the_command_refuses_a_server_name_that_cannot_be_part_of_an_action():
    done = run_cli("mcp-proxy", "--server", "my.files", "--", "python", "server.py")
    assert done.returncode == 2
    assert "--server" in done.stderr


def test_the_command_needs_a_key(fake):
    env = {"WARDEN_API_URL": fake.url, "WARDEN_API_KEY": ""}
    done = run_cli("mcp-proxy", "--server", "files", "--", "python", "server.py", env=env)
    assert done.returncode == 2
    assert "WARDEN_API_KEY" in done.stderr


def test_a_server_command_that_does_not_exist_exits_127(fake):
    env = {"WARDEN_API_URL": fake.url, "WARDEN_API_KEY": AGENT_KEY}
    done = run_cli("mcp-proxy", "--server", "files", "--", "/nonexistent/server", env=env)
    assert done.returncode == 127
    assert "could not start" in done.stderr


def test_the_package_installs_a_wardenpy_command():
    tomllib = pytest.importorskip("tomllib")
    pyproject = tomllib.loads((SDK_SRC.parent / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["wardenpy"] == "wardenpy.cli:main"
    assert "mcp" in pyproject["project"]["optional-dependencies"]
