from __future__ import annotations

from http import HTTPStatus

import pytest
from django.urls import reverse

from accounts import services
from accounts.models import Membership
from accounts.plans import (
    Feature,
    Limit,
    plan_allows,
    plan_require,
    plan_require_within_limit,
    plan_within_limit,
)
from agents.models import Agent
from tests.factories import MembershipFactory, OrganizationFactory, plan
from wardenproject.errors import Forbidden, PlanRequired
from webhooks.models import Endpoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def self_serve(settings):
    """A self-hosted install (``make run``): owners change their plan themselves."""
    settings.WARDEN_SELF_SERVE_PLANS = True


@pytest.fixture
def free_org(alice):
    org = OrganizationFactory(name="Tiny", plan=plan("free"))
    MembershipFactory(user=alice, organization=org, role=Membership.Role.OWNER)
    return org


def plan_url(org) -> str:
    return reverse("organization_plan", kwargs={"org_id": org.public_id})


@pytest.mark.parametrize(
    ("slug", "approvals", "webhooks", "quorum"),
    [
        ("free", False, False, False),
        ("pro", True, True, False),
        ("business", True, True, True),
        ("enterprise", True, True, True),
    ],
)
def test_each_plan_has_its_features(slug, approvals, webhooks, quorum):
    org = OrganizationFactory(plan=plan(slug))
    assert plan_allows(org, Feature.APPROVAL_WORKFLOWS) is approvals
    assert plan_allows(org, Feature.WEBHOOKS) is webhooks
    assert plan_allows(org, Feature.APPROVAL_QUORUM) is quorum


@pytest.mark.parametrize(
    ("feature", "unlocking_plan"),
    [
        (Feature.APPROVAL_WORKFLOWS, "Pro"),
        (Feature.WEBHOOKS, "Pro"),
        (Feature.APPROVAL_QUORUM, "Business"),
    ],
)
def test_a_refused_feature_names_the_plan_that_unlocks_it(free_org, feature, unlocking_plan):
    with pytest.raises(PlanRequired) as caught:
        plan_require(free_org, feature)
    assert caught.value.code == "plan_required"
    assert f"the {unlocking_plan} plan" in caught.value.detail


@pytest.mark.parametrize(
    ("slug", "limit", "unlocking_plan"),
    [("free", 1, "Pro"), ("pro", 10, "Business"), ("business", 100, "Enterprise")],
)
def test_the_agent_limit_allows_up_to_the_plan_limit_and_refuses_one_more(
    slug, limit, unlocking_plan
):
    org = OrganizationFactory(plan=plan(slug))
    plan_require_within_limit(org, Limit.AGENTS, current=limit - 1)
    assert plan_within_limit(org, Limit.AGENTS, current=limit - 1)
    assert not plan_within_limit(org, Limit.AGENTS, current=limit)
    with pytest.raises(PlanRequired) as caught:
        plan_require_within_limit(org, Limit.AGENTS, current=limit)
    noun = "agent" if limit == 1 else "agents"
    assert f"allows {limit} {noun};" in caught.value.detail
    assert f"the {unlocking_plan} plan" in caught.value.detail


def test_the_enterprise_plan_has_no_agent_limit():
    org = OrganizationFactory(plan=plan("enterprise"))
    plan_require_within_limit(org, Limit.AGENTS, current=1_000_000)


def test_adding_several_at_once_counts_them_all():
    org = OrganizationFactory(plan=plan("pro"))
    assert plan_within_limit(org, Limit.AGENTS, current=5, adding=5)
    assert not plan_within_limit(org, Limit.AGENTS, current=5, adding=6)


def test_a_limit_beyond_the_next_plan_names_the_plan_that_fits():
    org = OrganizationFactory(plan=plan("free"))
    with pytest.raises(PlanRequired) as caught:
        plan_require_within_limit(org, Limit.AGENTS, current=50)
    assert "the Business plan" in caught.value.detail


def test_the_dashboard_shows_which_plan_unlocks_a_locked_feature(client, alice, free_org):
    alice.current_organization = free_org
    alice.save()
    client.force_login(alice)
    response = client.get(reverse("dashboard"))
    assert b"Approval workflows need the Pro plan or higher" in response.content
    assert b"Multi-approver quorum needs the Business plan or higher" in response.content


