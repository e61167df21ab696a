"""The MCP gateway end to end: a real upstream MCP server (the SDK's ``MCPServer`` on a local
port), the gateway (``agents.mcp.gateway``, served by uvicorn) and the SDK's client over
streamable HTTP. Approvals are decided through the HTTP API from another thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from django.db import connections
from django.utils import timezone
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from rest_framework.test import APIClient

from agents.mcp import decisions
from agents.mcp.gateway import OneOriginApp, gateway_app
from agents.mcp.services import mcp_server_create
from approvals.models import ApprovalRequest
from audit.models import AuditEntry
from tests.agents.conftest import add_rule, keys_for
from tests.live import free_port, wait_until

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

UPSTREAM_CALLS: list[tuple[str, Any]] = []


def _upstream() -> MCPServer:
    server = MCPServer("files")

    @server.tool()
    def echo(text: str) -> str:
        """Say it back."""
        UPSTREAM_CALLS.append(("echo", text))
        return f"echo: {text}"

    @server.tool()
    def delete_all() -> str:
        """Delete everything."""
        UPSTREAM_CALLS.append(("delete_all", None))
        return "deleted"

    @server.tool()
    def refund(amount: int) -> str:
        """Refund a customer."""
        UPSTREAM_CALLS.append(("refund", amount))
        return f"refunded {amount}"

    @server.tool()
    def broken() -> str:
        """Always fails."""
        raise ToolError("disk on fire")

    @server.tool()
    async def count(ctx: Context) -> str:
        """Reports its progress."""
        for step in (1, 2, 3):
            await ctx.report_progress(step, 3, f"step {step}")
        return "counted"

    @server.tool()
    def slow() -> str:
        """Takes its time."""
        time.sleep(3)
        return "late"

    return server


class _Served:
    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _Served:
        self.thread.start()
        wait_until(lambda: self.server.started, timeout=15, what="uvicorn to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with _Served(_upstream().streamable_http_app()) as served:
        yield f"http://127.0.0.1:{served.port}/mcp"


@pytest.fixture
def gateway(settings) -> Iterator[str]:
    settings.WARDEN_MCP_HOLD_POLL_SECONDS = 0.1
    UPSTREAM_CALLS.clear()
    decisions.servers_forget()
    with _Served(gateway_app()) as served:
        yield f"http://127.0.0.1:{served.port}"


@pytest.fixture
def bot(org_a, alice):
    from agents import services

    agent = services.agent_create(organization=org_a, actor=alice, name="files-bot")
    add_rule(agent, name="no wipes", action="mcp.files.delete_all", effect="block")
    add_rule(agent, name="refunds", action="mcp.files.refund", effect="requires_approval")
    return agent


@pytest.fixture
def key(bot, alice) -> str:
    return keys_for(bot, alice).test


def _register(org, upstream: str, **kwargs: Any):
    return mcp_server_create(organization=org, actor=None, name="files", url=upstream, **kwargs)


def _run(
    url: str, key: str, body: Any, *, header: str = "authorization", mode: str = "auto"
) -> Any:
    """Connect the SDK's client to ``url`` with ``key`` and run ``body(client)``
    (``mode="legacy"``: the initialize handshake and an ``Mcp-Session-Id`` session)."""

    async def main() -> Any:
        value = f"Bearer {key}" if header == "authorization" else key
        http = create_mcp_http_client(headers={header: value})
        transport = streamable_http_client(url, http_client=http)
        async with http, Client(transport, mode=mode) as client:
            return await body(client)

    return anyio.run(main)


def _closing(fn: Any) -> Any:
    """A thread's work, then its database connection closed (the test database must be
    droppable at the end)."""

    def run() -> None:
        try:
            fn()
        finally:
            connections.close_all()

    return run


def _closing_read(fn: Any) -> Any:
    def read() -> Any:
        try:
            return fn()
        finally:
            connections.close_all()

    return read


def _decide_later(action: str, bob, *, approve: bool, notes: str = "") -> threading.Thread:
    def decide() -> None:
        request = wait_until(
            lambda: ApprovalRequest.objects.filter(action=action).first(), what="the hold"
        )
        api = APIClient()
        api.force_login(bob)
        verb = "approve" if approve else "deny"
        response = api.post(
            f"/api/v1/actions/{request.action_id}/{verb}", {"notes": notes}, format="json"
        )
        assert response.status_code == 200, response.content

    thread = threading.Thread(target=_closing(decide), daemon=True)
    thread.start()
    return thread


def _outcome(action_id: str) -> AuditEntry:
    return wait_until(
        lambda: AuditEntry.objects.filter(
            kind=AuditEntry.Kind.OUTCOME, action_id=action_id
        ).first(),
        what="the outcome",
    )


def _mcp_error(url: str, key: str, body: Any) -> MCPError:
    """The MCP error the client raised (the SDK's task groups may wrap it in a group)."""
    try:
        _run(url, key, body)
    except BaseException as exc:
        found = [exc]
        while found:
            error = found.pop()
            if isinstance(error, MCPError):
                return error
            if isinstance(error, BaseExceptionGroup):
                found.extend(error.exceptions)
        raise
    pytest.fail("no MCP error")


def _text(result: Any) -> str:
    return " ".join(block.text for block in result.content)


def test_tools_list_hides_a_tool_the_policy_blocks_outright(org_a, upstream, gateway, key):
    _register(org_a, upstream)

    async def body(client):
        return [tool.name for tool in (await client.list_tools()).tools]

    names = _run(f"{gateway}/mcp/files", key, body)
    assert "echo" in names and "refund" in names
    assert "delete_all" not in names


def test_an_allowed_call_is_forwarded_and_its_outcome_recorded(org_a, upstream, gateway, key):
    _register(org_a, upstream)

    async def body(client):
        return await client.call_tool("echo", {"text": "hi"})

    result = _run(f"{gateway}/mcp/files", key, body, header="x-api-key")
    assert not result.is_error
    assert _text(result) == "echo: hi"
    check = AuditEntry.objects.get(kind=AuditEntry.Kind.CHECK, action="mcp.files.echo")
    assert check.decision == "allow" and check.arguments == {"text": "hi"}
    assert check.source == "mcp"
    assert _outcome(check.public_id).status == "success"


def test_a_tool_error_is_returned_as_is_and_recorded_failed(org_a, upstream, gateway, key):
    _register(org_a, upstream)

    async def body(client):
        return await client.call_tool("broken", {})

    result = _run(f"{gateway}/mcp/files", key, body)
    assert result.is_error and "disk on fire" in _text(result)
    check = AuditEntry.objects.get(kind=AuditEntry.Kind.CHECK, action="mcp.files.broken")
    outcome = _outcome(check.public_id)
    assert outcome.status == "failed" and "disk on fire" in outcome.data["error"]


def test_a_blocked_call_is_a_tool_error_and_never_reaches_the_upstream(
    org_a, upstream, gateway, key
):
    _register(org_a, upstream)

    async def body(client):
        return await client.call_tool("delete_all", {})

    result = _run(f"{gateway}/mcp/files", key, body)
    assert result.is_error and "no wipes" in _text(result)
    assert ("delete_all", None) not in UPSTREAM_CALLS
    assert AuditEntry.objects.get(action="mcp.files.delete_all").decision == "block"


def test_a_held_call_waits_with_progress_and_runs_once_approved(org_a, upstream, gateway, key, bob):
    _register(org_a, upstream)
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async def body(client):
        return await client.call_tool("refund", {"amount": 30}, progress_callback=on_progress)

    decider = _decide_later("mcp.files.refund", bob, approve=True)
    result = _run(f"{gateway}/mcp/files", key, body)
    decider.join(5)
    assert not result.is_error and _text(result) == "refunded 30"
    assert UPSTREAM_CALLS == [("refund", 30)]
    assert progress, "no progress notification while held"
    request = ApprovalRequest.objects.get(action="mcp.files.refund")
    assert request.status == "approved" and request.claimed_at is not None
    assert _outcome(request.action_id).status == "success"


def test_a_held_call_denied_returns_the_reviewers_note(org_a, upstream, gateway, key, bob):
    _register(org_a, upstream)

    async def body(client):
        return await client.call_tool("refund", {"amount": 500})

    decider = _decide_later("mcp.files.refund", bob, approve=False, notes="too much")
    result = _run(f"{gateway}/mcp/files", key, body)
    decider.join(5)
    assert result.is_error and "too much" in _text(result)
    assert UPSTREAM_CALLS == []


def test_a_held_call_that_expires_is_a_tool_error(org_a, upstream, gateway, key):
    _register(org_a, upstream)

    def expire() -> None:
        request = wait_until(
            lambda: ApprovalRequest.objects.filter(action="mcp.files.refund").first(),
            what="the hold",
        )
        ApprovalRequest.objects.filter(pk=request.pk).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )

    async def body(client):
        return await client.call_tool("refund", {"amount": 5})

    thread = threading.Thread(target=_closing(expire), daemon=True)
    thread.start()
    result = _run(f"{gateway}/mcp/files", key, body)
    thread.join(5)
    assert result.is_error and "expired" in _text(result)
    assert ApprovalRequest.objects.get(action="mcp.files.refund").status == "expired"
    assert UPSTREAM_CALLS == []


