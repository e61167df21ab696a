"""Writes for registered MCP servers. The upstream URL goes through the webhooks' SSRF guard;
upstream headers are encrypted at rest with the webhooks' Fernet helper and never shown again.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.db import IntegrityError, transaction

from accounts.models import Organization, User
from agents.mcp.models import McpServer
from agents.models import Agent
from audit.services import audit_record_change
from wardenproject.errors import Conflict, ValidationFailed
from webhooks.crypto import SecretUnreadable, secret_decrypt, secret_encrypt, secret_reencrypt
from webhooks.delivery import url_address_problem, url_problem

NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$")
HEADER_NAME_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")
# Headers the gateway sets itself (or that would break the upstream transport).
RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "accept",
        "connection",
        "transfer-encoding",
        "mcp-session-id",
        "mcp-protocol-version",
        "last-event-id",
    }
)
MAX_HEADERS = 20
MAX_TIMEOUT_SECONDS = 3600


def _clean_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValidationFailed(
            "name must be a slug: 1-64 lowercase letters, digits, '-' or '_'.", field="name"
        )
    return name


def _clean_url(url: Any) -> str:
    if not isinstance(url, str):
        raise ValidationFailed("url must be a string.", field="url")
    url = url.strip()
    if len(url) > 500:
        raise ValidationFailed("The URL is longer than 500 characters.", field="url")
    problem = url_problem(url) or url_address_problem(url)
    if problem:
        raise ValidationFailed(problem, field="url")
    return url


def header_parse(line: str) -> tuple[str, str]:
    """``'Name: value'`` (the command's ``--header``) as a pair."""
    name, sep, value = line.partition(":")
    if not sep:
        raise ValidationFailed("A header is 'Name: value' (no colon found).", field="headers")
    return name.strip(), value.strip()


def _clean_headers(headers: Any) -> dict[str, str]:
    if headers is None:
        return {}
    if not isinstance(headers, dict):
        raise ValidationFailed(
            "headers must be an object of header names to values.", field="headers"
        )
    if len(headers) > MAX_HEADERS:
        raise ValidationFailed(f"At most {MAX_HEADERS} headers.", field="headers")
    clean: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not HEADER_NAME_RE.match(name):
            raise ValidationFailed(f"{name!r} is not a valid header name.", field="headers")
        if name.lower() in RESERVED_HEADERS:
            raise ValidationFailed(f"The gateway sets {name!r} itself.", field="headers")
        if not isinstance(value, str) or len(value) > 4000 or any(c in value for c in "\r\n\0"):
            raise ValidationFailed(
                f"The value of {name!r} must be a one-line string.", field="headers"
            )
        clean[name] = value
    return clean


def _clean_agents(organization: Organization, agents: Any) -> list[Agent]:
    if not agents:
        return []
    if not isinstance(agents, list | tuple):
        raise ValidationFailed("agents must be a list of agent ids or names.", field="agents")
    found = []
    for ref in agents:
        agent = (
            Agent.objects.filter(organization=organization, public_id=str(ref)).first()
            or Agent.objects.filter(organization=organization, name=str(ref)).first()
        )
        if agent is None:
            raise ValidationFailed(f"No agent {ref!r} in this organisation.", field="agents")
        found.append(agent)
    return found


def _clean_hold(hold: Any) -> str:
    if hold not in McpServer.Hold.values:
        raise ValidationFailed(
            f"hold must be one of {', '.join(McpServer.Hold.values)}.", field="hold"
        )
    return hold


def _clean_timeout(timeout: Any) -> int | None:
    if timeout is None:
        return None
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int)
        or not 1 <= timeout <= MAX_TIMEOUT_SECONDS
    ):
        raise ValidationFailed(
            f"timeout_seconds must be a whole number from 1 to {MAX_TIMEOUT_SECONDS}.",
            field="timeout_seconds",
        )
    return timeout


def _name_taken(name: str) -> Conflict:
    return Conflict(f"An MCP server named {name!r} already exists.", field="name")


def _snapshot(server: McpServer, *, headers: str | None = None) -> dict[str, Any]:
    """What a config entry keeps of a server: never its headers, only whether it has any."""
    return {
        "name": server.name,
        "url": server.url,
        "hold": server.hold,
        "timeout_seconds": server.timeout_seconds,
        "agents": sorted(agent.name for agent in server.agents.all()),
        "headers": headers or ("set" if server.headers else "none"),
    }


