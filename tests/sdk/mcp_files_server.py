"""A small stdio MCP server (the official SDK's MCPServer) for the bridge's tests.

Every tool call is appended to the file named by MCP_CALLS_FILE (one JSON line per call), so a
test can tell whether the server was called at all.
"""

from __future__ import annotations

import json
import os

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("files")


def _record(tool: str, **arguments: object) -> None:
    with open(os.environ["MCP_CALLS_FILE"], "a", encoding="utf-8") as calls:
        calls.write(json.dumps({"tool": tool, "arguments": arguments}) + "\n")


@server.tool()
def read_file(path: str) -> str:
    """Read a file."""
    _record("read_file", path=path)
    return f"contents of {path}"


@server.tool()
def delete_file(path: str) -> str:
    """Delete a file."""
    _record("delete_file", path=path)
    return f"deleted {path}"


@server.tool()
def send_money(amount: float, to: str) -> str:
    """Send money."""
    _record("send_money", amount=amount, to=to)
    return f"sent {amount} to {to}"


@server.tool()
def broken(path: str) -> str:
    """Always fails."""
    _record("broken", path=path)
    raise ToolError(f"disk on fire while reading {path}")


@server.resource("note://{name}")
def note(name: str) -> str:
    """A note."""
    return f"note {name}"


@server.prompt()
def greet(name: str) -> str:
    """A greeting prompt."""
    return f"Say hello to {name}"


if __name__ == "__main__":
    server.run()
