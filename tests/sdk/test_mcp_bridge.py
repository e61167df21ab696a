"""The stdio MCP bridge (``wardenpy mcp-proxy``) between the official MCP SDK's stdio client
and a real stdio MCP server (``mcp_files_server.py``), against a live Warden: no mocks.

The client launches ``python -m wardenpy mcp-proxy --server files -- python mcp_files_server.py``
as a desktop client would; the server appends every call it receives to a file, so a test can
tell whether it was called. Reviewers decide through the API with the organisation's
approver key, from the test thread, while the client waits in another thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

import wardenpy
from tests.agents.conftest import Keys, add_rule, keys_for
from tests.live import free_port, wait_until
from tests.sdk.conftest import cancel_pending, in_thread, outcome_of, pending_action_id

pytestmark = pytest.mark.live

SERVER_SCRIPT = Path(__file__).with_name("mcp_files_server.py")
# The wardenpy being tested (the checkout's sdk/src), for the bridge's own process.
SDK_SRC = Path(wardenpy.__file__).resolve().parent.parent


@pytest.fixture
def files_bot(org_a, alice):
    from agents import services

    agent = services.agent_create(organization=org_a, actor=alice, name="desktop-agent")
    add_rule(agent, name="reads ok", action="mcp.files.read_file", effect="allow")
    add_rule(agent, name="broken ok", action="mcp.files.broken", effect="allow")
    add_rule(agent, name="no deletes", action="mcp.files.delete_file", effect="block")
    add_rule(agent, name="payments", action="mcp.files.send_money", effect="requires_approval")
    add_rule(
        agent,
        name="quick payments",
        action="mcp.quickfiles.send_money",
        effect="requires_approval",
        approval={"timeout": 1},
    )
    return agent


@pytest.fixture
def bridge_keys(files_bot, alice) -> Iterator[Keys]:
    keys = keys_for(files_bot, alice)
    yield keys
    cancel_pending(keys)


class Bridge:
    """Runs MCP client scenarios through the bridge, and reads what the server received."""

    def __init__(self, url: str, key: str, calls_file: Path) -> None:
        self.url = url
        self.key = key
        self.calls_file = calls_file

    def calls(self) -> list[dict[str, Any]]:
        if not self.calls_file.exists():
            return []
        return [json.loads(line) for line in self.calls_file.read_text().splitlines()]

    def params(self, server: str = "files", *extra: str) -> StdioServerParameters:
        return StdioServerParameters(
            command=sys.executable,
            args=[
                "-m",
                "wardenpy",
                "mcp-proxy",
                "--server",
                server,
                "--progress-interval",
                "1",
                "--retries",
                "1",
                *extra,
                "--",
                sys.executable,
                str(SERVER_SCRIPT),
            ],
            env={
                "WARDEN_API_URL": self.url,
                "WARDEN_API_KEY": self.key,
                "PYTHONPATH": str(SDK_SRC),
                "MCP_CALLS_FILE": str(self.calls_file),
            },
        )

    def run(self, scenario: Callable[[ClientSession], Awaitable[Any]], server: str = "files"):
        async def main() -> Any:
            async with (
                stdio_client(self.params(server)) as (read, write),
                ClientSession(read, write, read_timeout_seconds=60) as session,
            ):
                await session.initialize()
                return await scenario(session)

        return asyncio.run(main())

    def call(self, tool: str, arguments: dict[str, Any], server: str = "files", **kwargs: Any):
        return self.run(lambda session: session.call_tool(tool, arguments, **kwargs), server)


@pytest.fixture
def bridge(live_server, bridge_keys, tmp_path) -> Bridge:
    return Bridge(live_server.url, bridge_keys.test, tmp_path / "calls.jsonl")


def approver(live_server, keys: Keys) -> wardenpy.Client:
    return wardenpy.Client(api_key=keys.approver, api_url=live_server.url, retry_attempts=0)


def text_of(result) -> str:
    return "\n".join(item.text for item in result.content if item.type == "text")


def checks_of(action: str) -> list[str]:
    from audit.models import AuditEntry

    entries = AuditEntry.objects.filter(kind=AuditEntry.Kind.CHECK, action=action)
    return list(entries.order_by("created_at").values_list("public_id", flat=True))


# --- allow ------------------------------------------------------------------------------------


def test_an_allowed_tool_call_reaches_the_server_and_returns_its_result(bridge):
    result = bridge.call("read_file", {"path": "/etc/motd"})
    assert not result.is_error
    assert text_of(result) == "contents of /etc/motd"
    assert bridge.calls() == [{"tool": "read_file", "arguments": {"path": "/etc/motd"}}]


def test_a_tool_call_is_checked_as_mcp_server_tool_with_its_arguments(
    live_server, bridge, bridge_keys
):
    bridge.call("read_file", {"path": "/etc/motd"})
    (action_id,) = checks_of("mcp.files.read_file")
    with wardenpy.Client(api_key=bridge_keys.test, api_url=live_server.url) as client:
        state = client.get_action(action_id)
    assert state.arguments == {"path": "/etc/motd"}
    assert state.status == "allowed"


def test_an_allowed_call_reports_success(live_server, bridge, bridge_keys):
    bridge.call("read_file", {"path": "/etc/motd"})
    (action_id,) = checks_of("mcp.files.read_file")
    outcome = wait_until(lambda: outcome_of(live_server, bridge_keys.test, action_id))
    assert outcome["status"] == "success"


def test_a_tool_error_from_the_server_is_returned_and_reported_failed(
    live_server, bridge, bridge_keys
):
    result = bridge.call("broken", {"path": "/tmp/x"})
    assert result.is_error
    assert "disk on fire" in text_of(result)
    (action_id,) = checks_of("mcp.files.broken")
    outcome = wait_until(lambda: outcome_of(live_server, bridge_keys.test, action_id))
    assert outcome["status"] == "failed"
    assert "disk on fire" in outcome["error"]


# --- block ------------------------------------------------------------------------------------


def test_a_blocked_call_is_a_tool_error_with_the_reason(bridge):
    result = bridge.call("delete_file", {"path": "/etc/passwd"})
    assert result.is_error
    assert "Blocked by Warden" in text_of(result)
    assert "no deletes" in text_of(result)


def test_a_blocked_call_never_reaches_the_server(bridge):
    bridge.call("delete_file", {"path": "/etc/passwd"})
    assert bridge.calls() == []


def test_a_blocked_call_is_recorded_as_blocked(live_server, bridge, bridge_keys):
    result = bridge.call("delete_file", {"path": "/etc/passwd"})
    (action_id,) = checks_of("mcp.files.delete_file")
    assert result.meta["warden"] == {
        "decision": "block",
        "action_id": action_id,
        "status": "blocked",
    }
    with wardenpy.Client(api_key=bridge_keys.test, api_url=live_server.url) as client:
        assert client.get_action(action_id).status == "blocked"


# --- held -------------------------------------------------------------------------------------


def test_a_held_call_runs_once_a_reviewer_approves(live_server, bridge, bridge_keys):
    call = in_thread(bridge.call, "send_money", {"amount": 250, "to": "bob"})
    action_id = pending_action_id("mcp.files.send_money")
    call.thread.join(1.0)
    assert bridge.calls() == []  # nothing reaches the server before the decision
    approver(live_server, bridge_keys).approve(action_id, notes="invoice checked")
    result = call.result()
    assert not result.is_error
    assert text_of(result) == "sent 250.0 to bob"
    assert bridge.calls() == [{"tool": "send_money", "arguments": {"amount": 250, "to": "bob"}}]


def test_an_approved_call_is_claimed_and_its_outcome_reported(live_server, bridge, bridge_keys):
    call = in_thread(bridge.call, "send_money", {"amount": 250, "to": "bob"})
    action_id = pending_action_id("mcp.files.send_money")
    approver(live_server, bridge_keys).approve(action_id)
    call.result()
    outcome = wait_until(lambda: outcome_of(live_server, bridge_keys.test, action_id))
    assert outcome["status"] == "success"
    with wardenpy.Client(api_key=bridge_keys.test, api_url=live_server.url) as client:
        assert client.get_action(action_id).claimed_at
        with pytest.raises(wardenpy.AlreadyClaimedError):
            client.claim(action_id)


def test_a_held_call_sends_progress_notifications_while_it_waits(live_server, bridge, bridge_keys):
    seen: list[str] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        seen.append(message or "")

    call = in_thread(
        bridge.call, "send_money", {"amount": 250, "to": "bob"}, progress_callback=progress
    )
    action_id = pending_action_id("mcp.files.send_money")
    wait_until(lambda: len(seen) >= 2, what="two progress notifications")
    approver(live_server, bridge_keys).approve(action_id)
    call.result()
    assert action_id in seen[0]
    assert "approv" in seen[0].lower()


def test_a_held_call_does_not_hold_up_other_calls(live_server, bridge, bridge_keys):
    other_done = threading.Event()

    async def scenario(session: ClientSession):
        held = asyncio.create_task(session.call_tool("send_money", {"amount": 250, "to": "bob"}))
        other = await session.call_tool("read_file", {"path": "/etc/motd"})
        other_done.set()
        return other, await held

    call = in_thread(bridge.run, scenario)
    action_id = pending_action_id("mcp.files.send_money")
    assert other_done.wait(30), "the allowed call waited behind the held one"
    approver(live_server, bridge_keys).approve(action_id)
    other, held = call.result()
    assert text_of(other) == "contents of /etc/motd"
    assert text_of(held) == "sent 250.0 to bob"


def test_a_denied_call_is_a_tool_error_with_the_reviewers_note(live_server, bridge, bridge_keys):
    call = in_thread(bridge.call, "send_money", {"amount": 250, "to": "mallory"})
    action_id = pending_action_id("mcp.files.send_money")
    approver(live_server, bridge_keys).deny(action_id, notes="unknown payee")
    result = call.result()
    assert result.is_error
    assert "denied" in text_of(result)
    assert "unknown payee" in text_of(result)
    assert result.meta["warden"]["status"] == "denied"


def test_a_denied_call_never_reaches_the_server(live_server, bridge, bridge_keys):
    call = in_thread(bridge.call, "send_money", {"amount": 250, "to": "mallory"})
    action_id = pending_action_id("mcp.files.send_money")
    approver(live_server, bridge_keys).deny(action_id, notes="unknown payee")
    call.result()
    assert bridge.calls() == []


def test_a_call_nobody_decides_in_time_is_a_tool_error_saying_it_expired(bridge):
    result = bridge.call("send_money", {"amount": 5, "to": "bob"}, server="quickfiles")
    assert result.is_error
    assert "expired" in text_of(result)
    assert bridge.calls() == []


# --- Warden unreachable -----------------------------------------------------------------------


def test_with_warden_unreachable_a_call_is_a_tool_error_and_not_forwarded(bridge):
    bridge.url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = bridge.call("read_file", {"path": "/etc/motd"})
    assert result.is_error
    assert text_of(result).startswith("Warden unavailable")
    assert bridge.calls() == []


def test_with_a_revoked_key_a_call_is_a_tool_error_and_not_forwarded(bridge):
    bridge.key = "wdn_test_notakeyofthisserver"
    result = bridge.call("read_file", {"path": "/etc/motd"})
    assert result.is_error
    assert "refused" in text_of(result)
    assert bridge.calls() == []


# --- everything else passes through -----------------------------------------------------------


def test_requests_other_than_tool_calls_pass_through_unchecked(bridge):
    async def scenario(session: ClientSession):
        await session.send_ping()
        tools = await session.list_tools()
        resource = await session.read_resource("note://todo")
        prompt = await session.get_prompt("greet", {"name": "Ada"})
        return tools, resource, prompt

    tools, resource, prompt = bridge.run(scenario)
    assert {tool.name for tool in tools.tools} == {
        "read_file",
        "delete_file",
        "send_money",
        "broken",
    }
    assert resource.contents[0].text == "note todo"
    assert "Ada" in prompt.messages[0].content.text
    from audit.models import AuditEntry

    assert not AuditEntry.objects.filter(kind=AuditEntry.Kind.CHECK).exists()


def test_the_server_does_not_see_the_warden_key(bridge, tmp_path):
    # The server is started with the bridge's environment minus WARDEN_API_KEY.
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os, sys\n"
        "open(os.environ['MCP_CALLS_FILE'], 'w').write(repr(os.environ.get('WARDEN_API_KEY')))\n"
    )
    params = bridge.params()
    params.args[-1] = str(probe)

    async def main() -> None:
        with contextlib.suppress(Exception):
            async with (
                stdio_client(params) as (read, write),
                ClientSession(read, write, read_timeout_seconds=5) as session,
            ):
                await session.initialize()

    asyncio.run(main())
    assert bridge.calls_file.read_text() == "None"
