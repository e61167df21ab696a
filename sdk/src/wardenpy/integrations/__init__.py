"""Framework integrations. Each module imports its framework only when used.

* :mod:`wardenpy.integrations.openai` - ``ToolDispatcher`` for OpenAI tool calls
* :mod:`wardenpy.integrations.langchain` - ``guard_langchain_tool`` / ``protect_tools``
* :mod:`wardenpy.integrations.crewai` - ``guard_crewai_tool`` / ``protect_tools``
"""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str, package: str) -> ModuleType:
    """Import ``module`` or raise an ImportError that says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"This wardenpy integration needs {package}, which is not installed. "
            f"Install it with: pip install 'wardenpy[{extra}]' (or pip install {package})"
        ) from exc
