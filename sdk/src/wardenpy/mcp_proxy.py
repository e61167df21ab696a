"""``wardenpy mcp-proxy``: a stdio MCP server put behind Warden (the local bridge).

A desktop MCP client runs ``wardenpy mcp-proxy --server NAME -- <server command>`` in place of
the server. The bridge starts the real server as its child and relays newline-delimited
JSON-RPC between the two unchanged, except ``tools/call``: each one is first a Warden check of
action ``mcp.{NAME}.{tool}`` with the call's arguments.

* allow: forwarded; the server's answer goes back as is and its outcome is reported
  (``failed`` when the result has ``isError`` or the answer is a JSON-RPC error).
* block: answered with a tool error carrying the reason; the server never sees the call.
* requires_approval: the bridge waits for the reviewer (long-poll, sending
  ``notifications/progress`` when the client gave a ``progressToken``), claims the approved
  action (so it runs at most once) and forwards it, or answers the denial as a tool error.
* Warden unreachable or refusing the check: a tool error, never forwarded (fail closed).

It is a raw relay on the standard library, not the ``mcp`` SDK's ``stdio_server`` /
``stdio_client``: those parse every message into the installed SDK version's models and write
it back re-serialised (a message that version does not know is dropped, a bad line reaches the
session as an exception without its text), ``stdio_client`` hands the child only a whitelist
of environment variables, and ``stdio_server`` takes over the process's fd 0/1. A bridge must
relay what it does not inspect exactly and give the server the environment the client's
configuration set.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import json
import logging
import os
import queue
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from .client import Client
from .config import ENV_API_KEY
from .exceptions import (
    AlreadyClaimedError,
    APIError,
    AuthenticationError,
    ConflictError,
    RateLimitedError,
    ServerUnreachableError,
    WardenError,
)
from .types import ActionState, CheckResult

logger = logging.getLogger("wardenpy.mcp")

SERVER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# One JSON-RPC message per line; a tool result with images can be megabytes.
MAX_LINE_BYTES = 64 * 1024 * 1024
# Without expires_at from the check, how long a held call waits for a reviewer.
DEFAULT_MAX_WAIT = 3600.0
# Past expires_at, the server still needs a moment to mark the request expired.
EXPIRY_GRACE = 30.0
SHUTDOWN_GRACE = 5.0

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _loads(line: bytes) -> Any:
    # NaN/Infinity are not JSON: a message the server might read differently is refused.
    return json.loads(line.decode("utf-8"), parse_constant=_reject_constant)


def _dumps(message: Any) -> bytes:
    return (json.dumps(message, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def _id_key(request_id: Any) -> str:
    """A dict key for a JSON-RPC id that keeps ``1`` and ``"1"`` apart."""
    return json.dumps(request_id, sort_keys=True)


def _seconds_until(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        when = dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return (when - dt.datetime.now(dt.timezone.utc)).total_seconds()


def tool_error(request_id: Any, text: str, action_id: str | None = None, status: str = "") -> dict:
    """A JSON-RPC answer carrying an MCP tool error result (``isError: true``)."""
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": True}
    if action_id:
        # The same shape as the hosted gateway's, so a client can read either.
        decision = "block" if status == "blocked" else "requires_approval"
        result["_meta"] = {
            "warden": {"decision": decision, "action_id": action_id, "status": status}
        }
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def rpc_error(request_id: Any, code: int, message: str) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


def _error_text(result: Any) -> str:
    """The text a failed tool result carries, for the outcome's ``error``."""
    if isinstance(result, dict):
        parts = [
            item.get("text", "")
            for item in result.get("content") or []
            if isinstance(item, dict) and item.get("type") == "text"
        ]
        text = "\n".join(p for p in parts if isinstance(p, str))
        if text:
            return text
    return "the tool reported an error (isError)"


@dataclass
class ProxyOptions:
    server: str
    command: list[str]
    agent: str | None = None
    session_id: str | None = None
    progress_interval: float = 10.0
    max_wait: float | None = None


