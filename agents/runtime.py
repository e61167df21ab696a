"""The check path's in-process caches: API keys, agents and their compiled policies.

Bounds (documented in docs/API.md):

- An API key is looked up by its SHA-256 and kept here for ``WARDEN_KEY_CACHE_SECONDS``
  (default 5). Revoking or rotating forgets it at once in the process that did it; every
  other process stops accepting a revoked key within that many seconds. An approver key
  works only while the member who created it is an active member of its organisation
  (removing the member revokes their approver keys, with the same bounds).
- An agent's compiled policy is kept here and re-validated against ``Agent.policy_revision``
  (one indexed primary-key read) at most every ``WARDEN_POLICY_RECHECK_SECONDS`` (default 1).
  Every change of the agent or of a rule that applies to it bumps the revision, and the
  process that made the change forgets its copy on commit: a change applies to the very next
  check there, and within that many seconds everywhere else.

Plain dicts: reads and writes are atomic under the GIL, and a race only compiles twice.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from accounts.models import Membership, Organization
from accounts.plans import Feature, Limit, plan_allows, plan_cheapest_with, plan_limit
from agents.models import Agent, ApiKey, PolicyVersion, Rule
from agents.policy import CompiledPolicy, PlanFeatures, compile_policy
from agents.selectors import rule_spec
from wardenproject.errors import RateLimited
from wardenproject.text import counted

logger = logging.getLogger(__name__)

_MAX_ENTRIES = 50_000
TOUCH_INTERVAL_SECONDS = 60


def _key_cache_seconds() -> float:
    return float(getattr(settings, "WARDEN_KEY_CACHE_SECONDS", 5))


def _policy_recheck_seconds() -> float:
    return float(getattr(settings, "WARDEN_POLICY_RECHECK_SECONDS", 1))


# --- API keys -------------------------------------------------------------------------------


@dataclass(slots=True)
class ApiPrincipal:
    """Who is calling with an API key: the key, its organisation (with plan), its agent."""

    api_key: ApiKey
    organization: Organization
    kind: str
    environment: str
    agent_id: int | None
    revoked_at: datetime | None
    expires_at: datetime | None
    touched_at: float = field(default=0.0)

    # DRF treats request.user as the authenticated party.
    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    @property
    def key_id(self) -> int:
        return self.api_key.pk

    @property
    def label(self) -> str:
        return f"key {self.api_key.prefix}… ({self.api_key.name})"

    def is_usable(self, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        if self.revoked_at is not None and self.revoked_at <= now:
            return False
        return self.expires_at is None or self.expires_at > now

    def __str__(self) -> str:
        return self.label


_keys: dict[str, tuple[float, ApiPrincipal | None]] = {}


def _digest(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def _principal_load(digest: str) -> ApiPrincipal | None:
    api_key = (
        ApiKey.objects.select_related("organization__plan", "agent")
        .filter(hashed_key=digest)
        .first()
    )
    if api_key is None:
        return None
    if api_key.kind == ApiKey.Kind.APPROVER and not _creator_is_member(api_key):
        return None
    return ApiPrincipal(
        api_key=api_key,
        organization=api_key.organization,
        kind=api_key.kind,
        environment=api_key.environment,
        agent_id=api_key.agent_id,
        revoked_at=api_key.revoked_at,
        expires_at=api_key.expires_at,
    )


def _creator_is_member(api_key: ApiKey) -> bool:
    """An approver key votes as its creator: without an active member behind it, it is dead
    (a creator who left, was deleted or deactivated, or a key made before keys had one)."""
    return (
        api_key.created_by_id is not None
        and Membership.objects.filter(
            user_id=api_key.created_by_id,
            user__is_active=True,
            organization_id=api_key.organization_id,
        ).exists()
    )


def principal_for_key(raw_key: str) -> ApiPrincipal | None:
    """The usable key's principal, or None (unknown, revoked, expired, or an approver key
    whose creator is no longer a member)."""
    if len(raw_key) > 200:
        return None
    digest = _digest(raw_key)
    now = time.monotonic()
    hit = _keys.get(digest)
    if hit is not None and hit[0] > now:
        principal = hit[1]
    else:
        principal = _principal_load(digest)
        if len(_keys) > _MAX_ENTRIES:
            _keys.clear()
        _keys[digest] = (now + _key_cache_seconds(), principal)
    if principal is None or not principal.is_usable():
        return None
    return principal


def key_forget(hashed_key: str) -> None:
    _keys.pop(hashed_key, None)


def key_touch(principal: ApiPrincipal) -> None:
    """Update ``last_used_at`` at most once a minute per key (per process, and across
    processes through the cache), never on every call."""
    now = time.monotonic()
    if now - principal.touched_at < TOUCH_INTERVAL_SECONDS:
        return
    principal.touched_at = now
    if cache.add(f"key-touch:{principal.key_id}", 1, TOUCH_INTERVAL_SECONDS):
        from agents.services import api_key_touch

        api_key_touch(api_key_id=principal.key_id)


# --- Rate limit -----------------------------------------------------------------------------


def rate_limit_hit(organization: Organization) -> None:
    """Count one API request in the organisation's fixed one-minute window; raise 429
    (with Retry-After = seconds to the next window) past the plan's limit."""
    limit = plan_limit(organization, Limit.API_REQUESTS_PER_MINUTE)
    if limit is None:
        return
    now = time.time()
    window = int(now // 60)
    key = f"rate:{organization.pk}:{window}"
    # Redis (wardenproject.cache): one round trip, and a per-process count while it is down.
    count_in_window = getattr(cache, "count_in_window", None)
    if count_in_window is not None:
        count = count_in_window(key, 90)
    else:
        try:
            count = cache.incr(key)
        except ValueError:
            count = 1 if cache.add(key, 1, 90) else cache.incr(key)
    if count > limit:
        retry_after = max(1, int((window + 1) * 60 - now + 0.999))
        raise RateLimited(
            f"The {organization.plan.name} plan allows {counted(limit, 'API request')} per minute.",
            headers={"Retry-After": str(retry_after)},
        )


# --- Agents and compiled policies -----------------------------------------------------------


@dataclass(slots=True)
class AgentRuntime:
    agent: Agent
    policy: CompiledPolicy
    revision: int
    plan: PlanFeatures
    plan_key: tuple[int, bool, bool]
    rules_by_id: dict[str, Rule]
    rule_pks: dict[str, int]
    checked_at: float
    # The number of the policy version these rules are (None: an agent without versions);
    # every check's audit row names it.
    policy_version: int | None = None


_agents: dict[int, AgentRuntime] = {}
_agent_refs: dict[tuple[int, str], tuple[float, int]] = {}


def _plan_key(organization: Organization) -> tuple[int, bool, bool]:
    return (
        organization.plan_id,
        plan_allows(organization, Feature.APPROVAL_WORKFLOWS),
        plan_allows(organization, Feature.APPROVAL_QUORUM),
    )


def plan_features(organization: Organization) -> PlanFeatures:
    """What the organisation's plan lets a decision do (the check path's plan gate)."""
    approvals_plan = plan_cheapest_with(Feature.APPROVAL_WORKFLOWS)
    quorum_plan = plan_cheapest_with(Feature.APPROVAL_QUORUM)
    return PlanFeatures(
        approvals_enabled=plan_allows(organization, Feature.APPROVAL_WORKFLOWS),
        approvals_plan=approvals_plan.name if approvals_plan else "a higher",
        quorum_enabled=plan_allows(organization, Feature.APPROVAL_QUORUM),
        quorum_plan=quorum_plan.name if quorum_plan else "a higher",
    )


_LOAD_ATTEMPTS = 3


def _revision_and_version(agent_id: int) -> tuple[int, int | None] | None:
    latest = (
        PolicyVersion.objects.filter(agent_id=OuterRef("pk"))
        .order_by("-number")
        .values("number")[:1]
    )
    return (
        Agent.objects.filter(pk=agent_id).values_list("policy_revision", Subquery(latest)).first()
    )


def _runtime_load(agent_id: int, organization: Organization) -> AgentRuntime | None:
    # The agent, its rules, and then its revision again with the number of its latest policy
    # version: a change commits the rules, the revision bump and the version together, so an
    # unchanged revision means the rules read are that version's. (Only a reload pays this.)
    for _attempt in range(_LOAD_ATTEMPTS):
        agent = Agent.objects.filter(pk=agent_id, organization_id=organization.pk).first()
        if agent is None:
            return None
        rules = list(
            Rule.objects.filter(organization_id=organization.pk).filter(
                Q(agent_id=agent_id) | Q(agent__isnull=True)
            )
        )
        confirmed = _revision_and_version(agent_id)
        if confirmed is None:
            return None
        if confirmed[0] == agent.policy_revision:
            break
    # After as many changes raced as attempts, the revision read first stays (the next
    # recheck, within WARDEN_POLICY_RECHECK_SECONDS, sees the newer one and reloads) and no
    # version is named rather than a wrong one.
    version = confirmed[1] if confirmed[0] == agent.policy_revision else None
    agent.organization = organization
    specs = [rule_spec(rule, lists=agent.policy_lists) for rule in rules]
    return AgentRuntime(
        agent=agent,
        policy=compile_policy(
            specs,
            default=agent.default_decision,
            recounting=[rule.public_id for rule in rules if rule.counters_pending],
        ),
        revision=agent.policy_revision,
        plan=plan_features(organization),
        plan_key=_plan_key(organization),
        rules_by_id={rule.public_id: rule for rule in rules},
        rule_pks={rule.public_id: rule.pk for rule in rules},
        checked_at=time.monotonic(),
        policy_version=version,
    )


def agent_runtime(agent_id: int, organization: Organization) -> AgentRuntime | None:
    """The agent with its compiled policy; None if it is not in ``organization``."""
    now = time.monotonic()
    current = _agents.get(agent_id)
    if current is not None and current.agent.organization_id == organization.pk:
        fresh = now - current.checked_at < _policy_recheck_seconds()
        if fresh and current.plan_key == _plan_key(organization):
            return current
        revision = (
            Agent.objects.filter(pk=agent_id).values_list("policy_revision", flat=True).first()
        )
        if revision == current.revision and current.plan_key == _plan_key(organization):
            current.checked_at = now
            return current
    loaded = _runtime_load(agent_id, organization)
    if loaded is None:
        _agents.pop(agent_id, None)
        return None
    if len(_agents) > _MAX_ENTRIES:
        _agents.clear()
    _agents[agent_id] = loaded
    return loaded


def agent_id_for_ref(organization: Organization, ref: str) -> int | None:
    """Resolve an agent named in a request (public id or name) to its id; 5 s cache."""
    now = time.monotonic()
    key = (organization.pk, ref)
    hit = _agent_refs.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    agent_id = (
        Agent.objects.filter(organization_id=organization.pk)
        .filter(Q(public_id=ref) | Q(name=ref))
        .order_by("-public_id")
        .values_list("pk", flat=True)
        .first()
    )
    if agent_id is not None:
        if len(_agent_refs) > _MAX_ENTRIES:
            _agent_refs.clear()
        _agent_refs[key] = (now + _key_cache_seconds(), agent_id)
    return agent_id


def policy_forget(organization_id: int, agent_ids: list[int] | None) -> None:
    """Drop compiled policies (one agent, or every agent of the organisation)."""
    if agent_ids is None:
        for agent_id, entry in list(_agents.items()):
            if entry.agent.organization_id == organization_id:
                _agents.pop(agent_id, None)
        for key in [k for k in _agent_refs if k[0] == organization_id]:
            _agent_refs.pop(key, None)
    else:
        for agent_id in agent_ids:
            _agents.pop(agent_id, None)
        for key in [k for k, v in _agent_refs.items() if v[1] in agent_ids]:
            _agent_refs.pop(key, None)


def organization_forget(organization_id: int) -> None:
    """Drop every cached key and policy of an organisation (its plan changed): this process
    sees the change at once, others within the key cache's lifetime."""
    for digest, (_expires, principal) in list(_keys.items()):
        if principal is not None and principal.organization.pk == organization_id:
            _keys.pop(digest, None)
    policy_forget(organization_id, None)


def caches_clear() -> None:
    """Forget everything (tests)."""
    _keys.clear()
    _agents.clear()
    _agent_refs.clear()
