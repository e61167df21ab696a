"""Every service that changes configuration writes an audit entry naming who made the change.

The services are discovered, not listed: every public function of every ``services`` module
of the project's apps must either have a case in ``CASES`` (which makes the change as a
persona and expects an entry naming them) or be in ``NOT_CONFIGURATION`` with the reason it
changes no configuration. A new service that is in neither fails
``test_every_service_is_audited_or_explained``, so it cannot forget its audit entry.

The admin's write paths are enumerated the same way by test_change_coverage_admin.py.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.conf import settings
from django.utils import timezone

from accounts import services as accounts_services
from accounts.models import Invitation, Membership, User
from agents import services as agents_services
from agents.mcp import services as mcp_services
from agents.models import Agent, ApiKey, ModelPrice, Rule
from approvals.models import Grant
from approvals.services import grant_revoke
from audit.models import AuditEntry
from tests.factories import UserFactory, plan
from webhooks import services as webhooks_services
from webhooks.models import Endpoint

pytestmark = pytest.mark.django_db

# Public functions of the services modules that change no configuration, each with why.
# Adding a name here is a claim a reviewer checks: "this writes nothing a member configured".
NOT_CONFIGURATION: dict[str, str] = {
    # accounts
    "accounts.services.available_time_zones": "read-only: the IANA names",
    "accounts.services.organization_settings_clean": "validation only (organization_update)",
    "accounts.services.user_switch_organization": "a user's own view, not the organisation's",
    "accounts.services.user_update_profile": "a user's own name and notifications",
    "accounts.services.invitation_token": "read-only: signs a link",
    "accounts.services.invitation_url": "read-only: builds a link",
    "accounts.services.invitation_check": "read-only: validates an invitation",
    "accounts.services.invitation_from_token": "read-only: looks an invitation up",
    "accounts.services.email_verification_resend": (
        "sends a signed verification link again; stores nothing"
    ),
    "accounts.services.organization_delete": (
        "the organisation leaves with its whole audit log (staff only, in the admin)"
    ),
    # agents
    "agents.services.key_hash": "helper: hashes a key",
    "agents.services.api_key_touch": "usage stamp (last_used_at), not configuration",
    "agents.services.policy_error_answer": "helper: formats a validation error",
    "agents.services.policy_document_parse": "read-only: validates a document",
    "agents.services.policy_export": "read-only: renders a document",
    "agents.services.policy_rules_for_agent": "read-only",
    "agents.services.agent_simulate": "read-only: records nothing by design",
    "agents.services.rule_counters_recount_pending": (
        "recomputes running totals already announced by the audited rule change"
    ),
    "agents.services.token_usage_record": "usage data from agents, not configuration",
    "agents.mcp.services.header_parse": "helper: parses a header line",
    "agents.mcp.services.mcp_server_upstream_headers": "read-only: decrypts for the upstream",
    "agents.mcp.services.mcp_server_headers_reencrypt": (
        "same headers under the current SECRET_KEY: nothing a member sees changes"
    ),
    # approvals: decisions on tool calls, each audited as a decision entry naming the
    # decider (tests/approvals); none changes configuration
    "approvals.services.arguments_hash": "helper",
    "approvals.services.approval_event_data": "helper: an event's payload",
    "approvals.services.approval_request_create": "part of a check (its check entry)",
    "approvals.services.approval_request_get": "read-only",
    "approvals.services.member_can_decide": "read-only",
    "approvals.services.approval_decide": "a decision (decision entry)",
    "approvals.services.approval_decide_bulk": "decisions, each through approval_decide",
    "approvals.services.approval_expire": "a decision by the clock (decision entry)",
    "approvals.services.approval_expire_overdue": "a decision by the clock (decision entry)",
    "approvals.services.approval_expire_if_overdue": "a decision by the clock (decision entry)",
    "approvals.services.approval_cancel": "a decision by the agent (decision entry)",
    "approvals.services.approval_claim": "a reviewer's claim on a request, not configuration",
    "approvals.services.grant_use_for_call": (
        "part of a check: the check's own entry names the grant it used"
    ),
    "approvals.services.approval_decide_by_email_link": (
        "a decision through approval_decide (decision entry, source email)"
    ),
    "approvals.services.approval_decider_problem": "read-only: the decision's checks",
    "approvals.services.approval_remind_due": (
        "queues a reminder email; the escalation itself is a decision entry (tests/approvals)"
    ),
    # webhooks
    "webhooks.services.secret_generate": "helper: a new random secret",
    "webhooks.services.endpoint_signing_secrets": "read-only: decrypts for signing",
    "webhooks.services.event_types_for_format": "read-only",
    "webhooks.services.endpoint_secrets_reencrypt": (
        "same secrets under the current SECRET_KEY: nothing a member sees changes"
    ),
    "webhooks.services.event_emit": "the outbox of decisions, not configuration",
    "webhooks.services.delivery_wake_queue": "delivery machinery",
    "webhooks.services.endpoint_wake_at": "delivery machinery",
    "webhooks.services.test_event_data": "helper: a test event's payload",
    "webhooks.services.endpoint_send_test": "sends a test event, changes nothing",
    "webhooks.services.delivery_resend": "re-sends a delivery, changes no configuration",
    "webhooks.services.deliveries_recover": "re-sends deliveries, changes no configuration",
}

# Whole modules that are not configuration services.
NOT_CONFIGURATION_MODULES = {
    "audit.services": "the audit log's own writer, retention and purges",
}

ROOT = Path(settings.BASE_DIR)


def discovered_services() -> set[str]:
    """``module.function`` for every public function of the project apps' services modules."""
    found = set()
    for app_config in apps.get_app_configs():
        path = Path(app_config.path).resolve()
        if not path.is_relative_to(ROOT) or "site-packages" in path.parts:
            continue
        # The app's services module and those of its packages (agents/mcp/services.py).
        for file in sorted(path.rglob("services.py")):
            parts = file.relative_to(path).with_suffix("").parts
            if "migrations" in parts or "tests" in parts:
                continue
            name = ".".join((app_config.name, *parts))
            if name in NOT_CONFIGURATION_MODULES:
                continue
            module = importlib.import_module(name)
            for attribute, value in vars(module).items():
                if attribute.startswith("_") or inspect.isclass(value) or not callable(value):
                    continue
                if getattr(value, "__module__", None) == name:
                    found.add(f"{name}.{attribute}")
    return found


