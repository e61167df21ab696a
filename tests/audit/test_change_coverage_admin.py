"""Every change the operator's admin can make to configuration is audited, naming the staff
member who made it.

The admin's write paths are discovered, not listed: for every registered ModelAdmin, what a
superuser may do there (add, change a form with editable fields, delete, each action, each
inline that can write). Each path must either have a case in ``ADMIN_CASES``, which makes the
change through the real admin (Django's test client, signed in as staff) and expects
configuration entries naming that staff member with source ``admin``, or be in
``ADMIN_NOT_CONFIGURATION`` with the reason it changes no organisation's configuration. A
new admin, or a new path on an old one, that is in neither fails
``test_every_admin_write_path_is_audited_or_explained``.

The services behind these paths are enumerated by tests/audit/test_change_coverage.py.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from http import HTTPStatus
from typing import Any

import pytest
from django import forms
from django.contrib import admin
from django.core.management import call_command
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone

from accounts import services as accounts_services
from accounts.models import Membership, Organization, Plan, User
from accounts.permissions import OperatorOnly
from agents import services as agents_services
from agents.models import Agent, ApiKey, ModelPrice, Rule
from approvals.models import Grant
from audit.models import AuditEntry
from audit.services import audit_seal
from tests.factories import MembershipFactory, OrganizationFactory, UserFactory, plan
from wardenproject.errors import ValidationFailed
from webhooks import services as webhooks_services
from webhooks.models import Endpoint

pytestmark = pytest.mark.django_db

# Write paths of the admin that change no organisation's configuration, each with why. A key
# is "app_label.Model" (every path of that admin) or (label, path).
ADMIN_NOT_CONFIGURATION: dict[str | tuple[str, str], str] = {
    "account.EmailAddress": "a person's sign-in addresses (allauth), not an organisation's",
    "sites.Site": "the installation's own domain, set at deployment, not an organisation's",
    ("accounts.User", "add"): "a person's account; they join organisations by invitation",
    ("accounts.User", "change"): (
        "a person's account (name, password, sign-in, staff flags), not an organisation's "
        "configuration; their memberships change only through the membership paths"
    ),
    ("accounts.Organization", "delete"): (
        "the organisation leaves with its whole audit log (organization_delete)"
    ),
    ("accounts.Organization", "action:delete_selected"): (
        "the organisations leave with their whole audit logs (organization_delete)"
    ),
    ("approvals.ApprovalRequest", "action:approve_selected"): (
        "decisions through approval_decide: decision entries naming the staff member"
    ),
    ("approvals.ApprovalRequest", "action:deny_selected"): (
        "decisions through approval_decide: decision entries naming the staff member"
    ),
}


@dataclass
class World:
    staff: User
    alice: User  # owner of org A (on Pro)
    bob: User  # approver in org A
    org_a: Organization
    org_free: Organization  # another organisation, on Free
    agent: Agent


# (label, path) -> a case: it prepares what the change needs and returns the change, a call
# that makes it through the admin with the staff member's client.
AdminChange = Callable[[Client], Any]
ADMIN_CASES: dict[tuple[str, str], Callable[[World], AdminChange]] = {}


def case(label: str, path: str):
    def register(function: Callable[[World], AdminChange]):
        assert (label, path) not in ADMIN_CASES, f"two cases for {label} {path}"
        ADMIN_CASES[(label, path)] = function
        return function

    return register


# --- discovering the admin's write paths ----------------------------------------------------


def _superuser_request() -> Any:
    request = RequestFactory().get("/admin/")
    request.user = User(email="discovery@example.com", is_staff=True, is_superuser=True)
    request.user.is_active = True
    return request


def _editable_fields(model_admin: admin.ModelAdmin, request: Any, obj: Any) -> set[str]:
    return set(model_admin.get_form(request, obj).base_fields)


def admin_write_paths() -> dict[str, set[str]]:
    """``app_label.Model`` -> the ways a superuser can write through that model's admin."""
    request = _superuser_request()
    found: dict[str, set[str]] = {}
    for model, model_admin in admin.site._registry.items():
        obj = model()  # an unsaved instance: the change form's fields, not the add form's
        paths = set()
        if model_admin.has_add_permission(request):
            paths.add("add")
        if model_admin.has_change_permission(request) and _editable_fields(
            model_admin, request, obj
        ):
            paths.add("change")
        if model_admin.has_delete_permission(request):
            paths.add("delete")
        paths |= {f"action:{name}" for name in model_admin.get_actions(request)}
        for inline in model_admin.get_inline_instances(request):
            formset_form = inline.get_formset(request).form
            editable = set(formset_form.base_fields) - {inline.fk_name or "", "id"}
            if (
                inline.has_add_permission(request, None)
                or (inline.can_delete and inline.has_delete_permission(request, None))
                or (inline.has_change_permission(request, None) and editable)
            ):
                paths.add(f"inline:{inline.model._meta.label}")
        found[model._meta.label] = paths
    return found


