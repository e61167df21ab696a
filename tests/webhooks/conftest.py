from __future__ import annotations

import pytest

from agents.models import Agent
from webhooks import services


@pytest.fixture
def agent_a(org_a):
    return Agent.objects.create(organization=org_a, name="support-bot")


@pytest.fixture
def make_endpoint(org_a):
    def make(url: str, fmt: str = "standard", events=None, organization=None, **kwargs):
        return services.endpoint_create(
            actor=None,
            organization=organization or org_a,
            url=url,
            fmt=fmt,
            events=events or services.event_types_for_format(fmt),
            **kwargs,
        )

    return make


def approval_data(action_id: str = "act_1", agent=None, status: str = "approved") -> dict:
    return {
        "action_id": action_id,
        "agent_id": agent.public_id if agent else "agt_x",
        "agent_name": agent.name if agent else "support-bot",
        "action": "stripe.refund",
        "arguments": {"amount": 120, "currency": "eur"},
        "status": status,
        "environment": "live",
        "session_id": "s1",
        "rule": "refunds over 100",
        "reason": "Refunds over 100 need approval.",
        "requested_at": "2026-11-21T10:00:00+00:00",
        "expires_at": "2026-11-21T11:00:00+00:00",
        "decided_at": "2026-11-21T10:05:00+00:00",
        "decided_by": "alice@example.com",
        "notes": "ok",
    }