def test_return_pending_answers_at_once_and_a_later_identical_call_runs_once(
    org_a, upstream, gateway, key, bob
):
    _register(org_a, upstream, hold="return_pending")

    async def call(client):
        return await client.call_tool("refund", {"amount": 70})

    url = f"{gateway}/mcp/files"
    first = _run(url, key, call)
    assert first.is_error and "approval" in _text(first)
    action_id = first.meta["warden"]["action_id"]
    assert first.meta["warden"]["status"] == "pending"
    again = _run(url, key, call)  # still pending: the same hold, not a second one
    assert again.meta["warden"]["action_id"] == action_id
    assert ApprovalRequest.objects.filter(action="mcp.files.refund").count() == 1
    api = APIClient()
    api.force_login(bob)
    assert api.post(f"/api/v1/actions/{action_id}/approve", {}, format="json").status_code == 200
    second = _run(url, key, call)
    assert not second.is_error and _text(second) == "refunded 70"
    third = _run(url, key, call)  # the approval ran once: this one is held anew
    assert third.is_error and third.meta["warden"]["action_id"] != action_id
    assert UPSTREAM_CALLS == [("refund", 70)]
    assert _outcome(action_id).status == "success"


def test_another_orgs_key_unknown_servers_and_disallowed_agents_are_refused(
    org_a, org_c, charlie, alice, upstream, gateway, key
):
    from agents import services

    other = services.agent_create(organization=org_a, actor=alice, name="other-bot")
    _register(org_a, upstream, agents=["files-bot"])
    charlie_bot = services.agent_create(organization=org_c, actor=charlie, name="c-bot")
    outsider = keys_for(charlie_bot, charlie).test

    async def body(client):
        return await client.list_tools()

    for bad_key, url in [
        (outsider, f"{gateway}/mcp/files"),  # another organisation: no such server there
        (key, f"{gateway}/mcp/nope"),
        (keys_for(other, alice).test, f"{gateway}/mcp/files"),  # not allowed on the server
        ("wk_not_a_key", f"{gateway}/mcp/files"),
    ]:
        with pytest.raises(BaseException):  # noqa: B017 - the client's transport error
            _run(url, bad_key, body)
    assert UPSTREAM_CALLS == []


