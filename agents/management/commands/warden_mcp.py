"""Registered MCP servers and the MCP gateway.

    manage.py warden_mcp add --org ORG --name NAME --url URL [--header 'Name: value' ...]
                             [--agent AGENT ...] [--hold wait|return_pending] [--timeout S]
    manage.py warden_mcp list --org ORG
    manage.py warden_mcp remove --org ORG --name NAME
    manage.py warden_mcp serve [--host H] [--port P] [--dashboard [--threads N]]
    manage.py warden_mcp reencrypt      (stored headers under the current SECRET_KEY)

ORG is an organisation's public id (org_...) or exact name; AGENT a public id or name.
Headers are stored encrypted and never printed.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from agents.mcp import selectors, services
from agents.mcp.models import McpServer
from wardenproject.commands import organization_from
from wardenproject.errors import DomainError


class Command(BaseCommand):
    help = "Manage registered MCP servers and run the MCP gateway."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True)
        add = sub.add_parser("add", help="Register an upstream MCP server.")
        add.add_argument("--org", required=True)
        add.add_argument("--name", required=True)
        add.add_argument("--url", required=True, help="The upstream's streamable-HTTP URL.")
        add.add_argument("--header", action="append", default=[], help="'Name: value'")
        add.add_argument("--agent", action="append", default=[], help="Allowed agent (repeat).")
        add.add_argument("--hold", choices=McpServer.Hold.values, default=McpServer.Hold.WAIT)
        add.add_argument("--timeout", type=int, default=None, help="Upstream timeout (s).")
        listing = sub.add_parser("list", help="List an organisation's MCP servers.")
        listing.add_argument("--org", required=True)
        remove = sub.add_parser("remove", help="Remove a registered MCP server.")
        remove.add_argument("--org", required=True)
        remove.add_argument("--name", required=True)
        sub.add_parser("reencrypt", help="Re-encrypt stored headers under SECRET_KEY.")
        serve = sub.add_parser("serve", help="Run the gateway (serves /mcp/{name}).")
        serve.add_argument("--host", default="127.0.0.1")
        serve.add_argument("--port", type=int, default=8001)
        serve.add_argument(
            "--dashboard",
            action="store_true",
            help="Also serve the dashboard and the API (every path but /mcp/) on this port: "
            "one origin, as make run does. Production runs gunicorn instead.",
        )
        serve.add_argument(
            "--threads",
            type=int,
            default=64,
            help="With --dashboard: threads serving the dashboard and the API.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        command = options["subcommand"]
        if command == "serve":
            self._serve(
                options["host"],
                options["port"],
                threads=options["threads"] if options["dashboard"] else None,
            )
            return
        if command == "reencrypt":
            done, unreadable = services.mcp_server_headers_reencrypt()
            self.stdout.write(f"Re-encrypted the headers of {done} MCP servers.")
            if unreadable:
                raise CommandError(
                    "These servers' headers cannot be read with SECRET_KEY or "
                    f"SECRET_KEY_FALLBACKS (set them again): {', '.join(unreadable)}"
                )
            return
        organization = organization_from(options["org"])
        try:
            if command == "add":
                headers = dict(services.header_parse(line) for line in options["header"])
                server = services.mcp_server_create(
                    organization=organization,
                    actor=None,
                    source="command",
                    name=options["name"],
                    url=options["url"],
                    headers=headers,
                    agents=options["agent"],
                    hold=options["hold"],
                    timeout_seconds=options["timeout"],
                )
                self.stdout.write(f"{server.public_id} {server.name} -> {server.url}")
            elif command == "list":
                for server in selectors.mcp_server_list(organization=organization):
                    agents = ",".join(a.name for a in server.agents.all()) or "(every agent)"
                    self.stdout.write(
                        f"{server.public_id}\t{server.name}\t{server.url}\t{server.hold}\t{agents}"
                    )
            elif command == "remove":
                server = selectors.mcp_server_get(organization=organization, ref=options["name"])
                services.mcp_server_delete(server=server, actor=None, source="command")
                self.stdout.write(f"Removed {server.name}.")
        except DomainError as exc:
            raise CommandError(exc.detail) from None

    def _serve(self, host: str, port: int, *, threads: int | None) -> None:
        import logging

        import uvicorn

        from agents.mcp.gateway import OneOriginApp, gateway_app

        # One INFO line per upstream request (httpx2) and per session (mcp) would cost more
        # than the gateway's own work; warnings and errors still show.
        for name in ("httpx2", "httpx", "mcp"):
            logging.getLogger(name).setLevel(logging.WARNING)

        if threads is None:
            app: Any = gateway_app()
            self.stdout.write(f"MCP gateway on http://{host}:{port}/mcp/{{name}}")
        else:
            if threads < 1:
                raise CommandError("--threads must be at least 1.")
            app = OneOriginApp(threads=threads)
            self.stdout.write(
                f"Dashboard and API on http://{host}:{port}/, "
                f"MCP gateway on http://{host}:{port}/mcp/{{name}}"
            )
        uvicorn.run(app, host=host, port=port, log_level="warning", lifespan="on")
