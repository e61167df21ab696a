"""Fixtures for the agents and audit tests: Alice's support bot, its keys, rules, and
clients for the live server (the real ardenpy and agentwarden SDKs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.core.cache import cache

from agents import runtime, services
from agents.models import Agent, ApiKey, Rule


@pytest.fixture(autouse=True)
def _fresh_state(request: pytest.FixtureRequest) -> Any:
    runtime.caches_clear()
    cache.clear()
    yield
    runtime.caches_clear()
    cache.clear()


@dataclass
class Keys:
    test: str
    live: str
    org: str
    approver: str
    test_key: ApiKey
    live_key: ApiKey
    org_key: ApiKey
    approver_key: ApiKey


def keys_for(agent: Agent, actor: Any = None) -> Keys:
    org = agent.organization
    test_key, test = services.api_key_create(
        organization=org, kind="agent", agent=agent, environment="test", actor=actor
    )
    live_key, live = services.api_key_create(
        organization=org, kind="agent", agent=agent, environment="live", actor=actor
    )
    org_key, org_raw = services.api_key_create(organization=org, kind="org", actor=actor)
    approver_key, approver = services.api_key_create(organization=org, kind="approver", actor=actor)
    return Keys(test, live, org_raw, approver, test_key, live_key, org_key, approver_key)


@pytest.fixture
def support_bot(org_a, alice) -> Agent:
    return services.agent_create(organization=org_a, actor=alice, name="support-bot")


@pytest.fixture
def keys(support_bot, alice) -> Keys:
    return keys_for(support_bot, alice)


@pytest.fixture
def charlie_bot(org_c, charlie) -> Agent:
    return services.agent_create(organization=org_c, actor=charlie, name="charlie-bot")


@pytest.fixture
def charlie_keys(charlie_bot, charlie) -> Keys:
    return keys_for(charlie_bot, charlie)


def add_rule(agent: Agent | None, organization: Any = None, **mapping: Any) -> Rule:
    organization = organization or agent.organization
    return services.rule_create(organization=organization, agent=agent, data=mapping, actor=None)


@pytest.fixture
def refund_rules(support_bot) -> list[Rule]:
    """The seed scenario: refunds under 100 pass, above need approval; no deletes."""
    return [
        add_rule(
            support_bot,
            name="refund limit",
            action="stripe.refund",
            effect="requires_approval",
            max_amount=100,
        ),
        add_rule(support_bot, name="no deletes", action="database.*.delete", effect="block"),
        add_rule(support_bot, name="search ok", action="kb.search", effect="allow"),
    ]
