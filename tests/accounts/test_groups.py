"""Groups: named sets of members that rules route approvals to (``group:NAME``).

Alice owns Acme, Bob is an approver there, Vera a viewer; Charlie owns Charlie Co."""

from __future__ import annotations

from http import HTTPStatus

import pytest
from django.urls import reverse

from accounts import services
from accounts.models import MemberGroup, Membership
from agents.models import Agent
from audit.models import AuditEntry
from tests.factories import MembershipFactory, UserFactory
from wardenproject.errors import Conflict, NotFound, ValidationFailed

pytestmark = pytest.mark.django_db


@pytest.fixture
def finance(org_a, alice):
    return services.group_create(actor=alice, organization=org_a, name="finance")


def groups_url(org) -> str:
    return reverse("groups", kwargs={"org_id": org.public_id})


def group_url(name: str, group: MemberGroup, **more: str) -> str:
    return reverse(
        name, kwargs={"org_id": group.organization.public_id, "group_id": group.public_id, **more}
    )


# --- services ---------------------------------------------------------------------------------


def test_an_owner_creates_a_group_and_it_is_audited(org_a, alice):
    group = services.group_create(actor=alice, organization=org_a, name="finance")
    assert group.public_id.startswith("grp_")
    entry = AuditEntry.objects.get(kind="config", actor_user=alice, data__verb="create")
    assert entry.data["after"] == {"name": "finance", "members": []}


def test_an_admin_manages_groups(org_a):
    dana = UserFactory(email="dana@example.com")
    MembershipFactory(user=dana, organization=org_a, role=Membership.Role.ADMIN)
    group = services.group_create(actor=dana, organization=org_a, name="ops")
    services.group_member_add(actor=dana, group=group, user=dana)
    assert list(group.members.all()) == [dana]


@pytest.mark.parametrize("persona", ["bob", "vera"])
def test_approvers_and_viewers_cannot_manage_groups(request, org_a, finance, persona):
    user = request.getfixturevalue(persona)
    with pytest.raises(Exception) as refused:
        services.group_create(actor=user, organization=org_a, name="ops")
    assert refused.value.status == HTTPStatus.FORBIDDEN
    with pytest.raises(Exception) as refused:
        services.group_member_add(actor=user, group=finance, user=user)
    assert refused.value.status == HTTPStatus.FORBIDDEN


def test_group_names_are_unique_whatever_their_case(org_a, alice, finance):
    with pytest.raises(Conflict):
        services.group_create(actor=alice, organization=org_a, name="Finance")


def test_another_organisation_may_use_the_same_name(org_c, charlie, finance):
    assert services.group_create(actor=charlie, organization=org_c, name="finance").pk


@pytest.mark.parametrize("name", ["", " ", "has space", "-dash", "x" * 65, "a/b"])
def test_a_bad_name_is_refused_naming_the_field(org_a, alice, name):
    with pytest.raises(ValidationFailed) as refused:
        services.group_create(actor=alice, organization=org_a, name=name)
    assert refused.value.field == "name"


def test_members_are_added_and_removed_with_audit_entries(alice, bob, finance):
    services.group_member_add(actor=alice, group=finance, user=bob)
    services.group_member_remove(actor=alice, group=finance, user=bob)
    entries = AuditEntry.objects.filter(kind="config").order_by("id")
    assert [e.data["verb"] for e in entries] == ["create", "add member", "remove member"]
    assert entries[1].data["after"]["members"] == ["bob@example.com"]
    assert entries[2].data["before"]["members"] == ["bob@example.com"]


def test_an_outsider_cannot_be_put_in_a_group(alice, charlie, finance):
    with pytest.raises(NotFound):
        services.group_member_add(actor=alice, group=finance, user=charlie)
    assert finance.members.count() == 0


def test_an_outsider_cannot_manage_the_group(charlie, finance, org_c):
    with pytest.raises(NotFound):
        services.group_member_add(actor=charlie, group=finance, user=charlie)
    with pytest.raises(NotFound):
        services.group_delete(actor=charlie, group=finance)


def test_deleting_a_group_is_audited_with_its_members(alice, bob, finance):
    services.group_member_add(actor=alice, group=finance, user=bob)
    services.group_delete(actor=alice, group=finance)
    assert not MemberGroup.objects.exists()
    entry = AuditEntry.objects.get(kind="config", data__verb="delete")
    assert entry.data["before"] == {"name": "finance", "members": ["bob@example.com"]}