@dataclass
class World:
    alice: User  # owner of org A
    bob: User  # approver in org A
    vera: User  # viewer in org A
    org_a: Any
    agent: Agent


Change = Callable[[], Any]
# service name -> a case: it prepares what the change needs, and returns the change (a call
# that makes it) and the user the audit entry must name (None: the system, for operators'
# commands that no member runs).
CASES: dict[str, Callable[[World], tuple[Change, User | None]]] = {}


def case(service: str):
    def register(function: Callable[[World], tuple[Change, User | None]]):
        assert service not in CASES, f"two cases for {service}"
        CASES[service] = function
        return function

    return register


def _rule(world: World) -> Rule:
    return agents_services.rule_create(
        organization=world.org_a,
        agent=world.agent,
        data={"name": "no deletes", "action": "db.delete", "effect": "block"},
        actor=world.alice,
    )


def _endpoint(world: World) -> Endpoint:
    return webhooks_services.endpoint_create(
        organization=world.org_a, actor=world.alice, url="https://hooks.example.com/warden"
    ).endpoint


def _org_key(world: World) -> ApiKey:
    return agents_services.api_key_create(organization=world.org_a, kind="org", actor=world.alice)[
        0
    ]


def _invite_dana(world: World) -> Invitation:
    return accounts_services.invitation_create(
        actor=world.alice, organization=world.org_a, email="dana@example.com", role="viewer"
    )


POLICY = """agent: imported-bot
default: block
rules:
  - name: reads
    action: kb.*
    effect: allow
"""


# --- organisations and plans ----------------------------------------------------------------


@case("accounts.services.organization_create")
def _(w: World):
    return lambda: accounts_services.organization_create(owner=w.alice, name="Second"), w.alice


@case("accounts.services.organization_update")
def _(w: World):
    return (
        lambda: accounts_services.organization_update(
            actor=w.alice, organization=w.org_a, name="Acme Ltd", default_approval_timeout=600
        ),
        w.alice,
    )


@case("accounts.services.organization_change_plan")
def _(w: World):
    operator = UserFactory(email="operator@example.com", is_staff=True)
    return (
        lambda: accounts_services.organization_change_plan(
            actor=operator,
            organization=w.org_a,
            plan=plan("business"),
            as_operator=True,
            source="admin",
        ),
        operator,
    )


