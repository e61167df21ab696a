"""The gateway's database work (run in worker threads by ``gateway.py``): who is calling,
which tools the agent's policy blocks outright, the check of a ``tools/call``, holds,
claims and outcomes. Everything here is synchronous Django code that calls the check path
(``agents.checks``) and the approvals' services; nothing here does network I/O upstream.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from agents.authentication import principal_authenticate
from agents.checks import CheckResult, action_outcome_record, check_agent_resolve, check_perform
from agents.mcp.models import McpServer
from agents.mcp.services import mcp_server_upstream_headers
from agents.policy import BLOCK, CompiledPolicy, action_name_problem
from agents.runtime import ApiPrincipal
from approvals.models import ApprovalRequest
from approvals.services import (
    approval_claim,
    approval_expire_if_overdue,
    arguments_hash,
)
from audit.models import AuditEntry
from audit.selectors import check_entry_get
from audit.services import audit_entry_commit
from wardenproject.errors import Conflict, Forbidden, NotFound, Unauthenticated
from wardenproject.ids import public_id

SOURCE = "mcp"


def upstream_timeout_default() -> float:
    return float(getattr(settings, "WARDEN_MCP_UPSTREAM_TIMEOUT", 30))


@dataclass(frozen=True, slots=True)
class Upstream:
    """What the gateway needs of a registered server (a snapshot: no ORM access later)."""

    pk: int
    name: str
    url: str
    headers: dict[str, str]
    hold: str
    timeout: float
    version: str  # changes whenever the server's row does (a new upstream connection then)


@dataclass(frozen=True, slots=True)
class Caller:
    principal: ApiPrincipal
    upstream: Upstream

    @property
    def key_id(self) -> int:
        return self.principal.api_key.pk


# (organisation id, name) -> (read at, the server and the ids of its allowed agents, or
# None when there is no such server). Kept as long as API keys are (WARDEN_KEY_CACHE_SECONDS):
# a change made elsewhere applies here within that many seconds.
_servers: dict[tuple[int, str], tuple[float, tuple[Upstream, frozenset[int]] | None]] = {}
_MAX_SERVERS = 10_000


def _server_cache_seconds() -> float:
    return float(getattr(settings, "WARDEN_KEY_CACHE_SECONDS", 5))


def servers_forget() -> None:
    _servers.clear()


def _server_read(organization_id: int, name: str) -> tuple[Upstream, frozenset[int]] | None:
    key = (organization_id, name)
    now = time.monotonic()
    cached = _servers.get(key)
    if cached is not None and now - cached[0] < _server_cache_seconds():
        return cached[1]
    server = (
        McpServer.objects.filter(organization_id=organization_id, name=name)
        .prefetch_related("agents")
        .first()
    )
    found = None
    if server is not None:
        upstream = Upstream(
            pk=server.pk,
            name=server.name,
            url=server.url,
            headers=mcp_server_upstream_headers(server),
            hold=server.hold,
            timeout=float(server.timeout_seconds or upstream_timeout_default()),
            version=server.updated_at.isoformat(),
        )
        found = (upstream, frozenset(a.pk for a in server.agents.all()))
    if len(_servers) >= _MAX_SERVERS:
        _servers.clear()
    _servers[key] = (now, found)
    return found


def caller_resolve(*, raw_key: str | None, name: str) -> Caller:
    """The agent key's principal and the server it may use, or the error to answer with:
    401 (no or bad key), 404 (no such server in the key's organisation), 403 (a key that is
    not an agent's, an inactive agent, or an agent the server does not allow)."""
    if not raw_key:
        raise Unauthenticated(
            "An agent's API key is required (Authorization: Bearer or X-API-Key)."
        )
    principal = principal_authenticate(raw_key)
    if principal is None:
        raise Unauthenticated("Unknown, revoked or expired API key.")
    found = _server_read(principal.organization.pk, name)
    if found is None:
        raise NotFound(f"No MCP server {name!r} in this organisation.")
    if principal.kind != "agent":
        raise Forbidden("The MCP gateway takes an agent's API key.")
    upstream, allowed = found
    agent_rt = check_agent_resolve(principal=principal, agent_ref=None)
    if allowed and agent_rt.agent.pk not in allowed:
        raise Forbidden(f"Agent {agent_rt.agent.name!r} may not use MCP server {name!r}.")
    return Caller(principal=principal, upstream=upstream)


def action_for(upstream: Upstream, tool: str) -> str:
    return f"mcp.{upstream.name}.{tool}"


def blocks_outright(policy: CompiledPolicy, action: str, environment: str) -> bool:
    """Whether every call of ``action`` is blocked whatever its arguments: an unconditional
    block rule applies to it, or the default is block and no rule could allow or hold it."""
    rules = policy._candidates(action.lower(), environment).rules
    for rule in rules:
        spec = rule.spec
        if (
            spec.effect == BLOCK
            and spec.when is None
            and not spec.unless
            and spec.max_amount is None
            and spec.limit is None
        ):
            return True
    return policy.default == BLOCK and all(rule.spec.effect == BLOCK for rule in rules)


def tools_hidden(*, caller: Caller, names: list[str]) -> set[str]:
    """The tools (of ``names``) that the agent's policy blocks outright."""
    agent_rt = check_agent_resolve(principal=caller.principal, agent_ref=None)
    environment = caller.principal.environment
    hidden = set()
    for name in names:
        action = action_for(caller.upstream, name)
        if action_name_problem(action) is not None or blocks_outright(
            agent_rt.policy, action, environment
        ):
            hidden.add(name)
    return hidden


def tool_check(
    *, caller: Caller, tool: str, arguments: dict[str, Any], session_id: str
) -> CheckResult:
    action = action_for(caller.upstream, tool)
    problem = action_name_problem(action)
    if problem is not None:
        raise Forbidden(f"The tool name {tool!r} cannot be checked: the action {problem}.")
    return check_perform(
        principal=caller.principal,
        agent_ref=None,
        action=action,
        arguments=arguments,
        session_id=session_id[:200],
        metadata={"mcp": {"server": caller.upstream.name, "tool": tool}},
        source=SOURCE,
    )


@dataclass(frozen=True, slots=True)
class HoldState:
    status: str
    notes: str
    expires_at: datetime | None


def hold_state(*, action_id: str) -> HoldState:
    """The approval's status now (expiring it when its deadline has passed)."""
    request = ApprovalRequest.objects.get(action_id=action_id)
    if request.status == ApprovalRequest.Status.PENDING:
        request = approval_expire_if_overdue(request)
    return HoldState(status=request.status, notes=request.notes, expires_at=request.expires_at)


def hold_claim(*, caller: Caller, action_id: str, arguments: dict[str, Any]) -> None:
    """Take an approved call to run it (once); raises ``Conflict`` if it cannot be."""
    approval_claim(
        request_or_action_id=action_id, actor_key=caller.principal.api_key, arguments=arguments
    )


@dataclass(frozen=True, slots=True)
class Earlier:
    action_id: str
    status: str  # "approved" (claimed for this call) or "pending"
    expires_at: datetime | None


def earlier_hold(*, caller: Caller, tool: str, arguments: dict[str, Any]) -> Earlier | None:
    """For ``hold: return_pending``: the identical call's earlier hold, if there is one. An
    approved, unclaimed one is claimed for this call (it runs once); a pending one is
    answered again instead of holding the same call twice."""
    agent_id = caller.principal.agent_id
    action = action_for(caller.upstream, tool)
    digest = arguments_hash(arguments)
    now = timezone.now()
    base = ApprovalRequest.objects.filter(
        organization_id=caller.principal.organization.pk, agent_id=agent_id, action=action
    )
    approved = (
        base.filter(status=ApprovalRequest.Status.APPROVED, claimed_at__isnull=True)
        .filter(arguments_hash=digest)
        .order_by("-decided_at")
        .values_list("action_id", flat=True)[:5]
    )
    for action_id in approved:
        try:
            approval_claim(
                request_or_action_id=action_id,
                actor_key=caller.principal.api_key,
                arguments=arguments,
            )
        except Conflict:  # claimed by a concurrent identical call
            continue
        return Earlier(action_id=action_id, status="approved", expires_at=None)
    pending = (
        base.filter(status=ApprovalRequest.Status.PENDING, expires_at__gt=now)
        .filter(arguments_hash=digest)
        .order_by("-requested_at")
        .values_list("action_id", "expires_at")
        .first()
    )
    if pending is not None:
        return Earlier(action_id=pending[0], status="pending", expires_at=pending[1])
    return None


def outcome_record(
    *,
    caller: Caller,
    action_id: str,
    tool: str,
    session_id: str,
    fresh: CheckResult | None,
    status: str,
    error: str | None,
) -> None:
    """The outcome of a forwarded call. A call allowed at once (``check`` given) has an
    action id nobody else has seen, so its outcome is the only one and is written with the
    check rows (group commit); an approved call's id was shown to reviewers and clients, so
    its outcome goes through ``action_outcome_record`` (locked: one outcome per action).
    ``fresh``: the check that allowed the call just now, if it was not held."""
    error = (error or "")[:10_000] or None
    principal = caller.principal
    if fresh is not None:
        audit_entry_commit(
            AuditEntry(
                public_id=public_id("out"),
                organization=principal.organization,
                kind=AuditEntry.Kind.OUTCOME,
                actor_key=principal.api_key,
                actor_label=principal.label,
                agent_id=principal.agent_id,
                agent_public_id=fresh.agent_public_id,
                action=action_for(caller.upstream, tool),
                action_id=action_id,
                environment=fresh.environment,
                session_id=session_id[:200],
                status=status,
                source=SOURCE,
                data={"error": error} if error is not None else {},
            )
        )
        return
    entry = check_entry_get(organization=principal.organization, action_id=action_id)
    action_outcome_record(principal=principal, check=entry, status=status, error=error, result=None)
