"""Guard LangChain tools (needs ``langchain-core``, imported only when used)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..guard import guard_tool
from ..webhooks import Callback
from . import require


def guard_langchain_tool(
    tool: Any,
    action: str | None = None,
    approval_mode: str = "wait",
    on_approval: Callback | None = None,
    on_denial: Callback | None = None,
) -> Any:
    """Return a new LangChain tool whose every run is checked by Warden first.

    ``action`` is the Warden action name (default: the tool's name). The original tool is
    not modified; name, description and argument schema are kept.
    """
    tools_mod = require("langchain_core.tools", "langchain", "langchain-core")
    name = action or tool.name

    def wrap(func: Any) -> Any:
        return guard_tool(name, func, approval_mode, on_approval, on_denial)

    if isinstance(tool, tools_mod.Tool):  # single string input
        func = getattr(tool, "func", None)
        coroutine = getattr(tool, "coroutine", None)
        guarded_tool = tools_mod.Tool(
            name=tool.name,
            description=tool.description,
            func=wrap(func) if func else None,
            coroutine=wrap(coroutine) if coroutine else None,
            return_direct=tool.return_direct,
        )
    else:

        def invoke(**kwargs: Any) -> Any:
            return tool.invoke(kwargs)

        async def ainvoke(**kwargs: Any) -> Any:
            return await tool.ainvoke(kwargs)

        guarded_tool = tools_mod.StructuredTool.from_function(
            func=wrap(invoke),
            coroutine=wrap(ainvoke),
            name=tool.name,
            description=tool.description,
            args_schema=tool.args_schema,
            return_direct=tool.return_direct,
            infer_schema=False,
        )
    guarded_tool.metadata = {**(tool.metadata or {}), "warden_action": name}
    return guarded_tool


def protect_tools(
    tools: Iterable[Any],
    approval_mode: str = "wait",
    on_approval: Callback | None = None,
    on_denial: Callback | None = None,
) -> list[Any]:
    """Guard every tool of a list (action name = tool name)."""
    return [guard_langchain_tool(t, None, approval_mode, on_approval, on_denial) for t in tools]