def test_a_member_who_leaves_the_organisation_leaves_its_groups(org_a, alice, bob, finance):
    services.group_member_add(actor=alice, group=finance, user=bob)
    services.membership_remove(
        actor=alice, membership=Membership.objects.get(user=bob, organization=org_a)
    )
    assert finance.members.count() == 0


# --- pages ------------------------------------------------------------------------------------


def test_the_groups_page_lists_groups_and_their_members(client, org_a, alice, bob, finance):
    services.group_member_add(actor=alice, group=finance, user=bob)
    client.force_login(bob)  # any member sees them
    page = client.get(groups_url(org_a)).content.decode()
    assert "finance" in page
    assert "bob@example.com" in page
    assert "New group" not in page  # only owners and admins create


def test_an_owner_creates_a_group_from_the_page(client, org_a, alice):
    client.force_login(alice)
    response = client.post(groups_url(org_a), {"name": "finance"})
    group = MemberGroup.objects.get(organization=org_a)
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == group_url("group_detail", group)


def test_a_bad_name_on_the_page_shows_the_error(client, org_a, alice):
    client.force_login(alice)
    response = client.post(groups_url(org_a), {"name": "has space"}, follow=True)
    assert "A group name is" in response.content.decode()
    assert not MemberGroup.objects.exists()


def test_an_owner_adds_and_removes_a_member_from_the_page(client, alice, bob, finance):
    client.force_login(alice)
    client.post(group_url("group_member_add", finance), {"user": bob.public_id})
    assert list(finance.members.all()) == [bob]
    client.post(group_url("group_member_remove", finance, user_id=bob.public_id))
    assert finance.members.count() == 0


def test_an_owner_deletes_a_group_from_the_page(client, alice, finance):
    client.force_login(alice)
    response = client.post(group_url("group_delete", finance))
    assert response.status_code == HTTPStatus.FOUND
    assert not MemberGroup.objects.exists()


def test_an_approver_gets_403_changing_a_group(client, bob, finance):
    client.force_login(bob)
    assert client.post(group_url("group_delete", finance)).status_code == HTTPStatus.FORBIDDEN
    assert client.post(groups_url(finance.organization), {"name": "x"}).status_code in (
        HTTPStatus.FORBIDDEN,
    )
    assert MemberGroup.objects.count() == 1


@pytest.mark.parametrize(
    ("name", "method", "more"),
    [
        ("group_detail", "get", {}),
        ("group_member_add", "post", {}),
        ("group_delete", "post", {}),
    ],
)
def test_an_outsider_gets_404_on_every_group_page(
    client, charlie, org_c, finance, name, method, more
):
    client.force_login(charlie)
    response = getattr(client, method)(group_url(name, finance, **more))
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert MemberGroup.objects.filter(pk=finance.pk).exists()


def test_an_outsider_gets_404_on_the_groups_list(client, charlie, org_c, org_a):
    client.force_login(charlie)
    assert client.get(groups_url(org_a)).status_code == HTTPStatus.NOT_FOUND
    assert client.post(groups_url(org_a), {"name": "x"}).status_code == HTTPStatus.NOT_FOUND


def test_a_group_of_another_organisation_is_404_under_mine(client, charlie, org_c, finance):
    """Charlie's own organisation id with Acme's group id: not found either."""
    client.force_login(charlie)
    url = reverse("group_detail", kwargs={"org_id": org_c.public_id, "group_id": finance.public_id})
    assert client.get(url).status_code == HTTPStatus.NOT_FOUND


def test_removing_someone_not_in_the_group_is_404(client, alice, vera, finance):
    client.force_login(alice)
    url = group_url("group_member_remove", finance, user_id=vera.public_id)
    assert client.post(url).status_code == HTTPStatus.NOT_FOUND


# --- warnings about unknown groups -------------------------------------------------------------


def _routed_rule(org_a, alice, group: str):
    from agents import services as agent_services

    agent = Agent.objects.create(organization=org_a, name="refund-bot")
    rule = agent_services.rule_create(
        organization=org_a,
        agent=agent,
        data={
            "name": "large refunds",
            "action": "stripe.refund",
            "effect": "requires_approval",
            "approval": {"approvers": [f"group:{group}"]},
        },
        actor=alice,
    )
    return agent, rule


def test_the_rule_page_warns_about_an_unknown_group(client, org_a, alice):
    agent, rule = _routed_rule(org_a, alice, "finance")
    client.force_login(alice)
    page = client.get(reverse("agents:rule_edit", args=[agent.public_id, rule.public_id]))
    assert "group:finance is not a group of this organisation" in page.content.decode()