def test_the_refusals_are_404_403_401_before_the_upstream(
    org_a, org_c, charlie, alice, upstream, gateway, key
):
    import httpx2

    from agents import services

    other = services.agent_create(organization=org_a, actor=alice, name="other-bot")
    _register(org_a, upstream, agents=["files-bot"])
    outsider = keys_for(services.agent_create(organization=org_c, actor=charlie, name="c"), charlie)
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    headers = {"accept": "application/json, text/event-stream"}

    def post(path: str, key_: str | None) -> int:
        extra = {"authorization": f"Bearer {key_}"} if key_ else {}
        return httpx2.post(f"{gateway}{path}", json=ping, headers={**headers, **extra}).status_code

    assert post("/mcp/files", outsider.test) == 404
    assert post("/mcp/nope", key) == 404
    assert post("/mcp/files", keys_for(other, alice).test) == 403
    assert post("/mcp/files", outsider.org) == 404
    assert post("/mcp/files", None) == 401
    assert post("/mcp/files", "wk_bogus") == 401


def test_malformed_json_rpc_gets_a_json_rpc_error_not_a_5xx(org_a, upstream, gateway, key):
    import httpx2

    _register(org_a, upstream)
    response = httpx2.post(
        f"{gateway}/mcp/files",
        content=b'{"jsonrpc": "2.0", "id": 1, "method": ',
        headers={
            "authorization": f"Bearer {key}",
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
        },
    )
    assert 400 <= response.status_code < 500
    assert "error" in response.json()


