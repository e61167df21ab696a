"""``guard_tool`` / ``@guard``: check every call with Warden before the tool runs."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from .client import Client, _error_text, get_client
from .exceptions import (
    AlreadyClaimedError,
    ApprovalTimeoutError,
    ConfigurationError,
    ConflictError,
    PolicyDeniedError,
    WardenError,
)
from .types import ActionState, CheckResult, PendingApproval, WebhookEvent, to_jsonable
from .webhooks import Callback, registry

logger = logging.getLogger("wardenpy")

F = TypeVar("F", bound=Callable[..., Any])

APPROVAL_MODES = ("wait", "async", "webhook")
_SKIPPED_FIRST_PARAMS = ("self", "cls")


def bind_arguments(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """Arguments of a call keyed by parameter name, defaults applied, JSON-safe.

    ``*args`` appear under their parameter name as a list, ``**kwargs`` are merged into the
    top level, a leading ``self``/``cls`` is left out. Raises ``TypeError`` (as the call
    itself would) when the arguments do not fit the signature.
    """
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # some builtins have no signature
        arguments: dict[str, Any] = dict(kwargs)
        if args:
            arguments["args"] = list(args)
        return cast(dict[str, Any], to_jsonable(arguments))
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    params = signature.parameters
    first = next(iter(params), None)
    out: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        kind = params[name].kind
        if name == first and name in _SKIPPED_FIRST_PARAMS:
            continue
        if kind is inspect.Parameter.VAR_POSITIONAL:
            if value:
                out[name] = list(value)
        elif kind is inspect.Parameter.VAR_KEYWORD:
            for key, item in value.items():
                out.setdefault(key, item)
        else:
            out[name] = value
    return cast(dict[str, Any], to_jsonable(out))


def event_from_state(state: ActionState, tool_name: str, arguments: dict[str, Any]) -> WebhookEvent:
    """A :class:`WebhookEvent` for a decided action, as the async poller delivers it."""
    status = state.status
    if status in ("approved", "allowed"):
        event_type, native = "action_approved", "approval.approved"
    elif status == "expired":
        event_type, native = "action_denied", "approval.expired"
    elif status == "cancelled":
        event_type, native = "action_denied", "approval.cancelled"
    else:
        event_type, native = "action_denied", "approval.rejected"
    return WebhookEvent(
        event_type=event_type,
        action_id=state.action_id,
        tool_name=state.action or tool_name,
        context=state.arguments or dict(arguments),
        approved_by=state.decided_by,
        notes=state.notes or (state.reason if event_type == "action_denied" else None),
        raw=state.raw,
        warden_type=native,
        status=status,
    )


class _Guard:
    def __init__(
        self,
        tool_name: str,
        func: Callable[..., Any],
        approval_mode: str,
        on_approval: Callback | None,
        on_denial: Callback | None,
        agent: str | None,
        client: Client | None,
    ) -> None:
        self.tool_name = tool_name
        self.func = func
        self.approval_mode = approval_mode
        self.on_approval = on_approval
        self.on_denial = on_denial
        self.agent = agent
        self.client = client

    def _client(self) -> Client:
        return self.client if self.client is not None else get_client()

    # -- shared decisions -------------------------------------------------
    def _blocked(self, result: CheckResult) -> PolicyDeniedError:
        text = result.message or result.reason or "blocked by policy"
        return PolicyDeniedError(
            f"Tool {self.tool_name!r} is blocked: {text}",
            tool_name=self.tool_name,
            action_id=result.action_id,
            reason=result.reason,
            rule=result.rule,
            status=result.status or "blocked",
        )

    def _denied(self, state: ActionState) -> PolicyDeniedError:
        notes = state.notes or state.reason
        message = f"Tool call {self.tool_name!r} was {state.status or 'denied'}"
        if notes:
            message += f": {notes}"
        return PolicyDeniedError(
            message,
            tool_name=self.tool_name,
            action_id=state.action_id,
            reason=state.reason,
            rule=state.rule,
            status=state.status,
            notes=state.notes,
            decided_by=state.decided_by,
        )

    def _claim(
        self, client: Client, action_id: str, arguments: dict[str, Any] | None = None
    ) -> None:
        try:
            client.claim(action_id, arguments)
        except AlreadyClaimedError as exc:
            raise AlreadyClaimedError(
                f"Action {action_id} ({self.tool_name}) was already claimed by another worker; "
                "it ran (or is running) there, so it was not run again",
                status=exc.status,
                status_code=exc.status_code,
                code=exc.code,
                detail=exc.detail,
                body=exc.body,
            ) from exc
        except ConflictError as exc:
            why = (
                "its arguments differ from the approved call's"
                if exc.code == "arguments_mismatch"
                else f"action is {exc.status}"
            )
            raise PolicyDeniedError(
                f"Tool call {self.tool_name!r} can no longer run: {why}",
                tool_name=self.tool_name,
                action_id=action_id,
                status=exc.status,
            ) from exc

    def _claim_decided(self, client: Client, state: ActionState, arguments: dict[str, Any]) -> None:
        """Claim an approved action for exactly these arguments, or raise why it may not run."""
        if state.status in ("approved", "allowed"):
            self._claim(client, state.action_id, arguments)
            return
        raise self._denied(state)

    def _pending_result(
        self,
        client: Client,
        result: CheckResult,
        arguments: dict[str, Any],
        loop: asyncio.AbstractEventLoop | None,
    ) -> PendingApproval:
        action_id = cast(str, result.action_id)
        assert self.on_approval is not None and self.on_denial is not None
        # The client that made the check claims the action when its approval arrives by
        # webhook (handle_webhook), and reports the outcome.
        registry.register_action(
            action_id, self.tool_name, self.on_approval, self.on_denial, client
        )
        if self.approval_mode == "async":
            threading.Thread(
                target=self._poll_and_dispatch,
                args=(client, action_id, arguments, loop),
                name=f"wardenpy-approval-{action_id}",
                daemon=True,
            ).start()
        return PendingApproval(action_id=action_id, tool_name=self.tool_name)

    def _require_action_id(self, result: CheckResult) -> str:
        if not result.action_id:
            raise WardenError("Warden answered requires_approval without an action_id")
        return result.action_id

    # -- sync path --------------------------------------------------------
    def call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        arguments = bind_arguments(self.func, args, kwargs)
        client = self._client()
        result = client.check(self.agent, self.tool_name, arguments)
        run = functools.partial(self.func, *args, **kwargs)
        if result.allowed:
            return self._run_and_report(client, result.action_id, run)
        if result.blocked:
            raise self._blocked(result)
        action_id = self._require_action_id(result)
        if self.approval_mode == "wait":
            return self._resume(client, action_id, arguments, run)
        return self._pending_result(client, result, arguments, None)

    def _resume(
        self, client: Client, action_id: str, arguments: dict[str, Any], run: Callable[[], Any]
    ) -> Any:
        state = client.wait_for_decision(action_id, tool_name=self.tool_name)
        self._claim_decided(client, state, arguments)
        return self._run_and_report(client, action_id, run)

    def resume(self, action_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        arguments = bind_arguments(self.func, args, kwargs)  # same TypeError as a direct call
        run = functools.partial(self.func, *args, **kwargs)
        return self._resume(self._client(), action_id, arguments, run)

    @staticmethod
    def _run_and_report(client: Client, action_id: str | None, run: Callable[[], Any]) -> Any:
        try:
            value = run()
        except BaseException as exc:
            if action_id:
                client.report_outcome_later(action_id, "failed", _error_text(exc))
            raise
        if action_id:
            client.report_outcome_later(action_id, "success")
        return value

    # -- coroutine path ---------------------------------------------------
    async def acall(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        arguments = bind_arguments(self.func, args, kwargs)
        client = self._client()
        result = await asyncio.to_thread(client.check, self.agent, self.tool_name, arguments)
        run = functools.partial(self.func, *args, **kwargs)
        if result.allowed:
            return await self._arun_and_report(client, result.action_id, run)
        if result.blocked:
            raise self._blocked(result)
        action_id = self._require_action_id(result)
        if self.approval_mode == "wait":
            return await self._aresume(client, action_id, arguments, run)
        return self._pending_result(client, result, arguments, asyncio.get_running_loop())

    async def _aresume(
        self,
        client: Client,
        action_id: str,
        arguments: dict[str, Any],
        run: Callable[[], Awaitable[Any]],
    ) -> Any:
        state = await asyncio.to_thread(
            client.wait_for_decision, action_id, tool_name=self.tool_name
        )
        await asyncio.to_thread(self._claim_decided, client, state, arguments)
        return await self._arun_and_report(client, action_id, run)

    async def aresume(self, action_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        arguments = bind_arguments(self.func, args, kwargs)
        run = functools.partial(self.func, *args, **kwargs)
        return await self._aresume(self._client(), action_id, arguments, run)

    @staticmethod
    async def _arun_and_report(
        client: Client, action_id: str | None, run: Callable[[], Awaitable[Any]]
    ) -> Any:
        try:
            value = await run()
        except BaseException as exc:
            if action_id:
                client.report_outcome_later(action_id, "failed", _error_text(exc))
            raise
        if action_id:
            client.report_outcome_later(action_id, "success")
        return value

    # -- async approval mode ----------------------------------------------
    def _poll_and_dispatch(
        self,
        client: Client,
        action_id: str,
        arguments: dict[str, Any],
        loop: asyncio.AbstractEventLoop | None,
    ) -> None:
        try:
            state = client.wait_for_decision(action_id, tool_name=self.tool_name)
            event = event_from_state(state, self.tool_name, arguments)
        except (ApprovalTimeoutError, WardenError) as exc:
            kind = "sdk.timeout" if isinstance(exc, ApprovalTimeoutError) else "sdk.error"
            event = WebhookEvent(
                event_type="action_denied",
                action_id=action_id,
                tool_name=self.tool_name,
                context=dict(arguments),
                notes=str(exc),
                warden_type=kind,
                status="pending",
            )
        callback = registry.take(event)
        if callback is None:
            return  # already dispatched (e.g. by handle_webhook)
        if event.approved:
            try:
                self._claim(client, action_id)
            except AlreadyClaimedError:
                logger.info("wardenpy: %s already claimed elsewhere; not dispatching", action_id)
                return
            except (PolicyDeniedError, WardenError) as exc:
                logger.warning("wardenpy: could not claim %s: %s", action_id, exc)
                return
        try:
            _call_callback(callback, event, loop)
        except Exception as exc:  # noqa: BLE001 - runs in a daemon thread
            logger.exception("wardenpy: %s callback for %s raised", event.event_type, action_id)
            if event.approved:
                client.report_outcome_later(action_id, "failed", _error_text(exc))
            return
        if event.approved:
            client.report_outcome_later(action_id, "success")


def _call_callback(
    callback: Callback, event: WebhookEvent, loop: asyncio.AbstractEventLoop | None
) -> None:
    result = callback(event)
    if inspect.isawaitable(result):
        if loop is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(_await(result), loop).result()
        else:
            asyncio.run(_await(result))


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def guard_tool(
    tool_name: str,
    func: F,
    approval_mode: str = "wait",
    on_approval: Callback | None = None,
    on_denial: Callback | None = None,
    *,
    agent: str | None = None,
    client: Client | None = None,
) -> F:
    """Wrap ``func`` so every call is checked by Warden as action ``tool_name``.

    * allow: runs ``func`` and returns its result; the outcome is reported in the background.
    * block: raises :class:`PolicyDeniedError`; ``func`` does not run.
    * requires_approval: ``wait`` long-polls for the decision, claims the action and runs
      ``func`` once; ``async`` / ``webhook`` return :class:`PendingApproval` at once and
      call ``on_approval(event)`` / ``on_denial(event)`` later (``func`` is not re-run for
      you: run it from ``event.context`` in the callback). The action is claimed before
      ``on_approval`` runs, so it runs at most once, and its outcome is reported after.

    ``agent`` names the agent when the SDK is configured with an org key. ``client``
    overrides the process-wide client from :func:`wardenpy.configure`. Coroutine functions
    get a coroutine wrapper that never blocks the event loop. The wrapper has
    ``.resume(action_id, *args, **kwargs)`` to wait for and run an already-created action.
    """
    if approval_mode not in APPROVAL_MODES:
        raise ConfigurationError(
            f"approval_mode must be one of {', '.join(APPROVAL_MODES)}, got {approval_mode!r}",
            setting="approval_mode",
        )
    if approval_mode in ("async", "webhook"):
        if not callable(on_approval) or not callable(on_denial):
            raise WardenError(
                f"approval_mode={approval_mode!r} needs both on_approval and on_denial callbacks"
            )
        registry.register_tool(tool_name, on_approval, on_denial, client=client)
    if not callable(func):
        raise TypeError("guard_tool() needs a callable to wrap")
    core = _Guard(tool_name, func, approval_mode, on_approval, on_denial, agent, client)

    wrapper: Any
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            return await core.acall(args, kwargs)

        async def aresume(action_id: str, *args: Any, **kwargs: Any) -> Any:
            return await core.aresume(action_id, args, kwargs)

        async_wrapper.resume = aresume  # type: ignore[attr-defined]
        wrapper = async_wrapper
    else:

        @functools.wraps(func)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            return core.call(args, kwargs)

        def resume(action_id: str, *args: Any, **kwargs: Any) -> Any:
            return core.resume(action_id, args, kwargs)

        sync_wrapper.resume = resume  # type: ignore[attr-defined]
        wrapper = sync_wrapper
    wrapper.tool_name = tool_name
    wrapper.approval_mode = approval_mode
    wrapper.__wardenpy_guarded__ = True
    return cast(F, wrapper)


def guard(
    tool_name: str | Callable[..., Any] | None = None,
    approval_mode: str = "wait",
    on_approval: Callback | None = None,
    on_denial: Callback | None = None,
    *,
    agent: str | None = None,
    client: Client | None = None,
) -> Any:
    """Decorator form of :func:`guard_tool`: ``@guard("stripe.refund")``.

    Bare ``@guard`` uses the function's name as the action name.
    """
    if callable(tool_name):
        func = tool_name
        return guard_tool(func.__name__, func, agent=agent, client=client)

    def decorate(func: F) -> F:
        return guard_tool(
            tool_name or func.__name__,
            func,
            approval_mode,
            on_approval,
            on_denial,
            agent=agent,
            client=client,
        )

    return decorate
