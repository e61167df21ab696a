"""The MCP gateway: an ASGI app serving ``/mcp/{name}`` over streamable HTTP, built on the
official ``mcp`` SDK on both sides (its lowlevel ``Server`` and session manager toward the MCP
client, its ``Client`` toward the upstream server).

Every request is authenticated with the agent's key and resolved to a registered server of
the key's organisation before anything reaches the upstream (401 / 404 / 403 otherwise).
``tools/list`` hides tools the agent's policy blocks outright; ``tools/call`` is a check of
``mcp.{name}.{tool}`` (allow: forwarded and its outcome recorded; block: a tool error;
requires_approval: held or answered as pending, per the server's ``hold``). Other requests
are forwarded as they are.

All database work runs in worker threads (``sync_to_async(thread_sensitive=False)``); a held
call waits on the event loop (a poll of its approval every ``WARDEN_MCP_HOLD_POLL_SECONDS``,
with a progress notification each time), never in a thread that checks need.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import anyio
import httpx2
import mcp_types as types
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server import Server, ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from starlette.types import Receive, Scope, Send

from agents.checks import CheckResult
from agents.mcp import decisions
from agents.mcp.decisions import Caller, Upstream
from approvals.models import ApprovalRequest
from wardenproject.errors import Conflict, DomainError, error_answer
from webhooks.delivery import url_address_problem

logger = logging.getLogger(__name__)

PATH_RE = re.compile(r"^/mcp/([a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?)/?$")
CALLER_KEY = "warden.caller"
# JSON-RPC error codes of the gateway (the implementation-defined server-error range).
UPSTREAM_UNAVAILABLE = -32010
UPSTREAM_TIMEOUT = -32011
UPSTREAM_INVALID = -32012
GATEWAY_ERROR = -32013
MAX_SESSION_BINDINGS = 100_000

T = TypeVar("T")


def hold_poll_seconds() -> float:
    return float(getattr(settings, "WARDEN_MCP_HOLD_POLL_SECONDS", 1))


def db_threads() -> int:
    return int(getattr(settings, "WARDEN_MCP_DB_THREADS", 16))


class DbThreads:
    """The gateway's own threads for database work: each keeps its connection (as a web
    worker does, up to CONN_MAX_AGE), and all of them are closed when the gateway stops."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="mcp-db")

    def __call__(self, fn: Callable[..., T]) -> Callable[..., Awaitable[T]]:
        return sync_to_async(fn, thread_sensitive=False, executor=self.executor)

    def close(self) -> None:
        """Close every worker thread's connections: one job per thread (a barrier keeps
        each job on a thread of its own), then stop the pool."""
        barrier = threading.Barrier(self.size, timeout=5)

        def close_here() -> None:
            connections.close_all()
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()

        for _ in range(self.size):
            self.executor.submit(close_here)
        self.executor.shutdown(wait=True)


def _text_result(text: str, *, error: bool, meta: dict[str, Any] | None = None) -> Any:
    return types.CallToolResult(
        content=[types.TextContent(text=text)],
        is_error=error,
        _meta={"warden": meta} if meta else None,
    )


# --- Upstream connections ---------------------------------------------------------------------


