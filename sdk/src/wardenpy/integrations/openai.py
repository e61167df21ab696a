"""Dispatch OpenAI tool calls through Warden (no dependency on the openai package)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from ..exceptions import ApprovalTimeoutError, PolicyDeniedError, WardenError
from ..guard import guard_tool
from ..types import PendingApproval
from ..webhooks import Callback


class ToolDispatcher:
    """A name -> guarded function table for the Chat Completions / Responses tool loop.

    ::

        dispatcher = ToolDispatcher()
        dispatcher.register("issue_refund", issue_refund, tool_name="stripe.refund")
        for call in response.choices[0].message.tool_calls:
            messages.append(dispatcher.tool_message(call))
    """

    def __init__(
        self,
        approval_mode: str = "wait",
        on_approval: Callback | None = None,
        on_denial: Callback | None = None,
        tool_name_prefix: str | None = None,
    ) -> None:
        self.approval_mode = approval_mode
        self.on_approval = on_approval
        self.on_denial = on_denial
        self.tool_name_prefix = tool_name_prefix
        self._tools: dict[str, Callable[..., Any]] = {}

    def register(self, name: str, func: Callable[..., Any], tool_name: str | None = None) -> None:
        """Register ``func`` under the OpenAI function ``name``.

        ``tool_name`` is the Warden action name (default ``name``, or ``prefix.name``).
        """
        if tool_name is None:
            tool_name = f"{self.tool_name_prefix}.{name}" if self.tool_name_prefix else name
        self._tools[name] = guard_tool(
            tool_name,
            func,
            approval_mode=self.approval_mode,
            on_approval=self.on_approval,
            on_denial=self.on_denial,
        )

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    @staticmethod
    def parse_arguments(arguments: str | Mapping[str, Any] | None) -> dict[str, Any]:
        if arguments is None or arguments == "":
            return {}
        if isinstance(arguments, (str, bytes)):
            try:
                parsed = json.loads(arguments)
            except ValueError as exc:
                raise ValueError(f"tool arguments are not valid JSON: {exc}") from exc
        else:
            parsed = arguments
        if not isinstance(parsed, Mapping):
            raise ValueError("tool arguments must be a JSON object")
        return dict(parsed)

    def run(self, name: str, arguments: str | Mapping[str, Any] | None = None) -> Any:
        """Run tool ``name``; ``arguments`` is OpenAI's JSON string or a dict."""
        if name not in self._tools:
            raise KeyError(f"tool {name!r} is not registered; call register() first")
        return self._tools[name](**self.parse_arguments(arguments))

    def tool_message(self, tool_call: Any) -> dict[str, Any]:
        """Run an OpenAI ``tool_call`` and return the ``{"role": "tool", ...}`` message.

        Denials, timeouts and pending approvals become text the model can read.
        """
        function = _get(tool_call, "function")
        call_id = _get(tool_call, "id")
        name = _get(function, "name")
        try:
            result = self.run(name, _get(function, "arguments"))
            content = str(result) if isinstance(result, PendingApproval) else _dump(result)
        except PolicyDeniedError as exc:
            content = f"Action denied by policy: {exc}"
        except ApprovalTimeoutError as exc:
            content = f"Action not approved in time: {exc}"
        except WardenError as exc:
            content = f"Action could not be checked: {exc}"
        return {"role": "tool", "tool_call_id": call_id, "content": content}


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key)


def _dump(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return str(value)