class _Writer:
    """Writes lines to the MCP client from a thread of its own, in order, so a client that is
    slow to read never stalls the event loop (and the Warden waits running on it)."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._queue: queue.Queue[bytes | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="mcp-proxy-writer", daemon=True)
        self._thread.start()

    def send(self, data: bytes) -> None:
        self._queue.put(data)

    def _run(self) -> None:
        while True:
            data = self._queue.get()
            if data is None:
                return
            try:
                self._out.write(data)
                self._out.flush()
            except (OSError, ValueError):
                return  # the client went away; the reader sees EOF and shuts down

    def close(self, timeout: float = 2.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)


class Bridge:
    """One client, one server subprocess, one Warden client."""

    def __init__(
        self,
        options: ProxyOptions,
        client: Client,
        *,
        stdin: BinaryIO | None = None,
        stdout: BinaryIO | None = None,
    ) -> None:
        self.options = options
        self.client = client
        self._stdin = stdin if stdin is not None else sys.stdin.buffer
        self._writer = _Writer(stdout if stdout is not None else sys.stdout.buffer)
        # Long-polls hold a thread each; the default executor (cores + 4) is too small.
        self._pool = concurrent.futures.ThreadPoolExecutor(64, thread_name_prefix="mcp-proxy")
        self._process: asyncio.subprocess.Process | None = None
        self._write_lock = asyncio.Lock()
        # tools/call ids forwarded to the server -> (action_id, tool), to report the outcome
        self._in_flight: dict[str, tuple[str | None, str]] = {}
        # tools/call ids being checked or held -> the task doing it (cancellable by the client)
        self._held: dict[str, asyncio.Task[None]] = {}
        self._stop = asyncio.Event()

    # -- plumbing -------------------------------------------------------------
    async def _warden(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))

    def _to_client(self, message: dict) -> None:
        self._writer.send(_dumps(message))

    async def _to_server(self, message: Any) -> None:
        process = self._process
        if process is None or process.stdin is None or process.stdin.is_closing():
            raise ConnectionError("the MCP server's stdin is closed")
        async with self._write_lock:
            process.stdin.write(_dumps(message))
            await process.stdin.drain()

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop(ENV_API_KEY, None)  # the server has no business with the Warden key
        return env

    # -- lifecycle --------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        try:
            # Resolved like a shell would, so `npx` finds `npx.cmd` on Windows too.
            program = shutil.which(self.options.command[0]) or self.options.command[0]
            self._process = await asyncio.create_subprocess_exec(
                program,
                *self.options.command[1:],
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env=self._child_env(),
                limit=MAX_LINE_BYTES,
            )
        except OSError as exc:
            logger.error("could not start the MCP server %r: %s", self.options.command[0], exc)
            self._writer.close()
            return 127
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._stop.set)

        lines: asyncio.Queue[bytes | None] = asyncio.Queue()
        threading.Thread(
            target=self._read_stdin, args=(loop, lines), name="mcp-proxy-reader", daemon=True
        ).start()
        server_reader = asyncio.create_task(self._relay_server())
        client_reader = asyncio.create_task(self._relay_client(lines))
        stopped = asyncio.create_task(self._stop.wait())
        await asyncio.wait(
            {server_reader, client_reader, stopped}, return_when=asyncio.FIRST_COMPLETED
        )
        server_went_first = server_reader.done()
        code = await self._shutdown(server_reader, client_reader, stopped)
        # The server's exit code when it ended the session; 0 when the client (or a signal) did.
        return code if server_went_first else 0

    def _read_stdin(self, loop: asyncio.AbstractEventLoop, lines: asyncio.Queue) -> None:
        # A thread, not connect_read_pipe: stdin may be a pipe, a file or a terminal.
        while True:
            try:
                line = self._stdin.readline()
            except (OSError, ValueError):
                line = b""
            if not line:
                loop.call_soon_threadsafe(lines.put_nowait, None)
                return
            loop.call_soon_threadsafe(lines.put_nowait, line)

    async def _shutdown(self, server_reader: asyncio.Task, *tasks: asyncio.Task) -> int:
        process = self._process
        assert process is not None
        for task in self._held.values():
            task.cancel()  # the client is gone or the server is: nobody waits for these
        if process.returncode is None and process.stdin is not None:
            # The MCP stdio shutdown: close the server's stdin, let it exit, then signal it.
            with contextlib.suppress(OSError):
                process.stdin.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(process.wait(), SHUTDOWN_GRACE)
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), SHUTDOWN_GRACE)
                except asyncio.TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()
        # What the server wrote before it exited still reaches the client.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(server_reader), 2.0)
        for task in (server_reader, *tasks):
            task.cancel()
        await asyncio.gather(server_reader, *tasks, *self._held.values(), return_exceptions=True)
        self._fail_in_flight("the MCP server exited before answering")
        self._writer.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        return process.returncode or 0

    def _fail_in_flight(self, why: str) -> None:
        for key, (action_id, tool) in list(self._in_flight.items()):
            self._in_flight.pop(key, None)
            self._to_client(rpc_error(json.loads(key), INTERNAL_ERROR, why))
            if action_id:
                self.client.report_outcome_later(action_id, "failed", why)
            logger.warning("tools/call %s: %s", tool, why)

    # -- server -> client -------------------------------------------------------
    async def _relay_server(self) -> None:
        process = self._process
        assert process is not None and process.stdout is not None
        while True:
            try:
                line = await process.stdout.readline()
            except ValueError:  # a line over MAX_LINE_BYTES
                logger.error("the MCP server wrote a line over %d bytes; stopping", MAX_LINE_BYTES)
                return
            if not line:
                return
            if self._in_flight:
                self._note_answer(line)
            # Byte for byte: nothing the server says is the bridge's to change.
            self._writer.send(line if line.endswith(b"\n") else line + b"\n")

    def _note_answer(self, line: bytes) -> None:
        try:
            message = _loads(line)
        except ValueError:
            return
        for item in message if isinstance(message, list) else [message]:
            if not isinstance(item, dict) or "method" in item or "id" not in item:
                continue
            entry = self._in_flight.pop(_id_key(item["id"]), None)
            if entry is None:
                continue
            action_id, tool = entry
            if "error" in item:
                error = item["error"]
                text = error.get("message") if isinstance(error, dict) else None
                status, why = "failed", f"JSON-RPC error: {text or error}"
            elif isinstance(item.get("result"), dict) and item["result"].get("isError") is True:
                status, why = "failed", _error_text(item["result"])
            else:
                status, why = "success", None
            logger.info("tools/call %s -> %s", tool, status)
            if action_id:
                self.client.report_outcome_later(action_id, status, why)

    # -- client -> server -------------------------------------------------------
    async def _relay_client(self, lines: asyncio.Queue) -> None:
        while True:
            line = await lines.get()
            if line is None:
                return
            if not line.strip():
                continue
            try:
                message = _loads(line)
            except ValueError:
                # Never forward what the bridge could not read: the server might read a
                # tools/call in it that the bridge did not see.
                self._to_client(rpc_error(None, PARSE_ERROR, "Parse error"))
                continue
            if isinstance(message, list):
                if not message:
                    self._to_client(rpc_error(None, INVALID_REQUEST, "Invalid Request"))
                for item in message:  # a batch: each message on its own (answers come apart)
                    await self._from_client(item)
            else:
                await self._from_client(message)

    async def _from_client(self, message: Any) -> None:
        if not isinstance(message, dict):
            self._to_client(rpc_error(None, INVALID_REQUEST, "Invalid Request"))
            return
        method = message.get("method")
        if method == "tools/call":
            if "id" not in message:
                logger.warning("dropped a tools/call sent as a notification (no id)")
                return
            key = _id_key(message["id"])
            if key in self._held or key in self._in_flight:
                # Two live requests with one id could not be told apart in the answers.
                self._to_client(
                    rpc_error(message["id"], INVALID_REQUEST, "a request with this id is running")
                )
                return
            task = asyncio.create_task(self._tools_call(message))
            self._held[key] = task
            task.add_done_callback(lambda _t, key=key: self._held.pop(key, None))
            return
        if method == "notifications/cancelled":
            params = message.get("params")
            request_id = params.get("requestId") if isinstance(params, dict) else None
            task = self._held.get(_id_key(request_id))
            if task is not None:  # the server never saw that request: nothing to tell it
                task.cancel()
                return
        try:
            await self._to_server(message)
        except (ConnectionError, OSError):
            if "id" in message and method is not None:
                self._to_client(rpc_error(message["id"], INTERNAL_ERROR, "the MCP server exited"))

    # -- tools/call -------------------------------------------------------------
    async def _tools_call(self, message: dict) -> None:
        request_id = message["id"]
        params = message.get("params")
        if not isinstance(params, dict) or not isinstance(params.get("name"), str):
            self._to_client(rpc_error(request_id, INVALID_PARAMS, "params.name must be a string"))
            return
        arguments = params.get("arguments")
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            self._to_client(
                rpc_error(request_id, INVALID_PARAMS, "params.arguments must be an object")
            )
            return
        tool = params["name"]
        meta = params.get("_meta")
        progress_token = meta.get("progressToken") if isinstance(meta, dict) else None
        action = f"mcp.{self.options.server}.{tool}"
        try:
            result: CheckResult = await self._warden(
                self.client.check,
                self.options.agent,
                action,
                arguments,
                session_id=self.options.session_id,
                metadata={"mcp": {"server": self.options.server, "tool": tool, "via": "stdio"}},
            )
        except WardenError as exc:
            logger.warning("tools/call %s: %s; not forwarded", tool, exc)
            self._to_client(tool_error(request_id, _unavailable(exc)))
            return
        logger.info("tools/call %s -> %s (%s)", tool, result.decision, result.action_id)
        if result.allowed:
            await self._forward(message, result.action_id, tool)
        elif result.blocked:
            text = result.message or result.reason or "blocked by policy"
            if result.rule:
                text += f" (rule: {result.rule})"
            self._to_client(
                tool_error(
                    request_id,
                    f"Blocked by Warden: {text}. The tool was not called.",
                    result.action_id,
                    result.status or "blocked",
                )
            )
        elif not result.action_id:
            self._to_client(
                tool_error(request_id, "Warden held the call without an action id; not called.")
            )
        else:
            await self._hold(message, result, tool, arguments, progress_token)

    async def _forward(self, message: dict, action_id: str | None, tool: str) -> None:
        key = _id_key(message["id"])
        self._in_flight[key] = (action_id, tool)
        try:
            await self._to_server(message)
        except (ConnectionError, OSError):
            if self._in_flight.pop(key, None) is not None:
                self._to_client(rpc_error(message["id"], INTERNAL_ERROR, "the MCP server exited"))
                if action_id:
                    self.client.report_outcome_later(
                        action_id, "failed", "the MCP server exited before the call"
                    )

    async def _hold(
        self,
        message: dict,
        result: CheckResult,
        tool: str,
        arguments: dict[str, Any],
        progress_token: Any,
    ) -> None:
        request_id = message["id"]
        action_id = result.action_id
        assert action_id is not None
        max_wait = self._max_wait(result)
        started = time.monotonic()
        deadline = started + max_wait

        def notify(text: str) -> None:
            if progress_token is None:
                return
            # Progress is the seconds waited so far: it only grows, as MCP requires.
            params = {
                "progressToken": progress_token,
                "progress": round(time.monotonic() - started, 3),
                "message": text,
            }
            self._to_client(
                {"jsonrpc": "2.0", "method": "notifications/progress", "params": params}
            )

        notify(f"Waiting for a reviewer to approve {tool} in Warden (action {action_id})")
        state: ActionState | None = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            wait = max(1.0, min(self.options.progress_interval, remaining))
            try:
                state = await self._warden(self.client.get_action, action_id, wait=wait)
            except ServerUnreachableError as exc:
                logger.warning("waiting on %s: %s", action_id, exc)
                await asyncio.sleep(min(self.client.config.poll_interval, max(0.0, remaining)))
                state = None
            except WardenError as exc:
                self._to_client(tool_error(request_id, _unavailable(exc), action_id, "pending"))
                return
            if state is not None and not state.is_pending:
                break
            notify(f"Still waiting for approval of {tool} (action {action_id})")

        if state is None or state.is_pending:
            self._to_client(
                tool_error(
                    request_id,
                    f"No decision on {tool} within {max_wait:.0f}s (Warden action {action_id} "
                    "is still pending). The tool was not called.",
                    action_id,
                    "pending",
                )
            )
            return
        if state.status not in ("approved", "allowed"):
            self._to_client(tool_error(request_id, _denial(tool, state), action_id, state.status))
            return
        try:
            # Claimed for exactly these arguments, so an approval runs once, as approved.
            await self._warden(self.client.claim, action_id, arguments)
        except AlreadyClaimedError:
            self._to_client(
                tool_error(
                    request_id,
                    f"Warden action {action_id} was already claimed: the approved call ran "
                    "(or is running) elsewhere, so it was not run again.",
                    action_id,
                    "approved",
                )
            )
            return
        except ConflictError as exc:
            why = (
                "its arguments differ from the approved call's"
                if exc.code == "arguments_mismatch"
                else f"the action is {exc.status}"
            )
            self._to_client(
                tool_error(
                    request_id, f"{tool} can no longer run: {why}.", action_id, exc.status or ""
                )
            )
            return
        except WardenError as exc:
            self._to_client(tool_error(request_id, _unavailable(exc), action_id, "approved"))
            return
        notify(f"Approved; calling {tool}")
        await self._forward(message, action_id, tool)

    def _max_wait(self, result: CheckResult) -> float:
        until_expiry = _seconds_until(result.expires_at)
        wait = DEFAULT_MAX_WAIT if until_expiry is None else max(0.0, until_expiry) + EXPIRY_GRACE
        if self.options.max_wait is not None:
            wait = min(wait, self.options.max_wait)
        return wait


def _unavailable(exc: WardenError) -> str:
    if isinstance(exc, ServerUnreachableError):
        return f"Warden unavailable: {exc}. The tool was not called."
    if isinstance(exc, AuthenticationError):
        return "Warden refused the bridge's API key (WARDEN_API_KEY). The tool was not called."
    if isinstance(exc, RateLimitedError):
        return "Warden rate limit reached; try again later. The tool was not called."
    if isinstance(exc, APIError):
        detail = exc.detail or str(exc)
        return f"Warden could not check this call: {detail}. The tool was not called."
    return f"Warden unavailable: {exc}. The tool was not called."


def _denial(tool: str, state: ActionState) -> str:
    status = state.status or "denied"
    if status == "expired":
        text = f"The approval request for {tool} expired without a decision"
    elif status == "cancelled":
        text = f"The approval request for {tool} was cancelled"
    else:
        text = f"A reviewer denied {tool}"
        if state.decided_by:
            text += f" ({state.decided_by})"
    note = state.notes or (state.reason if status != "denied" else None)
    if note:
        text += f": {note}"
    return f"{text}. The tool was not called (Warden action {state.action_id})."


def run_proxy(options: ProxyOptions, client: Client) -> int:
    """Run the bridge until the client or the server goes away; the server's exit code."""
    return asyncio.run(Bridge(options, client).run())