class _Link:
    """One open ``Client`` to an upstream server, shared by every caller of that server in
    this process; opened on first use, replaced when the server's row changes or the
    connection breaks."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.client: Client | None = None
        self.error: BaseException | None = None
        self.ready = anyio.Event()
        self.closed = anyio.Event()
        self.dead = False

    async def run(self) -> None:
        upstream = self.upstream
        try:
            problem = await anyio.to_thread.run_sync(url_address_problem, upstream.url)
            if problem:
                raise MCPError(UPSTREAM_UNAVAILABLE, f"The upstream URL is refused: {problem}")
            timeout = httpx2.Timeout(upstream.timeout)
            http = create_mcp_http_client(headers=upstream.headers or None, timeout=timeout)
            async with (
                http,
                Client(
                    streamable_http_client(upstream.url, http_client=http),
                    read_timeout_seconds=upstream.timeout,
                    cache=None,
                ) as client,
            ):
                self.client = client
                self.ready.set()
                await self.closed.wait()
        except Exception as exc:  # upstream down or not MCP: every waiter is told
            self.error = exc
        finally:
            self.dead = True
            self.ready.set()


class Upstreams:
    def __init__(self) -> None:
        self._links: dict[int, _Link] = {}
        self._tg: anyio.abc.TaskGroup | None = None

    def bind(self, tg: anyio.abc.TaskGroup | None) -> None:
        self._tg = tg

    def spawn(self, task: Callable[[], Awaitable[None]]) -> None:
        """Run ``task`` in the app's task group (it outlives the request)."""
        assert self._tg is not None, "the gateway's lifespan has not started"
        self._tg.start_soon(task)

    async def client(self, upstream: Upstream) -> Client:
        link = self._links.get(upstream.pk)
        if (
            link is not None
            and link.client is not None
            and not link.dead
            and link.upstream.version == upstream.version
        ):
            return link.client  # the common case: open already, nothing to wait for
        if link is None or link.dead or link.upstream.version != upstream.version:
            if link is not None:
                link.closed.set()
            link = self._links[upstream.pk] = _Link(upstream)
            self.spawn(link.run)
        with anyio.fail_after(upstream.timeout):
            await link.ready.wait()
        if link.client is None or link.dead:
            self.discard(upstream, link)
            error = link.error
            if isinstance(error, MCPError):
                raise error
            raise MCPError(
                UPSTREAM_UNAVAILABLE,
                f"The upstream MCP server {upstream.name!r} is unavailable: {_describe(error)}",
            )
        return link.client

    def discard(self, upstream: Upstream, link: _Link | None = None) -> None:
        current = self._links.get(upstream.pk)
        if current is not None and (link is None or current is link):
            current.closed.set()
            del self._links[upstream.pk]

    def close_all(self) -> None:
        for link in self._links.values():
            link.closed.set()
        self._links.clear()


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "no connection"
    if isinstance(error, BaseExceptionGroup) and error.exceptions:
        return _describe(error.exceptions[0])
    text = str(error) or type(error).__name__
    return text[:300]


# --- The gateway ------------------------------------------------------------------------------


