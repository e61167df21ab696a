"""Approval fixtures: an agent in Acme, keys of each kind, and pending requests created the
way the check path creates them (a check audit entry + approval_request_create)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from accounts.models import Membership, Organization
from agents import runtime
from agents import services as agents_services
from agents.models import Agent, ApiKey
from approvals.models import ApprovalRequest
from approvals.services import approval_request_create
from audit.models import AuditEntry
from audit.services import audit_record
from wardenproject.ids import public_id, random_token

KEY_PREFIXES = {"agent": "wdn_test_", "org": "wdn_org_", "approver": "wdn_apv_"}


@dataclass
class Key:
    raw: str
    model: ApiKey


def key_create(
    organization: Organization, kind: str, agent: Agent | None = None, created_by: Any = None
) -> Key:
    """A key of ``kind``. An approver key votes as its creator: by default the
    organisation's (first) owner, Alice in Acme."""
    if kind == "approver" and created_by is None:
        created_by = (
            organization.memberships.filter(role=Membership.Role.OWNER).order_by("pk").first().user
        )
    raw = KEY_PREFIXES[kind] + random_token(32)
    model = ApiKey.objects.create(
        organization=organization,
        agent=agent if kind == "agent" else None,
        kind=kind,
        environment="test" if kind == "agent" else "live",
        name=f"{kind} key",
        prefix=raw[:12],
        hashed_key=hashlib.sha256(raw.encode()).hexdigest(),
        created_by=created_by,
    )
    return Key(raw=raw, model=model)


def request_create(
    agent: Agent,
    *,
    action: str = "stripe.refund",
    arguments: dict[str, Any] | None = None,
    timeout_seconds: int | None = 3600,
    approvals_required: int = 1,
    environment: str = "test",
    spec: Any | None = None,
) -> ApprovalRequest:
    """What the check path does for a requires_approval decision (``spec``: the deciding
    rule's RuleSpec, for its routing, escalation and redaction)."""
    entry = audit_record(
        organization=agent.organization,
        kind=AuditEntry.Kind.CHECK,
        public_id=public_id("act"),
        agent=agent,
        agent_public_id=agent.public_id,
        action=action,
        action_id="",
        arguments=arguments if arguments is not None else {"amount": 500, "customer": "cus_1"},
        environment=environment,
        session_id="s1",
        decision="requires_approval",
        status="pending",
        rule_name="large refunds",
        reason="Refunds over 100 need a human",
        source="native",
    )
    return approval_request_create(
        entry=entry,
        api_key=None,
        rule=None,
        timeout_seconds=timeout_seconds,
        approvals_required=approvals_required,
        spec=spec,
    )


def approval_spec(**approval: Any) -> Any:
    """A requires_approval RuleSpec with these approval settings (``approvers=(...)``...)."""
    from agents.policy import RuleSpec

    return RuleSpec(
        name="large refunds", action="stripe.refund", effect="requires_approval", **approval
    )


@pytest.fixture(autouse=True)
def _fresh_state(request: pytest.FixtureRequest) -> Any:
    """Key and rate caches are per process; start every test without them."""
    runtime.caches_clear()
    cache.clear()
    yield
    runtime.caches_clear()
    cache.clear()


@pytest.fixture
def agent_a(org_a) -> Agent:
    return Agent.objects.create(organization=org_a, name="refund-bot")


@pytest.fixture
def agent_c(org_c) -> Agent:
    return Agent.objects.create(organization=org_c, name="charlie-bot")


@pytest.fixture
def make_request(agent_a) -> Callable[..., ApprovalRequest]:
    def make(**kwargs: Any) -> ApprovalRequest:
        return request_create(kwargs.pop("agent", agent_a), **kwargs)

    return make


@pytest.fixture
def pending(make_request) -> ApprovalRequest:
    return make_request()


@pytest.fixture
def keys(org_a, agent_a) -> dict[str, Key]:
    return {kind: key_create(org_a, kind, agent_a) for kind in ("agent", "org", "approver")}


@pytest.fixture
def key_client() -> Callable[[Key], APIClient]:
    """An API client that sends the key in ``X-API-Key`` (the real authenticator)."""

    def make(key: Key) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_X_API_KEY=key.raw)
        return client

    return make


@pytest.fixture
def member_client() -> Callable[..., APIClient]:
    def make(user) -> APIClient:
        client = APIClient(enforce_csrf_checks=True)
        client.force_login(user)
        client.cookies["csrftoken"] = "a" * 32
        client.defaults["HTTP_X_CSRFTOKEN"] = "a" * 32
        return client

    return make


# --- remembered approvals (grants): a bot whose big refunds are held, checked over HTTP -------

ALL_KINDS = ["identical", "session", "amount"]


def hold_rule(agent: Agent, grants: list[str] | None = None, **extra: Any) -> Any:
    """Refunds over 100 wait for a human; approvers may remember ``grants``."""
    document: dict[str, Any] = {
        "name": "big refunds",
        "action": "stripe.refund",
        "effect": "requires_approval",
        "max_amount": 100,
        **extra,
    }
    if grants is not None:
        document["approval"] = {**document.get("approval", {}), "grants": grants}
    return agents_services.rule_create(
        organization=agent.organization, agent=agent, data=document, actor=None
    )


@pytest.fixture
def bot(org_a, alice) -> Agent:
    return agents_services.agent_create(organization=org_a, actor=alice, name="refund-bot")


def agent_key(agent: Agent, environment: str = "test") -> str:
    _key, raw = agents_services.api_key_create(
        organization=agent.organization,
        kind="agent",
        agent=agent,
        environment=environment,
        actor=None,
    )
    return raw


@pytest.fixture
def check(bot) -> Callable[..., dict[str, Any]]:
    """POST /api/v1/check as the bot's test key (or ``key``); the JSON answer."""
    keys: dict[str, str] = {}

    def call(
        arguments: dict[str, Any] | None = None,
        *,
        action: str = "stripe.refund",
        session_id: str = "",
        key: str | None = None,
    ) -> dict[str, Any]:
        if key is None:
            if "test" not in keys:
                keys["test"] = agent_key(bot)
            key = keys["test"]
        client = APIClient()
        client.credentials(HTTP_X_API_KEY=key)
        body: dict[str, Any] = {
            "action": action,
            "arguments": {"amount": 150} if arguments is None else arguments,
        }
        if session_id:
            body["session_id"] = session_id
        response = client.post("/api/v1/check", body, format="json")
        assert response.status_code == HTTPStatus.OK, response.content
        return response.json()

    return call


def held(answer: dict[str, Any]) -> ApprovalRequest:
    assert answer["decision"] == "requires_approval", answer
    return ApprovalRequest.objects.get(action_id=answer["action_id"])