@case("accounts.services.organization_bootstrap")
def _(w: World):
    # warden_bootstrap --plan on an existing organisation: the operator's command, no member.
    return (
        lambda: accounts_services.organization_bootstrap(
            org_name=w.org_a.name, email=w.alice.email, password=None, plan=plan("enterprise")
        ),
        None,
    )


# The operator's catalogue (plans' terms, token prices) belongs to no organisation: each
# change is recorded in the log of every organisation it affects (org A here).


def _operator() -> User:
    return UserFactory(email="operator@example.com", is_staff=True)


@case("accounts.services.plan_update")
def _(w: World):
    operator = _operator()
    return (
        lambda: accounts_services.plan_update(
            actor=operator, plan=w.org_a.plan, max_agents=3, source="admin"
        ),
        operator,
    )


def _price() -> ModelPrice:
    return ModelPrice.objects.create(
        model="acme-llm", prompt_usd_per_million=1, completion_usd_per_million=2
    )


@case("agents.services.model_price_create")
def _(w: World):
    operator = _operator()
    return (
        lambda: agents_services.model_price_create(
            actor=operator,
            model="acme-llm",
            prompt_usd_per_million=Decimal(1),
            completion_usd_per_million=Decimal(2),
        ),
        operator,
    )


@case("agents.services.model_price_update")
def _(w: World):
    operator, price = _operator(), _price()
    return (
        lambda: agents_services.model_price_update(
            actor=operator, price=price, prompt_usd_per_million=Decimal(3)
        ),
        operator,
    )


@case("agents.services.model_price_delete")
def _(w: World):
    operator, price = _operator(), _price()
    return lambda: agents_services.model_price_delete(actor=operator, price=price), operator


# --- members and invitations ----------------------------------------------------------------


@case("accounts.services.membership_change_role")
def _(w: World):
    membership = Membership.objects.get(user=w.bob, organization=w.org_a)
    return (
        lambda: accounts_services.membership_change_role(
            actor=w.alice, membership=membership, role=Membership.Role.ADMIN
        ),
        w.alice,
    )


@case("accounts.services.membership_remove")
def _(w: World):
    membership = Membership.objects.get(user=w.vera, organization=w.org_a)
    return lambda: accounts_services.membership_remove(
        actor=w.alice, membership=membership
    ), w.alice


@case("accounts.services.invitation_create")
def _(w: World):
    return lambda: _invite_dana(w), w.alice


# --- groups ---------------------------------------------------------------------------------


def _finance(w: World):
    return accounts_services.group_create(actor=w.alice, organization=w.org_a, name="finance")


@case("accounts.services.group_create")
def _(w: World):
    return lambda: _finance(w), w.alice


@case("accounts.services.group_member_add")
def _(w: World):
    group = _finance(w)
    return lambda: accounts_services.group_member_add(actor=w.alice, group=group, user=w.bob), (
        w.alice
    )


@case("accounts.services.group_member_remove")
def _(w: World):
    group = _finance(w)
    group.members.add(w.bob)
    return (
        lambda: accounts_services.group_member_remove(actor=w.alice, group=group, user=w.bob),
        w.alice,
    )


@case("accounts.services.group_delete")
def _(w: World):
    group = _finance(w)
    return lambda: accounts_services.group_delete(actor=w.alice, group=group), w.alice


@case("accounts.services.invitation_revoke")
def _(w: World):
    invitation = _invite_dana(w)
    return lambda: accounts_services.invitation_revoke(
        actor=w.alice, invitation=invitation
    ), w.alice


@case("accounts.services.invitation_accept")
def _(w: World):
    invitation = _invite_dana(w)
    dana = UserFactory(email="dana@example.com")
    return lambda: accounts_services.invitation_accept(user=dana, invitation=invitation), dana


# --- agents, keys, rules, policies ----------------------------------------------------------


@case("agents.services.agent_create")
def _(w: World):
    return (
        lambda: agents_services.agent_create(organization=w.org_a, actor=w.alice, name="new"),
        w.alice,
    )


@case("agents.services.agent_update")
def _(w: World):
    return (
        lambda: agents_services.agent_update(agent=w.agent, actor=w.alice, description="kb"),
        w.alice,
    )