def test_an_upstream_that_is_down_is_an_mcp_error_and_a_failed_outcome(org_a, gateway, key):
    _register(org_a, f"http://127.0.0.1:{free_port()}/mcp")

    async def body(client):
        return await client.call_tool("echo", {"text": "x"})

    error = _mcp_error(f"{gateway}/mcp/files", key, body)
    assert "files" in error.message and "unavailable" in error.message
    check = AuditEntry.objects.get(kind=AuditEntry.Kind.CHECK, action="mcp.files.echo")
    assert _outcome(check.public_id).status == "failed"


def test_a_slow_upstream_times_out_with_an_mcp_error(org_a, upstream, gateway, key):
    _register(org_a, upstream, timeout_seconds=1)

    async def body(client):
        return await client.call_tool("slow", {})

    started = time.monotonic()
    error = _mcp_error(f"{gateway}/mcp/files", key, body)
    assert "did not answer within 1 s" in error.message
    assert time.monotonic() - started < 3
    check = AuditEntry.objects.get(kind=AuditEntry.Kind.CHECK, action="mcp.files.slow")
    assert _outcome(check.public_id).status == "failed"


@pytest.fixture
def garbage_upstream() -> Iterator[str]:
    """An HTTP server that answers every request with 200 and a body that is not MCP."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            body = b'{"this is": "not json-rpc"'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_DELETE = do_POST

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/mcp"
    server.shutdown()


def test_an_upstream_that_answers_garbage_is_an_mcp_error_and_a_failed_outcome(
    org_a, garbage_upstream, gateway, key
):
    _register(org_a, garbage_upstream, timeout_seconds=3)

    async def body(client):
        return await client.call_tool("echo", {"text": "x"})

    started = time.monotonic()
    error = _mcp_error(f"{gateway}/mcp/files", key, body)
    assert "files" in error.message and "unavailable" in error.message
    assert time.monotonic() - started < 6
    check = AuditEntry.objects.get(kind=AuditEntry.Kind.CHECK, action="mcp.files.echo")
    assert _outcome(check.public_id).status == "failed"


def test_a_handshake_era_client_gets_a_session_that_only_its_key_may_use(
    org_a, alice, upstream, gateway, key
):
    import httpx2

    from agents import services

    _register(org_a, upstream)
    other_key = keys_for(services.agent_create(organization=org_a, actor=alice, name="b2"), alice)

    def tools_list(raw_key: str, session_id: str) -> int:
        return httpx2.post(
            f"{gateway}/mcp/files",
            json={"jsonrpc": "2.0", "id": 9, "method": "tools/list"},
            headers={
                "authorization": f"Bearer {raw_key}",
                "accept": "application/json, text/event-stream",
                "mcp-session-id": session_id,
                "mcp-protocol-version": "2025-06-18",
            },
        ).status_code

    async def body(client):
        names = [tool.name for tool in (await client.list_tools()).tools]
        result = await client.call_tool("echo", {"text": "legacy"})
        session_id = await anyio.to_thread.run_sync(
            _closing_read(
                lambda: (
                    AuditEntry.objects.get(
                        kind=AuditEntry.Kind.CHECK, action="mcp.files.echo"
                    ).session_id
                )
            )
        )
        # While the session is open: its own key may use it, another agent's key may not.
        own = await anyio.to_thread.run_sync(tools_list, key, session_id)
        other = await anyio.to_thread.run_sync(tools_list, other_key.test, session_id)
        return names, result, session_id, own, other

    names, result, session_id, own, other = _run(f"{gateway}/mcp/files", key, body, mode="legacy")
    assert "delete_all" not in names and _text(result) == "echo: legacy"
    assert session_id  # the client's Mcp-Session-Id is the check's session
    assert (own, other) == (200, 404)


def test_an_upstream_that_never_answers_the_connection_times_out(org_a, gateway, key):
    import socket

    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        _register(org_a, f"http://127.0.0.1:{silent.getsockname()[1]}/mcp", timeout_seconds=1)

        async def body(client):
            return await client.call_tool("echo", {"text": "x"})

        started = time.monotonic()
        error = _mcp_error(f"{gateway}/mcp/files", key, body)
    assert "did not answer within 1 s" in error.message
    assert time.monotonic() - started < 4
    check = AuditEntry.objects.get(kind=AuditEntry.Kind.CHECK, action="mcp.files.echo")
    assert _outcome(check.public_id).status == "failed"


def test_the_upstreams_progress_notifications_reach_the_client(org_a, upstream, gateway, key):
    _register(org_a, upstream)
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))

    async def body(client):
        return await client.call_tool("count", {}, progress_callback=on_progress)

    result = _run(f"{gateway}/mcp/files", key, body)
    assert _text(result) == "counted"
    assert progress == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]


@pytest.fixture
def one_origin(settings) -> Iterator[str]:
    """What `make run` serves: the dashboard, the API and the gateway on one port."""
    settings.WARDEN_MCP_HOLD_POLL_SECONDS = 0.1
    UPSTREAM_CALLS.clear()
    decisions.servers_forget()
    with _Served(OneOriginApp(threads=4)) as served:
        yield f"http://127.0.0.1:{served.port}"


def test_one_origin_serves_the_gateway_and_the_api_while_a_call_is_held(
    org_a, upstream, one_origin, key, bob
):
    """A held tool call waits on the event loop: the API on the same port still answers,
    and the reviewer's approval (through that API) releases the call."""
    _register(org_a, upstream)

    async def body(client):
        return await client.call_tool("refund", {"amount": 7})

    outcome: dict[str, Any] = {}
    held = threading.Thread(
        target=_closing(lambda: outcome.update(result=_run(f"{one_origin}/mcp/files", key, body))),
        daemon=True,
    )
    held.start()
    request = wait_until(
        _closing_read(lambda: ApprovalRequest.objects.filter(action="mcp.files.refund").first()),
        what="the hold",
    )
    with httpx.Client(base_url=one_origin, timeout=10) as http:
        check = http.post(
            "/api/v1/check",
            json={"action": "mcp.files.echo", "arguments": {"text": "x"}},
            headers={"X-API-Key": key},
        )
        assert (check.status_code, check.json()["decision"]) == (200, "allow")
        assert http.get("/healthz").json()["status"] == "ok"
        assert http.get("/accounts/login/").status_code == 200
        assert http.post("/mcp/nope", json={}).status_code == 401  # the gateway's own answer
        http.cookies.clear()
    api = APIClient()
    api.force_login(bob)
    assert (
        api.post(f"/api/v1/actions/{request.action_id}/approve", {}, format="json").status_code
        == 200
    )
    held.join(timeout=30)
    assert not held.is_alive()
    assert _text(outcome["result"]) == "refunded 7"
