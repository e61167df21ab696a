"""Fixtures for the overview: Alice's two agents and helpers that write what the check path,
the approvals and the token usage API write."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from agents import services as agent_services
from agents.models import Agent, TokenUsage
from approvals.models import ApprovalRequest
from audit.models import AuditEntry
from wardenproject.ids import public_id


@pytest.fixture
def support_bot(org_a, alice) -> Agent:
    return agent_services.agent_create(organization=org_a, actor=alice, name="support-bot")


@pytest.fixture
def billing_bot(org_a, alice) -> Agent:
    return agent_services.agent_create(organization=org_a, actor=alice, name="billing-bot")


@pytest.fixture
def charlie_bot(org_c, charlie) -> Agent:
    return agent_services.agent_create(organization=org_c, actor=charlie, name="charlie-bot")


def checks(
    agent: Agent,
    n: int = 1,
    *,
    action: str = "stripe.refund",
    decision: str = "allow",
    environment: str = "live",
    at: datetime | None = None,
) -> list[AuditEntry]:
    """``n`` check entries as the check path writes them."""
    at = at or timezone.now()
    return AuditEntry.objects.bulk_create(
        AuditEntry(
            organization=agent.organization,
            kind=AuditEntry.Kind.CHECK,
            agent=agent,
            agent_public_id=agent.public_id,
            action=action,
            action_id="",
            public_id=public_id("act"),
            environment=environment,
            decision=decision,
            created_at=at,
        )
        for _ in range(n)
    )


def approval(
    agent: Agent,
    *,
    requested_at: datetime,
    decided_after: timedelta | None = None,
    status: str = ApprovalRequest.Status.APPROVED,
    reviewer: str = "alice@example.com",
    environment: str = "live",
) -> ApprovalRequest:
    decided = decided_after is not None
    return ApprovalRequest.objects.create(
        action_id=public_id("act"),
        organization=agent.organization,
        agent=agent,
        action="stripe.refund",
        arguments={"amount": 500},
        arguments_hash="0" * 64,
        environment=environment,
        status=status if decided else ApprovalRequest.Status.PENDING,
        requested_at=requested_at,
        expires_at=requested_at + timedelta(days=2),
        decided_at=requested_at + decided_after if decided else None,
        decided_by_label=reviewer if decided else "",
    )


def usage(agent: Agent | None, model: str, cost: str, **extra: Any) -> TokenUsage:
    from decimal import Decimal

    return TokenUsage.objects.create(
        organization=agent.organization if agent else extra.pop("organization"),
        agent=agent,
        model=model,
        prompt_tokens=extra.pop("prompt_tokens", 100),
        completion_tokens=extra.pop("completion_tokens", 50),
        total_tokens=150,
        cost_usd=Decimal(cost),
        **extra,
    )
