"""Counts read in the right number: "1 agent", "2 agents"."""

from __future__ import annotations

import pytest

from accounts.plans import Limit, plan_require_within_limit
from accounts.selectors import plan_change_effects
from agents.models import Agent
from tests.factories import OrganizationFactory, plan
from wardenproject.errors import PlanRequired
from wardenproject.text import counted

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("count", "expected"), [(0, "0 agents"), (1, "1 agent"), (2, "2 agents"), (21, "21 agents")]
)
def test_counted_picks_the_singular_only_for_one(count, expected):
    assert counted(count, "agent") == expected


def test_counted_takes_an_irregular_plural():
    assert counted(1, "delivery", "deliveries") == "1 delivery"
    assert counted(3, "delivery", "deliveries") == "3 deliveries"


def test_the_free_plan_refusal_says_one_agent():
    org = OrganizationFactory(plan=plan("free"))
    with pytest.raises(PlanRequired) as caught:
        plan_require_within_limit(org, Limit.AGENTS, current=1)
    assert "The Free plan allows 1 agent;" in caught.value.detail


def test_a_downgrade_with_one_agent_over_the_limit_says_one_agent(settings):
    org = OrganizationFactory(plan=plan("pro"))
    free = plan("free")
    free.max_agents = 0
    Agent.objects.create(organization=org, name="only-one")
    effects = " ".join(plan_change_effects(organization=org, plan=free))
    assert "You have 1 agent;" in effects


def test_the_plan_page_puts_limits_of_one_in_the_singular(client, alice, org_a):
    free = plan("free")
    free.max_rules_per_agent = free.audit_retention_days = free.api_requests_per_minute = 1
    free.save()
    client.force_login(alice)
    page = client.get(f"/orgs/{org_a.public_id}/plan/").content.decode()
    assert "1 agent</li>" in page
    assert "1 rule per agent</li>" in page
    assert "1 day of audit-log retention</li>" in page
    assert "1 API request per minute</li>" in page