@case("agents.services.agent_deactivate")
def _(w: World):
    return lambda: agents_services.agent_deactivate(agent=w.agent, actor=w.alice), w.alice


@case("agents.services.api_key_create")
def _(w: World):
    return lambda: _org_key(w), w.alice


@case("agents.services.api_key_revoke")
def _(w: World):
    key = _org_key(w)
    return lambda: agents_services.api_key_revoke(api_key=key, actor=w.alice), w.alice


@case("agents.services.api_key_revoke_approver_keys_of")
def _(w: World):
    agents_services.api_key_create(organization=w.org_a, kind="approver", actor=w.bob)
    return (
        lambda: agents_services.api_key_revoke_approver_keys_of(
            organization=w.org_a, user=w.bob, actor=w.alice
        ),
        w.alice,
    )


@case("agents.services.api_key_rotate")
def _(w: World):
    key = _org_key(w)
    return lambda: agents_services.api_key_rotate(api_key=key, actor=w.alice), w.alice


@case("agents.services.rule_create")
def _(w: World):
    return lambda: _rule(w), w.alice


@case("agents.services.rule_update")
def _(w: World):
    rule = _rule(w)
    return (
        lambda: agents_services.rule_update(rule=rule, data={"action": "db.drop"}, actor=w.alice),
        w.alice,
    )


@case("agents.services.rule_delete")
def _(w: World):
    rule = _rule(w)
    return lambda: agents_services.rule_delete(rule=rule, actor=w.alice), w.alice


@case("agents.services.policy_import")
def _(w: World):
    document = agents_services.policy_document_parse(
        organization=w.org_a, text=POLICY, format="yaml"
    )
    return (
        lambda: agents_services.policy_import(
            organization=w.org_a, document=document, actor=w.alice
        ),
        w.alice,
    )


@case("agents.services.policy_version_restore")
def _(w: World):
    _rule(w)  # a second version, so version 1 differs from the live policy
    return (
        lambda: agents_services.policy_version_restore(agent=w.agent, number=1, actor=w.alice),
        w.alice,
    )


@case("agents.mcp.services.mcp_server_create")
def _(w: World):
    return (
        lambda: mcp_services.mcp_server_create(
            organization=w.org_a, actor=w.alice, name="files", url="https://mcp.example.com/mcp"
        ),
        w.alice,
    )


@case("agents.mcp.services.mcp_server_update")
def _(w: World):
    server = mcp_services.mcp_server_create(
        organization=w.org_a, actor=None, name="files", url="https://mcp.example.com/mcp"
    )
    return (
        lambda: mcp_services.mcp_server_update(server=server, actor=w.alice, hold="return_pending"),
        w.alice,
    )


@case("agents.mcp.services.mcp_server_delete")
def _(w: World):
    server = mcp_services.mcp_server_create(
        organization=w.org_a, actor=None, name="files", url="https://mcp.example.com/mcp"
    )
    return lambda: mcp_services.mcp_server_delete(server=server, actor=w.alice), w.alice


@case("agents.services.limit_counters_rebuild")
def _(w: World):
    # Only `warden_policy rebuild-counters` calls it: the operator's command, no member.
    return lambda: agents_services.limit_counters_rebuild(agent=w.agent), None


# --- remembered approvals -------------------------------------------------------------------


@case("approvals.services.grant_revoke")
def _(w: World):
    grant = Grant.objects.create(
        public_id="grt_case",
        organization=w.org_a,
        agent=w.agent,
        environment="live",
        action="stripe.refund",
        rule_public_id="rul_case",
        kind="identical",
        expires_at=timezone.now() + timedelta(hours=1),
        created_by=w.alice,
        created_by_label=w.alice.email,
    )
    return lambda: grant_revoke(grant=grant, actor_user=w.bob), w.bob


# --- webhooks -------------------------------------------------------------------------------


@case("webhooks.services.endpoint_create")
def _(w: World):
    return lambda: _endpoint(w), w.alice


@case("webhooks.services.endpoint_update")
def _(w: World):
    endpoint = _endpoint(w)
    return (
        lambda: webhooks_services.endpoint_update(
            endpoint=endpoint, actor=w.alice, description="pager"
        ),
        w.alice,
    )


