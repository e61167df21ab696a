"""Services and selectors added for the agent pages."""

from __future__ import annotations

import pytest
from django.utils import timezone

from agents import selectors, services
from agents.models import ApiKey
from audit.models import AuditEntry
from audit.selectors import AuditFilters, audit_entry_list
from audit.services import audit_record
from wardenproject.errors import ValidationFailed

pytestmark = pytest.mark.django_db


def test_simulating_a_call_answers_the_decision_and_the_matched_rules(refund_rules):
    agent = refund_rules[0].agent
    result = services.agent_simulate(
        agent=agent, action="stripe.refund", arguments={"amount": 150}, environment="live"
    )
    assert result["decision"] == "requires_approval"
    assert result["rule"] == "refund limit"
    assert [m["rule"] for m in result["matched"]] == ["refund limit"]


def test_simulating_a_call_records_nothing(refund_rules):
    before = AuditEntry.objects.count()
    services.agent_simulate(
        agent=refund_rules[0].agent,
        action="database.users.delete",
        arguments={},
        environment="test",
    )
    assert AuditEntry.objects.count() == before


@pytest.mark.parametrize(
    ("action", "arguments", "environment", "field"),
    [
        ("", {}, "live", "action"),
        ("a.b", [], "live", "arguments"),
        ("a.b", {}, "prod", "environment"),
    ],
)
def test_simulating_bad_input_names_the_field(support_bot, action, arguments, environment, field):
    with pytest.raises(ValidationFailed) as caught:
        services.agent_simulate(
            agent=support_bot, action=action, arguments=arguments, environment=environment
        )
    assert caught.value.field == field


def test_a_just_created_agent_exports_its_policy(org_a, alice):
    agent = services.agent_create(
        organization=org_a, actor=alice, name="fresh", default_decision="block"
    )
    assert services.policy_export(agent=agent).startswith("agent: fresh\ndefault: block\n")


def test_the_agent_list_counts_own_rules_once_whatever_the_number_of_keys(refund_rules, keys):
    ApiKey.objects.filter(pk=keys.test_key.pk).update(last_used_at=timezone.now())
    agent = selectors.agent_list_with_stats(organization=refund_rules[0].organization).get()
    assert agent.rule_count == 3
    assert agent.last_used_at is not None


def test_org_key_list_holds_org_and_approver_keys_only(keys):
    listed = set(selectors.org_key_list(organization=keys.org_key.organization))
    assert listed == {keys.org_key, keys.approver_key}


def test_the_audit_list_filters_by_action_and_decision(org_a, support_bot):
    def check(action: str, decision: str) -> AuditEntry:
        return audit_record(
            organization=org_a, kind="check", agent=support_bot, action=action, decision=decision
        )

    check("a.b", "allow")
    blocked = check("a.b", "block")
    check("c.d", "block")
    found = audit_entry_list(
        organization=org_a, filters=AuditFilters(action="a.b", decision="block")
    )
    assert list(found) == [blocked]