class Gateway:
    def __init__(self) -> None:
        self.upstreams = Upstreams()
        self.db = DbThreads(db_threads())
        self.server: Server[Any] = Server(
            "warden-mcp-gateway",
            version="1",
            instructions="Warden checks every tool call against the agent's policy.",
            # Mcp-Param-* headers are the upstream's to validate (our client to it sends its
            # own); without this the SDK would run tools/list (upstream) before every call.
            get_tool_input_schema=_no_schema,
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
            on_list_resources=self.list_resources,
            on_list_resource_templates=self.list_resource_templates,
            on_read_resource=self.read_resource,
            on_list_prompts=self.list_prompts,
            on_get_prompt=self.get_prompt,
            on_completion=self.completion,
        )

    # --- forwarding helpers ---

    async def _forward(self, caller: Caller, call: Callable[[Client], Awaitable[T]]) -> T:
        """Run ``call`` on the upstream's client within its timeout; upstream failures
        become MCP errors that say what went wrong."""
        upstream = caller.upstream
        try:
            client = await self.upstreams.client(upstream)
            with anyio.fail_after(upstream.timeout):
                return await call(client)
        except MCPError:
            raise
        except TimeoutError:
            raise MCPError(
                UPSTREAM_TIMEOUT,
                f"The upstream MCP server {upstream.name!r} did not answer within "
                f"{upstream.timeout:g} s.",
            ) from None
        except Exception as exc:
            self.upstreams.discard(upstream)
            code = UPSTREAM_INVALID if _is_validation(exc) else UPSTREAM_UNAVAILABLE
            what = "answered with an invalid message" if code == UPSTREAM_INVALID else "failed"
            raise MCPError(
                code, f"The upstream MCP server {upstream.name!r} {what}: {_describe(exc)}"
            ) from None

    # --- handlers ---

    async def list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        caller = _caller(ctx)
        cursor = params.cursor if params is not None else None
        result = await self._forward(caller, lambda c: c.list_tools(cursor=cursor))
        hidden = await self.db(decisions.tools_hidden)(
            caller=caller, names=[tool.name for tool in result.tools]
        )
        if hidden:
            result = result.model_copy(
                update={"tools": [t for t in result.tools if t.name not in hidden]}
            )
        return result

    async def call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        caller = _caller(ctx)
        tool, arguments = params.name, dict(params.arguments or {})
        session_id = _session_id(ctx)
        if caller.upstream.hold == "return_pending":
            earlier = await self.db(decisions.earlier_hold)(
                caller=caller, tool=tool, arguments=arguments
            )
            if earlier is not None and earlier.status == "approved":
                return await self._run(ctx, caller, earlier.action_id, tool, arguments, session_id)
            if earlier is not None:
                return _pending_result(earlier.action_id, earlier.expires_at)
        try:
            check: CheckResult = await self.db(decisions.tool_check)(
                caller=caller, tool=tool, arguments=arguments, session_id=session_id
            )
        except DomainError as exc:
            return _text_result(f"Warden refused the call: {exc.detail}", error=True)
        if check.decision == "allow":
            return await self._run(ctx, caller, check.action_id, tool, arguments, session_id, check)
        if check.decision == "block":
            reason = check.message or check.reason
            return _text_result(
                f"Blocked by Warden: {reason}",
                error=True,
                meta={"decision": "block", "action_id": check.action_id, "reason": reason},
            )
        if caller.upstream.hold == "return_pending":
            return _pending_result(check.action_id, check.expires_at)
        return await self._hold(ctx, caller, check, tool, arguments, session_id)

    async def _hold(
        self,
        ctx: ServerRequestContext[Any],
        caller: Caller,
        check: CheckResult,
        tool: str,
        arguments: dict[str, Any],
        session_id: str,
    ) -> types.CallToolResult:
        """Keep the call open until the approval is decided (progress notifications while
        it waits), then run it or answer the denial / expiry."""
        action_id = check.action_id
        started = time.monotonic()
        total = (
            max(1.0, (check.expires_at - check.created_at).total_seconds())
            if check.expires_at
            else None
        )
        poll = hold_poll_seconds()
        while True:
            state = await self.db(decisions.hold_state)(action_id=action_id)
            if state.status != ApprovalRequest.Status.PENDING:
                break
            if state.expires_at is not None:  # an escalation moves the deadline
                total = max(1.0, (state.expires_at - check.created_at).total_seconds())
            waited = time.monotonic() - started
            await ctx.session.report_progress(
                min(waited, total) if total else waited,
                total,
                f"Waiting for a reviewer to approve {action_id}",
            )
            await anyio.sleep(poll)
        meta = {"decision": "requires_approval", "action_id": action_id, "status": state.status}
        if state.status == ApprovalRequest.Status.APPROVED:
            try:
                await self.db(decisions.hold_claim)(
                    caller=caller, action_id=action_id, arguments=arguments
                )
            except Conflict as exc:
                return _text_result(f"Warden: {exc.detail}", error=True, meta=meta)
            return await self._run(ctx, caller, action_id, tool, arguments, session_id)
        if state.status == ApprovalRequest.Status.DENIED:
            note = f": {state.notes}" if state.notes else "."
            return _text_result(f"Denied by a reviewer{note}", error=True, meta=meta)
        if state.status == ApprovalRequest.Status.EXPIRED:
            return _text_result(
                "The approval request expired without a decision.", error=True, meta=meta
            )
        return _text_result(f"The approval request was {state.status}.", error=True, meta=meta)

    async def _run(
        self,
        ctx: ServerRequestContext[Any],
        caller: Caller,
        action_id: str,
        tool: str,
        arguments: dict[str, Any],
        session_id: str,
        fresh: CheckResult | None = None,
    ) -> types.CallToolResult:
        """Forward an allowed (``fresh``: its check) or approved call; record its outcome."""

        def outcome(status: str, error: str | None) -> None:
            self._outcome(
                caller=caller,
                action_id=action_id,
                tool=tool,
                session_id=session_id,
                fresh=fresh,
                status=status,
                error=error,
            )

        async def progress(value: float, total: float | None, message: str | None) -> None:
            await ctx.session.report_progress(value, total, message)  # the upstream's, relayed

        try:
            result = await self._forward(
                caller, lambda c: c.call_tool(tool, arguments, progress_callback=progress)
            )
        except MCPError as exc:
            outcome("failed", exc.message)
            raise
        if result.is_error:
            text = " ".join(
                block.text for block in result.content if isinstance(block, types.TextContent)
            )
            outcome("failed", text or "The tool returned an error.")
        else:
            outcome("success", None)
        return result

    def _outcome(self, **kwargs: Any) -> None:
        """Recorded after the answer, off the call's latency."""
        action_id = kwargs["action_id"]

        async def record() -> None:
            try:
                await self.db(decisions.outcome_record)(**kwargs)
            except Exception:
                logger.exception("could not record the outcome of %s", action_id)

        self.upstreams.spawn(record)

    async def list_resources(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        cursor = params.cursor if params is not None else None
        return await self._forward(_caller(ctx), lambda c: c.list_resources(cursor=cursor))

    async def list_resource_templates(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        cursor = params.cursor if params is not None else None
        return await self._forward(_caller(ctx), lambda c: c.list_resource_templates(cursor=cursor))

    async def read_resource(
        self, ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        return await self._forward(_caller(ctx), lambda c: c.read_resource(params.uri))

    async def list_prompts(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        cursor = params.cursor if params is not None else None
        return await self._forward(_caller(ctx), lambda c: c.list_prompts(cursor=cursor))

    async def get_prompt(
        self, ctx: ServerRequestContext[Any], params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        return await self._forward(
            _caller(ctx), lambda c: c.get_prompt(params.name, params.arguments)
        )

    async def completion(
        self, ctx: ServerRequestContext[Any], params: types.CompleteRequestParams
    ) -> types.CompleteResult:
        return await self._forward(
            _caller(ctx),
            lambda c: c.complete(
                params.ref, params.argument.model_dump(), params.context_arguments
            ),
        )


def _no_schema(name: str) -> None:
    return None


def _is_validation(exc: BaseException) -> bool:
    from pydantic import ValidationError

    if isinstance(exc, BaseExceptionGroup):
        return any(_is_validation(e) for e in exc.exceptions)
    return isinstance(exc, ValidationError | ValueError)


def _caller(ctx: ServerRequestContext[Any]) -> Caller:
    request = ctx.request
    caller = request.scope.get(CALLER_KEY) if request is not None else None
    if caller is None:  # never: the ASGI app resolves every request first
        raise MCPError(GATEWAY_ERROR, "The request was not authenticated.")
    return caller


def _session_id(ctx: ServerRequestContext[Any]) -> str:
    request = ctx.request
    return (request.headers.get("mcp-session-id") or "") if request is not None else ""


def _pending_result(action_id: str, expires_at: Any) -> types.CallToolResult:
    until = f" until {expires_at.isoformat()}" if expires_at else ""
    return _text_result(
        f"Held by Warden for a reviewer's approval (action {action_id}{until}). "
        "Call the tool again with the same arguments once it is approved; it then runs once.",
        error=True,
        meta={"decision": "requires_approval", "action_id": action_id, "status": "pending"},
    )


# --- ASGI -------------------------------------------------------------------------------------


class GatewayApp:
    """The ASGI application: ``/mcp/{name}`` (and ``/healthz``)."""

    def __init__(self) -> None:
        self.gateway = Gateway()
        self.manager = StreamableHTTPSessionManager(app=self.gateway.server)
        # Mcp-Session-Id -> (server, key) that opened it: a session is only usable by them.
        self._sessions: OrderedDict[str, tuple[int, int]] = OrderedDict()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope.get("path", "")
        if path == "/healthz":
            await _json(send, 200, {"status": "ok"})
            return
        match = PATH_RE.match(path)
        if match is None:
            await _json(send, 404, {"code": "not_found", "detail": "Not found.", "field": None})
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            caller = await self.gateway.db(decisions.caller_resolve)(
                raw_key=_raw_key(headers), name=match.group(1)
            )
        except Exception as exc:
            answer = error_answer(exc, "mcp gateway")
            if answer is None:
                logger.exception("mcp gateway: resolving the caller failed")
                answer = (503, {"code": "unavailable", "detail": "Try again.", "field": None}, {})
            status, body, extra = answer
            await _json(send, status, body, extra)
            return
        owner = (caller.upstream.pk, caller.key_id)
        session_id = headers.get("mcp-session-id")
        # Fail closed: a session id this process did not hand to this (server, key) is 404.
        if session_id and self._sessions.get(session_id) != owner:
            await _json(
                send, 404, {"code": "not_found", "detail": "No such session.", "field": None}
            )
            return
        scope = {**scope, CALLER_KEY: caller}
        await self.manager.handle_request(scope, receive, self._binding_send(send, owner))

    def _binding_send(self, send: Send, owner: tuple[int, int]) -> Send:
        async def bound(message: Any) -> None:
            if message["type"] == "http.response.start":
                for name, value in message.get("headers", []):
                    if name.lower() == b"mcp-session-id":
                        self._sessions[value.decode("latin-1")] = owner
                        while len(self._sessions) > MAX_SESSION_BINDINGS:
                            self._sessions.popitem(last=False)
            await send(message)

        return bound

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        async with anyio.create_task_group() as tg, self.manager.run():
            self.gateway.upstreams.bind(tg)
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
            self.gateway.upstreams.close_all()
            tg.cancel_scope.cancel()
        await anyio.to_thread.run_sync(self.gateway.db.close)
        await send({"type": "lifespan.shutdown.complete"})


def _raw_key(headers: dict[str, str]) -> str | None:
    key = headers.get("x-api-key", "").strip()
    if key:
        return key
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


async def _json(
    send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> None:
    raw = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(raw)).encode()),
                *((k.encode(), v.encode()) for k, v in (headers or {}).items()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": raw})


def gateway_app() -> GatewayApp:
    return GatewayApp()


class OneOriginApp:
    """The gateway and the dashboard on one port (``warden_mcp serve --dashboard``, what
    ``make run`` serves): ``/mcp/...`` goes to the gateway, on this event loop; every other
    path to Django's WSGI application in a2wsgi's pool of ``threads`` threads. A held tool
    call therefore waits on the event loop, never in a thread that pages and checks need.
    Production keeps them apart (gunicorn, and the gateway behind a proxy route)."""

    def __init__(self, *, threads: int) -> None:
        from a2wsgi import WSGIMiddleware
        from django.core.wsgi import get_wsgi_application

        self.gateway = gateway_app()
        self.dashboard = WSGIMiddleware(get_wsgi_application(), workers=threads)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        to_gateway = scope["type"] == "lifespan" or scope.get("path", "").startswith("/mcp/")
        if to_gateway:
            await self.gateway(scope, receive, send)
        elif scope["type"] == "http":
            await self.dashboard(scope, receive, send)
