"""The ``wardenpy`` command. One subcommand so far: ``mcp-proxy`` (see :mod:`wardenpy.mcp_proxy`).

    wardenpy mcp-proxy --server NAME [--agent AGENT] -- <command and args of the stdio server>

Warden's address and the agent's key come from ``WARDEN_API_URL`` and ``WARDEN_API_KEY``, as
everywhere in the SDK (``--api-url`` overrides the first; the key is never an argument, so it
does not show in process listings).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .background import flush
from .client import Client
from .config import build_config
from .exceptions import ConfigurationError

USAGE = "wardenpy mcp-proxy --server NAME [options] -- COMMAND [ARGS...]"


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def _proxy_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wardenpy mcp-proxy",
        usage=USAGE,
        description=(
            "Run a stdio MCP server behind Warden: every tools/call is checked as action "
            "mcp.NAME.TOOL (allow, block, or held for a reviewer) before it reaches the server. "
            "Reads WARDEN_API_URL and WARDEN_API_KEY."
        ),
    )
    parser.add_argument("--server", required=True, help="the server's name in action names")
    parser.add_argument("--agent", help="the agent's id or name (needed with an org key)")
    parser.add_argument("--api-url", help="Warden's base URL (default: WARDEN_API_URL)")
    parser.add_argument("--session-id", help="session id sent with every check")
    parser.add_argument(
        "--timeout", type=_positive, default=10.0, help="seconds per request to Warden (10)"
    )
    parser.add_argument(
        "--retries", type=int, default=2, help="retries of a failed request to Warden (2)"
    )
    parser.add_argument(
        "--progress-interval",
        type=_positive,
        default=10.0,
        help="seconds between progress notifications while a call is held (10)",
    )
    parser.add_argument(
        "--max-wait",
        type=_positive,
        help="longest wait for a reviewer, in seconds (default: until the request expires)",
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    return parser


def mcp_proxy(argv: list[str]) -> int:
    from .mcp_proxy import SERVER_NAME, ProxyOptions, run_proxy

    parser = _proxy_parser()
    if "--" not in argv:
        if any(a in ("-h", "--help") for a in argv):
            parser.print_help()
            return 0
        parser.error("give the MCP server's command after --")
    split = argv.index("--")
    args = parser.parse_args(argv[:split])
    command = argv[split + 1 :]
    if not command:
        parser.error("give the MCP server's command after --")
    if not SERVER_NAME.match(args.server):
        parser.error(
            "--server: 1-64 letters, digits, '_' or '-' (it becomes part of mcp.NAME.TOOL)"
        )
    if args.retries < 0:
        parser.error("--retries must be 0 or more")
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, args.log_level),
        format=f"wardenpy mcp-proxy [{args.server}] %(levelname)s %(message)s",
    )
    try:
        config = build_config(
            api_url=args.api_url, timeout=args.timeout, retry_attempts=args.retries
        )
    except ConfigurationError as exc:
        print(f"wardenpy mcp-proxy: {exc}", file=sys.stderr)
        return 2
    options = ProxyOptions(
        server=args.server,
        command=command,
        agent=args.agent,
        session_id=args.session_id,
        progress_interval=args.progress_interval,
        max_wait=args.max_wait,
    )
    code = run_proxy(options, Client(config=config))
    code = 128 - code if code < 0 else code  # killed by a signal: as a shell reports it
    # Outcome reports still queued get a bounded moment, then the process ends at once: a
    # long-poll of a call the client abandoned must not keep it alive (its thread cannot be
    # interrupted, and interpreter exit would join it).
    flush(2.0)
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {USAGE}\n\nCommands:\n  mcp-proxy   run a stdio MCP server behind Warden")
        return 0 if argv else 2
    if argv[0] == "mcp-proxy":
        return mcp_proxy(argv[1:])
    print(f"wardenpy: unknown command {argv[0]!r} (commands: mcp-proxy)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