def _explained(label: str, path: str) -> bool:
    return label in ADMIN_NOT_CONFIGURATION or (label, path) in ADMIN_NOT_CONFIGURATION


# --- driving the real admin -----------------------------------------------------------------


def _url(model: type, view: str, *args: Any) -> str:
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=args)


def _form_as_posted(response: Any) -> dict[str, Any]:
    """The admin form on ``response`` as a browser would post it untouched."""
    form = response.context["adminform"].form
    data: dict[str, Any] = {}
    for name, field in form.fields.items():
        value = form[name].value()
        if isinstance(field.widget, forms.MultiWidget):
            for index, part in enumerate(field.widget.decompress(value)):
                data[f"{name}_{index}"] = "" if part is None else part
        elif isinstance(field, forms.BooleanField):
            if value:
                data[name] = "on"  # an unticked box is not posted
        elif isinstance(value, (list, tuple)):
            data[name] = list(value)
        else:
            data[name] = "" if value is None else value
    for inline in response.context["inline_admin_formsets"]:
        prefix = inline.formset.prefix  # read-only inlines: post none of their rows
        data |= {f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"}
    return data


def _post_form(client: Client, url: str, **changes: Any) -> None:
    page = client.get(url)
    assert page.status_code == HTTPStatus.OK, url
    response = client.post(url, {**_form_as_posted(page), **changes})
    errors = response.context["adminform"].form.errors if response.context else None
    assert response.status_code == HTTPStatus.FOUND, (url, errors)


def admin_add(model_class: type, /, **values: Any) -> AdminChange:
    return lambda client: _post_form(client, _url(model_class, "add"), **values)


def admin_change(instance: Any, **changes: Any) -> AdminChange:
    return lambda client: _post_form(client, _url(type(instance), "change", instance.pk), **changes)


def admin_delete(instance: Any) -> AdminChange:
    def change(client: Client) -> None:
        response = client.post(_url(type(instance), "delete", instance.pk), {"post": "yes"})
        assert response.status_code == HTTPStatus.FOUND

    return change


def admin_action(model_class: type, action: str, /, *instances: Any, **extra: Any) -> AdminChange:
    def change(client: Client) -> None:
        response = client.post(
            _url(model_class, "changelist"),
            {"action": action, "_selected_action": [i.pk for i in instances], **extra},
        )
        assert response.status_code == HTTPStatus.FOUND

    return change


# --- the cases ------------------------------------------------------------------------------


@case("accounts.Plan", "change")
def _(w: World):
    return admin_change(plan("pro"), max_agents=7, audit_retention_days=30)


@case("accounts.Organization", "change")
def _(w: World):
    return admin_change(w.org_a, name="Acme Ltd", plan=plan("business").pk)


@case("accounts.Membership", "change")
def _(w: World):
    return admin_change(Membership.objects.get(user=w.bob, organization=w.org_a), role="admin")


@case("accounts.Membership", "delete")
def _(w: World):
    return admin_delete(Membership.objects.get(user=w.bob, organization=w.org_a))


@case("accounts.Invitation", "action:revoke")
def _(w: World):
    invitation = accounts_services.invitation_create(
        actor=w.alice, organization=w.org_a, email="dana@example.com", role="viewer"
    )
    return admin_action(type(invitation), "revoke", invitation)


@case("accounts.User", "delete")
def _(w: World):
    return admin_delete(w.bob)  # leaves org A through membership_remove


@case("agents.Agent", "add")
def _(w: World):
    return admin_add(
        Agent,
        organization=w.org_a.pk,
        name="admin-bot",
        default_decision="block",
        enforcement="enforce",
        is_active="on",
    )


@case("agents.Agent", "change")
def _(w: World):
    return admin_change(w.agent, description="answers tickets", is_active="")


def _key(w: World) -> ApiKey:
    return agents_services.api_key_create(organization=w.org_a, kind="org", actor=w.alice)[0]


@case("agents.ApiKey", "action:revoke")
def _(w: World):
    return admin_action(ApiKey, "revoke", _key(w))


def _rule(w: World) -> Rule:
    return agents_services.rule_create(
        organization=w.org_a,
        agent=w.agent,
        data={"name": "no deletes", "action": "db.delete", "effect": "block"},
        actor=w.alice,
    )


@case("agents.Rule", "add")
def _(w: World):
    return admin_add(
        Rule,
        organization=w.org_a.pk,
        agent=w.agent.pk,
        document='{"name": "reads", "action": "kb.*", "effect": "allow"}',
    )


@case("agents.Rule", "change")
def _(w: World):
    return admin_change(
        _rule(w), document='{"name": "no deletes", "action": "db.drop", "effect": "block"}'
    )


@case("agents.Rule", "delete")
def _(w: World):
    return admin_delete(_rule(w))


@case("agents.Rule", "action:delete_selected")
def _(w: World):
    return admin_action(Rule, "delete_selected", _rule(w), post="yes")


def _price() -> ModelPrice:
    return ModelPrice.objects.get_or_create(
        model="acme-llm",
        defaults={"prompt_usd_per_million": 1, "completion_usd_per_million": 2},
    )[0]


@case("agents.ModelPrice", "add")
def _(w: World):
    return admin_add(
        ModelPrice,
        model="acme-llm-2",
        prompt_usd_per_million="0.5",
        completion_usd_per_million="1.5",
    )


@case("agents.ModelPrice", "change")
def _(w: World):
    return admin_change(_price(), completion_usd_per_million="2.5")


@case("agents.ModelPrice", "delete")
def _(w: World):
    return admin_delete(_price())


@case("agents.ModelPrice", "action:delete_selected")
def _(w: World):
    return admin_action(ModelPrice, "delete_selected", _price(), post="yes")


@case("approvals.Grant", "action:revoke_selected")
def _(w: World):
    # Grants are revoked by the organisation's reviewers: the staff member is one in org A.
    MembershipFactory(user=w.staff, organization=w.org_a, role=Membership.Role.APPROVER)
    grant = Grant.objects.create(
        public_id="grt_admin_case",
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
    return admin_action(Grant, "revoke_selected", grant)


def _endpoint(w: World) -> Endpoint:
    return webhooks_services.endpoint_create(
        organization=w.org_a, actor=w.alice, url="https://hooks.example.com/warden"
    ).endpoint


@case("webhooks.Endpoint", "change")
def _(w: World):
    return admin_change(_endpoint(w), description="pager")


@case("webhooks.Endpoint", "delete")
def _(w: World):
    return admin_delete(_endpoint(w))


@case("webhooks.Endpoint", "action:delete_selected")
def _(w: World):
    return admin_action(Endpoint, "delete_selected", _endpoint(w), post="yes")


# --- the tests ------------------------------------------------------------------------------


def test_every_admin_write_path_is_audited_or_explained():
    paths = admin_write_paths()
    missing = sorted(
        (label, path)
        for label, found in paths.items()
        for path in found
        if (label, path) not in ADMIN_CASES and not _explained(label, path)
    )
    assert not missing, (
        "These admin write paths have no case in ADMIN_CASES (the change must be audited "
        "naming the staff member) and are not in ADMIN_NOT_CONFIGURATION (with the reason "
        f"they change no organisation's configuration): {missing}"
    )
    both = sorted(key for key in ADMIN_CASES if _explained(*key))
    assert not both, f"In ADMIN_CASES and ADMIN_NOT_CONFIGURATION at once: {both}"
    stale = sorted(
        key
        for key in [*ADMIN_CASES, *ADMIN_NOT_CONFIGURATION]
        if (key not in paths if isinstance(key, str) else key[1] not in paths.get(key[0], ()))
    )
    assert not stale, f"No longer admin write paths (remove them from the tables): {stale}"


def test_the_discovery_finds_the_write_paths_of_the_operators_tables():
    paths = admin_write_paths()
    assert {"change"} <= paths["accounts.Plan"]
    assert {"add", "change", "delete", "action:delete_selected"} <= paths["agents.ModelPrice"]
    assert not paths["audit.AuditEntry"]  # the log itself is never written here
    assert not paths["agents.TokenUsage"]


@pytest.fixture
def staff(db) -> User:
    return UserFactory(email="operator@example.com", is_staff=True, is_superuser=True)


@pytest.fixture
def world(staff, org_a, alice, bob) -> World:
    org_free = OrganizationFactory(name="Freebies", plan=plan("free"))
    MembershipFactory(organization=org_free, role=Membership.Role.OWNER)
    agent = agents_services.agent_create(organization=org_a, actor=alice, name="support-bot")
    return World(staff=staff, alice=alice, bob=bob, org_a=org_a, org_free=org_free, agent=agent)


@pytest.mark.parametrize("key", sorted(ADMIN_CASES), ids=" ".join)
def test_each_admin_configuration_change_records_the_staff_member(world, client, key):
    change = ADMIN_CASES[key](world)
    client.force_login(world.staff)
    mark = AuditEntry.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    change(client)
    entries = list(AuditEntry.objects.filter(pk__gt=mark, kind=AuditEntry.Kind.CONFIG))
    assert entries, f"{key} changed configuration through the admin and wrote no audit entry"
    for entry in entries:
        assert entry.actor_user == world.staff, (key, entry.reason)
        assert (entry.actor_label, entry.source) == (world.staff.email, "admin")
        assert entry.target_type and entry.target_id
        assert entry.data["before"] is not None or entry.data["after"] is not None


# --- the operator's tables: where their entries go ------------------------------------------


def test_a_plan_change_in_the_admin_is_recorded_in_each_organisation_on_that_plan(
    world, client, org_c
):
    client.force_login(world.staff)
    admin_change(plan("pro"), max_agents=7)(client)
    entries = AuditEntry.objects.filter(kind=AuditEntry.Kind.CONFIG, target_type="plan")
    assert sorted(e.organization_id for e in entries) == sorted([world.org_a.pk, org_c.pk])
    entry = entries.get(organization=world.org_a)
    assert (entry.target_id, entry.data["verb"]) == ("pro", "updated")
    assert entry.data["before"]["max_agents"] != 7
    assert entry.data["after"]["max_agents"] == 7
    assert entry.data["after"]["name"] == "Pro"
    assert Plan.objects.get(slug="pro").max_agents == 7


def test_a_plan_saved_unchanged_in_the_admin_records_nothing(world, client):
    client.force_login(world.staff)
    admin_change(plan("pro"))(client)
    assert not AuditEntry.objects.filter(target_type="plan").exists()


def test_plans_are_neither_added_nor_deleted_nor_renamed_by_slug_in_the_admin(world, client):
    client.force_login(world.staff)
    assert client.get(_url(Plan, "add")).status_code == HTTPStatus.FORBIDDEN
    pro = plan("pro")
    response = client.post(_url(Plan, "delete", pro.pk), {"post": "yes"})
    assert response.status_code == HTTPStatus.FORBIDDEN
    admin_change(pro, slug="platinum")(client)
    assert Plan.objects.filter(slug="pro").exists()


def test_a_token_price_change_in_the_admin_is_recorded_in_every_organisation(world, client):
    price = _price()
    client.force_login(world.staff)
    admin_change(price, prompt_usd_per_million="4")(client)
    entries = AuditEntry.objects.filter(kind=AuditEntry.Kind.CONFIG, target_type="modelprice")
    assert sorted(e.organization_id for e in entries) == sorted(
        Organization.objects.values_list("pk", flat=True)
    )
    entry = entries.get(organization=world.org_free)
    assert (entry.target_id, entry.data["verb"]) == ("acme-llm", "updated")
    assert Decimal(entry.data["before"]["prompt_usd_per_million"]) == 1
    assert Decimal(entry.data["after"]["prompt_usd_per_million"]) == 4
    assert entry.reason == "updated model price acme-llm"


def test_deleting_a_token_price_in_the_admin_records_the_price_it_had(world, client):
    price = _price()
    client.force_login(world.staff)
    admin_delete(price)(client)
    assert not ModelPrice.objects.filter(model="acme-llm").exists()
    entry = AuditEntry.objects.get(organization=world.org_a, target_type="modelprice")
    assert entry.data["verb"] == "deleted"
    assert entry.data["after"] is None
    assert Decimal(entry.data["before"]["completion_usd_per_million"]) == 2


def test_the_operators_tables_refuse_a_change_by_someone_who_is_not_staff(world):
    with pytest.raises(OperatorOnly):
        accounts_services.plan_update(actor=world.alice, plan=plan("pro"), max_agents=1)
    with pytest.raises(OperatorOnly):
        agents_services.model_price_delete(actor=world.alice, price=_price())
    assert plan("pro").max_agents != 1
    assert ModelPrice.objects.filter(model="acme-llm").exists()
    assert not AuditEntry.objects.filter(target_type__in=["plan", "modelprice"]).exists()


def test_an_agents_organisation_and_lists_are_not_offered_for_change_in_the_admin(world, client):
    client.force_login(world.staff)
    form = client.get(_url(Agent, "change", world.agent.pk)).context["adminform"].form
    assert not {"organization", "policy_lists"} & set(form.fields)
    rule = _rule(world)
    form = client.get(_url(Rule, "change", rule.pk)).context["adminform"].form
    assert set(form.fields) == {"document"}


def test_entries_of_an_operator_change_are_sealed_into_each_organisations_chain(
    world, client, org_c
):
    client.force_login(world.staff)
    admin_change(plan("pro"), max_rules_per_agent=9)(client)
    audit_seal()
    for organization in (world.org_a, org_c):
        entry = AuditEntry.objects.get(organization=organization, target_type="plan")
        assert entry.link.organization_id == organization.pk
        out = io.StringIO()
        call_command("warden_audit", "verify", "--org", organization.public_id, stdout=out)
        assert out.getvalue().startswith("OK"), out.getvalue()


def test_a_negative_token_price_is_refused_on_its_field_and_records_nothing(world, client):
    price = _price()
    client.force_login(world.staff)
    url = _url(ModelPrice, "change", price.pk)
    page = client.get(url)
    response = client.post(url, {**_form_as_posted(page), "prompt_usd_per_million": "-1"})
    assert response.status_code == HTTPStatus.OK
    assert "prompt_usd_per_million" in response.context["adminform"].form.errors
    with pytest.raises(ValidationFailed) as refused:
        agents_services.model_price_create(
            actor=world.staff,
            model="cheap-llm",
            prompt_usd_per_million=Decimal("1"),
            completion_usd_per_million=Decimal("-0.5"),
        )
    assert refused.value.field == "completion_usd_per_million"
    with pytest.raises(ValidationFailed):
        agents_services.model_price_update(
            actor=world.staff, price=price, prompt_usd_per_million=Decimal("-2")
        )
    price.refresh_from_db()
    assert price.prompt_usd_per_million == 1
    assert not ModelPrice.objects.filter(model="cheap-llm").exists()
    assert not AuditEntry.objects.filter(target_type="modelprice").exists()