def test_the_rule_page_does_not_warn_about_a_known_group(client, org_a, alice, finance):
    agent, rule = _routed_rule(org_a, alice, "finance")
    client.force_login(alice)
    page = client.get(reverse("agents:rule_edit", args=[agent.public_id, rule.public_id]))
    assert "is not a group of this organisation" not in page.content.decode()


def test_put_policy_answers_warnings_about_unknown_groups(client, org_a, alice, finance):
    agent = Agent.objects.create(organization=org_a, name="refund-bot")
    client.force_login(alice)
    document = (
        "agent: refund-bot\n"
        "rules:\n"
        "  - name: large refunds\n"
        "    action: stripe.refund\n"
        "    effect: requires_approval\n"
        "    approval: {approvers: [group:finance, group:legal]}\n"
    )
    response = client.put(
        f"/api/v1/agents/{agent.public_id}/policy", data=document, content_type="application/yaml"
    )
    assert response.status_code == HTTPStatus.OK, response.content
    assert response.json()["warnings"] == [
        "Rule 'large refunds': group:legal is not a group of this organisation, so nobody "
        "decides its approvals through it (create the group or correct the name)."
    ]


# --- API --------------------------------------------------------------------------------------


@pytest.fixture
def api():
    from rest_framework.test import APIClient

    def make(user) -> APIClient:
        client = APIClient(enforce_csrf_checks=True)
        client.force_login(user)
        client.cookies["csrftoken"] = "a" * 32
        client.defaults["HTTP_X_CSRFTOKEN"] = "a" * 32
        return client

    return make


def test_the_api_creates_a_group_and_manages_its_members(api, org_a, alice, bob):
    client = api(alice)
    created = client.post("/api/v1/groups", {"name": "finance"}, format="json")
    assert created.status_code == HTTPStatus.CREATED
    group_id = created.json()["id"]
    assert created.json()["reference"] == "group:finance"
    added = client.post(
        f"/api/v1/groups/{group_id}/members", {"email": "BOB@example.com"}, format="json"
    )
    assert added.json()["members"] == [{"id": bob.public_id, "email": "bob@example.com"}]
    listed = client.get("/api/v1/groups").json()["results"]
    assert [g["name"] for g in listed] == ["finance"]
    removed = client.delete(f"/api/v1/groups/{group_id}/members/{bob.public_id}")
    assert removed.json()["members"] == []
    assert client.delete(f"/api/v1/groups/{group_id}").status_code == HTTPStatus.NO_CONTENT
    assert not MemberGroup.objects.exists()
    assert AuditEntry.objects.filter(kind="config", source="api").count() == 4


@pytest.mark.parametrize(
    ("body", "field"), [({}, "name"), ({"name": 5}, "name"), ({"name": "has space"}, "name")]
)
def test_a_bad_group_body_is_a_400_naming_the_field(api, org_a, alice, body, field):
    response = api(alice).post("/api/v1/groups", body, format="json")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["field"] == field


def test_adding_someone_who_is_not_a_member_is_a_404_naming_email(api, alice, charlie, finance):
    response = api(alice).post(
        f"/api/v1/groups/{finance.public_id}/members", {"email": charlie.email}, format="json"
    )
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert response.json()["field"] == "email"


def test_an_approver_reads_groups_but_gets_403_changing_them(api, bob, finance):
    client = api(bob)
    assert client.get(f"/api/v1/groups/{finance.public_id}").status_code == HTTPStatus.OK
    assert client.post("/api/v1/groups", {"name": "x"}, format="json").status_code == 403
    assert client.delete(f"/api/v1/groups/{finance.public_id}").status_code == 403


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("get", "", None),
        ("delete", "", None),
        ("post", "/members", {"email": "charlie@example.com"}),
    ],
)
def test_an_outsider_gets_404_on_every_group_endpoint(
    api, charlie, org_c, finance, method, suffix, body
):
    client = api(charlie)
    url = f"/api/v1/groups/{finance.public_id}{suffix}"
    response = (
        getattr(client, method)(url, body, format="json") if body else getattr(client, method)(url)
    )
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert MemberGroup.objects.filter(pk=finance.pk).exists()
    assert client.get("/api/v1/groups").json()["results"] == []  # Charlie's own (none)


def test_an_api_key_cannot_use_the_groups_api(org_a, finance):
    from rest_framework.test import APIClient

    from tests.approvals.conftest import key_create

    client = APIClient()
    client.credentials(HTTP_X_API_KEY=key_create(org_a, "org").raw)
    assert client.get("/api/v1/groups").status_code == HTTPStatus.FORBIDDEN
