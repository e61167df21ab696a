"""Guard CrewAI tools (needs ``crewai``, imported only when used)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..guard import guard_tool
from ..webhooks import Callback
from . import require


def guard_crewai_tool(
    tool: Any,
    action: str | None = None,
    approval_mode: str = "wait",
    on_approval: Callback | None = None,
    on_denial: Callback | None = None,
) -> Any:
    """Guard a CrewAI ``BaseTool`` in place (its ``_run`` is checked by Warden) and return it.

    ``action`` is the Warden action name (default: the tool's name).
    """
    require("crewai", "crewai", "crewai")
    name = action or tool.name
    if getattr(tool._run, "__wardenpy_guarded__", False):
        return tool
    guarded = guard_tool(
        name, tool._run, approval_mode=approval_mode, on_approval=on_approval, on_denial=on_denial
    )
    # Pydantic models refuse unknown attributes through __setattr__; set it on the instance.
    object.__setattr__(tool, "_run", guarded)
    return tool


def protect_tools(
    tools: Iterable[Any],
    approval_mode: str = "wait",
    on_approval: Callback | None = None,
    on_denial: Callback | None = None,
) -> list[Any]:
    """Guard every CrewAI tool of a list in place (action name = tool name)."""
    return [guard_crewai_tool(t, None, approval_mode, on_approval, on_denial) for t in tools]