@case("webhooks.services.endpoint_set_enabled")
def _(w: World):
    endpoint = _endpoint(w)
    return (
        lambda: webhooks_services.endpoint_set_enabled(
            endpoint=endpoint, actor=w.alice, enabled=False
        ),
        w.alice,
    )


@case("webhooks.services.endpoint_rotate_secret")
def _(w: World):
    endpoint = _endpoint(w)
    return (
        lambda: webhooks_services.endpoint_rotate_secret(endpoint=endpoint, actor=w.alice),
        w.alice,
    )


@case("webhooks.services.endpoint_delete")
def _(w: World):
    endpoint = _endpoint(w)
    return lambda: webhooks_services.endpoint_delete(endpoint=endpoint, actor=w.alice), w.alice


def test_every_service_is_audited_or_explained():
    services = discovered_services()
    assert services, "no services module was found: the discovery is broken"
    missing = sorted(services - set(CASES) - set(NOT_CONFIGURATION))
    assert not missing, (
        "These services have no case in CASES (a change must be audited naming the actor) "
        f"and are not in NOT_CONFIGURATION (with the reason they change nothing): {missing}"
    )
    both = sorted(set(CASES) & set(NOT_CONFIGURATION))
    assert not both, f"In CASES and NOT_CONFIGURATION at once: {both}"
    stale = sorted((set(CASES) | set(NOT_CONFIGURATION)) - services)
    assert not stale, f"No longer services (remove them from the tables): {stale}"


def test_the_discovery_finds_the_services_of_every_app():
    modules = {name.rsplit(".", 1)[0] for name in discovered_services()}
    assert {"accounts.services", "agents.services", "webhooks.services"} <= modules


@pytest.fixture
def world(org_a, alice, bob, vera) -> World:
    agent = agents_services.agent_create(organization=org_a, actor=alice, name="support-bot")
    return World(alice=alice, bob=bob, vera=vera, org_a=org_a, agent=agent)


@pytest.mark.parametrize("service", sorted(CASES))
def test_each_configuration_service_records_who_made_the_change(world, service):
    change, actor = CASES[service](world)
    mark = AuditEntry.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    change()
    entries = list(AuditEntry.objects.filter(pk__gt=mark, kind=AuditEntry.Kind.CONFIG))
    assert entries, f"{service} changed configuration and wrote no audit entry"
    for entry in entries:
        assert entry.actor_user == actor, (service, entry.reason)
        assert entry.actor_label == (actor.email if actor else "system")
        assert entry.target_type and entry.target_id
        assert {"verb", "before", "after"} <= set(entry.data)
        assert entry.data["before"] is not None or entry.data["after"] is not None


def test_the_table_has_a_case_for_each_kind_of_configuration():
    """The issue's list: agents, rules, keys, webhooks, members, invitations, plans and
    organisation settings each have at least one audited service; so do the operator's
    plan terms and token prices."""
    kinds = {
        "agent": "agents.services.agent_create",
        "rule": "agents.services.rule_create",
        "key": "agents.services.api_key_create",
        "webhook": "webhooks.services.endpoint_create",
        "member": "accounts.services.membership_change_role",
        "invitation": "accounts.services.invitation_create",
        "plan": "accounts.services.organization_change_plan",
        "plan terms": "accounts.services.plan_update",
        "token prices": "agents.services.model_price_update",
        "organisation settings": "accounts.services.organization_update",
    }
    assert set(kinds.values()) <= set(CASES)


def test_no_entry_of_a_webhook_change_holds_a_secret(world):
    created = webhooks_services.endpoint_create(
        organization=world.org_a, actor=world.alice, url="https://hooks.example.com/warden"
    )
    rotated = webhooks_services.endpoint_rotate_secret(endpoint=created.endpoint, actor=world.alice)
    webhooks_services.endpoint_delete(endpoint=rotated.endpoint, actor=world.alice)
    text = str(list(AuditEntry.objects.values_list("data", "reason")))
    for secret in (created.secret, rotated.secret):
        assert secret not in text
        assert secret.split("_", 1)[1][:12] not in text
    assert "secret" not in str(
        [e.data["before"] for e in AuditEntry.objects.filter(data__verb="deleted")]
    )
    rotation = AuditEntry.objects.get(data__verb="rotated the secret of")
    assert rotation.data["after"]["secret"] == "rotated"
    assert rotation.data["after"]["previous_secret_expires_at"]