def test_the_plan_page_shows_the_four_plans_and_the_current_one(client, alice, org_a):
    client.force_login(alice)
    response = client.get(plan_url(org_a))
    assert response.status_code == HTTPStatus.OK
    for name in (b"Free", b"Pro", b"Business", b"Enterprise"):
        assert name in response.content
    assert response.context["plans"][1]["current"]


def test_an_owner_cannot_change_the_plan_of_a_hosted_service(client, alice, free_org):
    client.force_login(alice)
    response = client.post(plan_url(free_org), {"plan": "enterprise"})
    assert response.status_code == HTTPStatus.FORBIDDEN
    free_org.refresh_from_db()
    assert free_org.plan.slug == "free"


def test_the_plan_page_of_a_hosted_service_says_how_to_upgrade_and_offers_no_form(
    client, alice, free_org
):
    client.force_login(alice)
    response = client.get(plan_url(free_org))
    assert response.status_code == HTTPStatus.OK
    assert b'name="plan"' not in response.content
    assert b"operator" in response.content
    assert f"warden_org set-plan {free_org.public_id}".encode() in response.content


def test_the_service_refuses_an_owners_plan_change_of_a_hosted_service(alice, free_org):
    with pytest.raises(Forbidden) as raised:
        services.organization_change_plan(actor=alice, organization=free_org, plan=plan("pro"))
    assert raised.value.code == "plan_change_by_operator"
    free_org.refresh_from_db()
    assert free_org.plan.slug == "free"


def test_an_owner_upgrades_the_plan_when_plans_are_self_serve(client, alice, free_org, self_serve):
    client.force_login(alice)
    assert b'name="plan"' in client.get(plan_url(free_org)).content
    response = client.post(plan_url(free_org), {"plan": "business"})
    assert response.status_code == HTTPStatus.FOUND
    free_org.refresh_from_db()
    assert free_org.plan.slug == "business"


def test_a_downgrade_keeps_agents_and_webhook_endpoints(client, alice, org_a, self_serve):
    for n in range(3):
        Agent.objects.create(organization=org_a, name=f"agent-{n}")
    Endpoint.objects.create(organization=org_a, url="https://example.com/hook", secret="s")
    client.force_login(alice)
    response = client.post(plan_url(org_a), {"plan": "free"}, follow=True)
    org_a.refresh_from_db()
    assert org_a.plan.slug == "free"
    assert org_a.agents.count() == 3
    assert org_a.webhook_endpoints.count() == 1
    assert b"Webhooks stop being delivered" in response.content
    assert b"no new agent can be created beyond 1" in response.content


def test_after_a_downgrade_creating_another_agent_is_refused(alice, org_a, self_serve):
    Agent.objects.create(organization=org_a, name="one")
    Agent.objects.create(organization=org_a, name="two")
    services.organization_change_plan(actor=alice, organization=org_a, plan=plan("free"))
    org_a.refresh_from_db()
    with pytest.raises(PlanRequired):
        plan_require_within_limit(org_a, Limit.AGENTS, current=org_a.agents.count())


@pytest.mark.parametrize("persona", ["bob", "vera", "dana"])
def test_a_non_owner_cannot_change_the_plan(client, org_a, persona, request, self_serve):
    client.force_login(request.getfixturevalue(persona))
    response = client.post(plan_url(org_a), {"plan": "enterprise"})
    assert response.status_code == HTTPStatus.FORBIDDEN
    org_a.refresh_from_db()
    assert org_a.plan.slug == "pro"


def test_an_outsider_gets_404_on_the_plan_page(client, charlie, org_a, self_serve):
    client.force_login(charlie)
    assert client.get(plan_url(org_a)).status_code == HTTPStatus.NOT_FOUND
    assert client.post(plan_url(org_a), {"plan": "free"}).status_code == HTTPStatus.NOT_FOUND


def test_a_plan_change_is_recorded_in_the_audit_log(alice, org_a, self_serve):
    from audit.models import AuditEntry

    services.organization_change_plan(actor=alice, organization=org_a, plan=plan("business"))
    entry = AuditEntry.objects.filter(organization=org_a, kind="config").first()
    assert entry.data["before"]["plan"] != entry.data["after"]["plan"]
    assert entry.actor_user == alice