def _audit(
    server: McpServer,
    *,
    actor: User | None,
    verb: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    source: str,
) -> None:
    audit_record_change(
        organization=server.organization,
        actor_user=actor,
        target=server,
        verb=verb,
        before=before,
        after=after,
        source=source,
    )


def mcp_server_create(
    *,
    organization: Organization,
    actor: User | None,
    name: Any,
    url: Any,
    headers: Any = None,
    agents: Any = None,
    hold: Any = McpServer.Hold.WAIT,
    timeout_seconds: Any = None,
    source: str = "api",
) -> McpServer:
    """Register an upstream MCP server; audited, naming ``actor`` (None: the system)."""
    name = _clean_name(name)
    url = _clean_url(url)
    clean_headers = _clean_headers(headers)
    agent_objs = _clean_agents(organization, agents)
    hold = _clean_hold(hold)
    timeout_seconds = _clean_timeout(timeout_seconds)
    try:
        with transaction.atomic():
            server = McpServer.objects.create(
                organization=organization,
                name=name,
                url=url,
                headers=_encrypt_headers(clean_headers),
                hold=hold,
                timeout_seconds=timeout_seconds,
            )
            server.agents.set(agent_objs)
            _audit(
                server,
                actor=actor,
                verb="created",
                before=None,
                after=_snapshot(server),
                source=source,
            )
    except IntegrityError:
        raise _name_taken(name) from None
    return server


def mcp_server_update(
    *,
    server: McpServer,
    actor: User | None,
    name: Any = None,
    url: Any = None,
    headers: Any = None,
    agents: Any = None,
    hold: Any = None,
    timeout_seconds: Any = ...,
    source: str = "api",
) -> McpServer:
    """Change a server; ``None`` leaves a field as it is (``headers: {}`` removes them all,
    ``timeout_seconds: None`` returns to the default). Audited, naming ``actor``."""
    before = _snapshot(server)
    if name is not None:
        server.name = _clean_name(name)
    if url is not None:
        server.url = _clean_url(url)
    if headers is not None:
        server.headers = _encrypt_headers(_clean_headers(headers))
    if hold is not None:
        server.hold = _clean_hold(hold)
    if timeout_seconds is not ...:
        server.timeout_seconds = _clean_timeout(timeout_seconds)
    agent_objs = _clean_agents(server.organization, agents) if agents is not None else None
    try:
        with transaction.atomic():
            server.save()
            if agent_objs is not None:
                server.agents.set(agent_objs)
            after = _snapshot(server, headers="replaced" if headers is not None else None)
            if after != before:
                _audit(
                    server, actor=actor, verb="updated", before=before, after=after, source=source
                )
    except IntegrityError:
        raise _name_taken(server.name) from None
    return server


def mcp_server_delete(*, server: McpServer, actor: User | None, source: str = "api") -> None:
    with transaction.atomic():
        _audit(
            server,
            actor=actor,
            verb="deleted",
            before=_snapshot(server),
            after=None,
            source=source,
        )
        server.delete()


def _encrypt_headers(headers: dict[str, str]) -> str:
    return secret_encrypt(json.dumps(headers)) if headers else ""


def mcp_server_upstream_headers(server: McpServer) -> dict[str, str]:
    """The decrypted headers to send upstream (never rendered or logged)."""
    if not server.headers:
        return {}
    return json.loads(secret_decrypt(server.headers))


def mcp_server_headers_reencrypt() -> tuple[int, list[str]]:
    """Rewrite every server's stored headers under the current SECRET_KEY (after a key
    rotation, as ``warden_webhook reencrypt`` does for webhook secrets), each under a row
    lock. Returns how many were rewritten and the ids of those no key can read."""
    done, unreadable = 0, []
    for pk in McpServer.objects.exclude(headers="").order_by("pk").values_list("pk", flat=True):
        with transaction.atomic():
            server = (
                McpServer.objects.select_for_update(of=("self",))
                .only("pk", "public_id", "headers")
                .filter(pk=pk)
                .first()
            )
            if server is None or not server.headers:
                continue
            try:
                server.headers = secret_reencrypt(server.headers)
            except SecretUnreadable:
                unreadable.append(server.public_id)
                continue
            # update(): the registration itself did not change (no new upstream connection).
            McpServer.objects.filter(pk=pk).update(headers=server.headers)
            done += 1
    return done, unreadable
