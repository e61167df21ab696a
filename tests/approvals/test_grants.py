"""Remembered approvals ("grants"): a reviewer approving a held call may allow the calls like
it for a while, within what the holding rule allows. The check path uses them (only for
calls the rule holds), the API lists and revokes them, and every step is audited."""

from __future__ import annotations

from datetime import timedelta
from http import HTTPStatus
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from freezegun import freeze_time
from rest_framework.test import APIClient

from agents import services as agents_services
from approvals.models import ApprovalRequest, ApprovalVote, Grant
from approvals.services import approval_decide, grant_revoke
from audit.models import AuditEntry
from tests.approvals.conftest import ALL_KINDS, agent_key, held, hold_rule
from tests.factories import MembershipFactory, UserFactory, plan
from wardenproject.errors import Forbidden, NotFound, ValidationFailed

pytestmark = pytest.mark.django_db


def member(user: Any) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


# --- making a grant -------------------------------------------------------------------------


def test_an_identical_grant_allows_the_same_call_again_without_asking(bot, bob, check):
    hold_rule(bot, ALL_KINDS)
    request = held(check({"amount": 150, "customer": "cus_1"}))

    approval_decide(
        request_or_action_id=request.action_id,
        actor_user=bob,
        approve=True,
        grant={"kind": "identical", "ttl": "1h"},
    )
    again = check({"customer": "cus_1", "amount": 150})

    assert again["decision"] == "allow"
    grant = Grant.objects.get()
    assert again["reason"].startswith(f"allowed by grant {grant.public_id} from bob@example.com")
    assert grant.use_count == 1


def test_an_identical_grant_does_not_cover_other_arguments(bot, bob, check):
    hold_rule(bot, ALL_KINDS)
    request = held(check({"amount": 150, "customer": "cus_1"}))
    approval_decide(
        request_or_action_id=request,
        actor_user=bob,
        approve=True,
        grant={"kind": "identical", "ttl": "1h"},
    )

    assert check({"amount": 150, "customer": "cus_2"})["decision"] == "requires_approval"


@pytest.mark.parametrize(
    "grant",
    [
        {"kind": "identical", "ttl": "1h"},
        {"kind": "session", "ttl": "1h"},
        {"kind": "amount", "max_amount": 500, "uses": 10, "ttl": "1h"},
    ],
    ids=lambda grant: grant["kind"],
)
def test_a_grant_of_each_kind_expires_after_its_ttl(bot, bob, check, grant):
    hold_rule(bot, ALL_KINDS)
    start = timezone.now()
    with freeze_time(start):
        request = held(check({"amount": 150}, session_id="run-1"))
    with freeze_time(start + timedelta(minutes=10)):  # the ttl runs from the approval
        approval_decide(request_or_action_id=request, actor_user=bob, approve=True, grant=grant)
    with freeze_time(start + timedelta(minutes=69)):
        assert check({"amount": 150}, session_id="run-1")["decision"] == "allow"
    with freeze_time(start + timedelta(minutes=70, seconds=1)):
        assert check({"amount": 150}, session_id="run-1")["decision"] == "requires_approval"


def test_an_identical_grant_names_itself_and_its_expiry_in_the_reason(bot, bob, check):
    hold_rule(bot, ALL_KINDS)
    request = held(check({"amount": 150}))
    approval_decide(
        request_or_action_id=request,
        actor_user=bob,
        approve=True,
        grant={"kind": "identical", "ttl": "1h"},
    )
    grant = Grant.objects.get()

    answer = check({"amount": 150})

    until = grant.expires_at.replace(microsecond=0).isoformat()
    assert answer["reason"] == (
        f"allowed by grant {grant.public_id} from bob@example.com (identical calls, until {until})"
    )
    assert answer["rule"] == "big refunds"
    assert answer["message"] is None


def test_a_session_grant_allows_the_action_for_the_rest_of_the_session_only(bot, bob, check):
    hold_rule(bot, ALL_KINDS)
    request = held(check({"amount": 150}, session_id="run-1"))
    approval_decide(
        request_or_action_id=request,
        actor_user=bob,
        approve=True,
        grant={"kind": "session", "ttl": "8h"},
    )

    assert check({"amount": 900}, session_id="run-1")["decision"] == "allow"
    assert check({"amount": 900}, session_id="run-2")["decision"] == "requires_approval"
    assert check({"amount": 900})["decision"] == "requires_approval"


def test_a_call_without_a_session_cannot_get_a_session_grant_and_nothing_is_decided(
    bot, bob, check
):
    hold_rule(bot, ALL_KINDS)
    request = held(check({"amount": 150}))

    with pytest.raises(ValidationFailed) as refused:
        approval_decide(
            request_or_action_id=request,
            actor_user=bob,
            approve=True,
            grant={"kind": "session", "ttl": "8h"},
        )

    assert refused.value.field == "grant.kind"
    request.refresh_from_db()
    assert request.status == ApprovalRequest.Status.PENDING
    assert not ApprovalVote.objects.exists()
    assert not Grant.objects.exists()


def test_an_amount_grant_allows_up_to_its_amount_and_counts_its_uses(bot, bob, check):
    hold_rule(bot, ALL_KINDS)
    request = held(check({"amount": 150}))
    approval_decide(
        request_or_action_id=request,
        actor_user=bob,
        approve=True,
        grant={"kind": "amount", "max_amount": 200, "uses": 2, "ttl": "1d"},
    )
    grant = Grant.objects.get()

    first = check({"amount": 120})
    over = check({"amount": 201})
    second = check({"amount": "200"})
    third = check({"amount": 110})

    assert first["decision"] == "allow"
    assert first["reason"] == (
        f"allowed by grant {grant.public_id} from bob@example.com, 1 of 2 uses left"
    )
    assert over["decision"] == "requires_approval"
    assert second["decision"] == "allow"
    assert second["reason"].endswith("0 of 2 uses left")
    assert third["decision"] == "requires_approval"
    grant.refresh_from_db()
    assert (grant.uses_left, grant.use_count) == (0, 2)


@pytest.mark.parametrize(
    "amount", [-5, "lots", None, "Infinity", "NaN", True, [150], {"value": 150}], ids=repr
)
def test_an_amount_grant_is_never_used_for_an_amount_that_is_not_a_usable_number(
    bot, bob, check, amount
):
    hold_rule(bot, ["amount"])
    request = held(check({"amount": 150}))
    approval_decide(
        request_or_action_id=request,
        actor_user=bob,
        approve=True,
        grant={"kind": "amount", "max_amount": 200, "uses": 5, "ttl": "1d"},
    )
    arguments = {} if amount is None else {"amount": amount}

    assert check(arguments)["decision"] == "requires_approval"
    assert Grant.objects.get().uses_left == 5


def test_an_amount_grant_reads_the_rules_amount_field(bot, bob, check):
    hold_rule(bot, ["amount"], amount_field="total.value")
    request = held(check({"total": {"value": 150}}))
    approval_decide(
        request_or_action_id=request,
        actor_user=bob,
        approve=True,
        grant={"kind": "amount", "max_amount": 200, "uses": 5, "ttl": "1d"},
    )

    assert check({"total": {"value": 180}, "amount": 5000})["decision"] == "allow"
    assert check({"total": {"value": 250}, "amount": 5})["decision"] == "requires_approval"


# --- what a grant never does ----------------------------------------------------------------


def test_a_block_always_wins_over_a_grant(bot, bob, check):
    hold_rule(bot, ALL_KINDS)
    request = held(check({"amount": 150, "customer": "cus_1"}))
    approval_decide(
        request_or_action_id=request,
        actor_user=bob,
        approve=True,
        grant={"kind": "identical", "ttl": "1h"},
    )
    agents_services.rule_create(
        organization=bot.organization,
        agent=bot,
        data={
            "name": "no refunds for cus_1",
            "action": "stripe.*",
            "effect": "block",
            "when": {"field": "customer", "op": "eq", "value": "cus_1"},
        },
        actor=None,
    )

    answer = check({"amount": 150, "customer": "cus_1"})

    assert answer["decision"] == "block"
    assert Grant.objects.get().use_count == 0


def test_a_grant_does_not_cover_a_call_another_rule_also_holds(bot, bob, check):
    hold_rule(bot, ALL_KINDS)
    request = held(check({"amount": 150}, session_id="run-1"))
    approval_decide(
        request_or_action_id=request,
        actor_user=bob,
        approve=True,
        grant={"kind": "session", "ttl": "1h"},
    )
    agents_services.rule_create(
        organization=bot.organization,
        agent=bot,
        data={
            "name": "refunds to new customers",
            "action": "stripe.refund",
            "effect": "requires_approval",
            "when": {"field": "new_customer", "op": "eq", "value": True},
        },
        actor=None,
    )

    assert check({"amount": 150, "new_customer": False}, session_id="run-1")["decision"] == "allow"
    answer = check({"amount": 150, "new_customer": True}, session_id="run-1")
    assert answer["decision"] == "requires_approval"


def test_a_grant_applies_only_where_its_own_rule_holds_the_call(bot, bob, check):
    hold_rule(bot, ALL_KINDS)
    agents_services.rule_create(
        organization=bot.organization,
        agent=bot,
        data={
            "name": "refunds to new customers",
            "action": "stripe.refund",
            "effect": "requires_approval",
            "when": {"field": "new_customer", "op": "eq", "value": True},
            "approval": {"grants": ALL_KINDS},
        },
        actor=None,
    )
    request = held(check({"amount": 150, "new_customer": False}, session_id="run-1"))
    approval_decide(
        request_or_action_id=request,
        actor_user=bob,
        approve=True,
        grant={"kind": "session", "ttl": "1h"},
    )

    # Held by the other rule only (the amount is within 100): the grant is big refunds'.
    answer = check({"amount": 50, "new_customer": True}, session_id="run-1")

    assert answer["decision"] == "requires_approval"
    assert answer["rule"] == "refunds to new customers"
    assert Grant.objects.get().use_count == 0


def test_a_grant_never_applies_to_another_agent(org_a, alice, bot, bob, check):
    hold_rule(bot, ALL_KINDS)
    other = agents_services.agent_create(organization=org_a, actor=alice, name="other-bot")
    hold_rule(other, ALL_KINDS)
    request = held(check({"amount": 150}, session_id="run-1"))
    approval_decide(
        request_or_action_id=request,
        actor_user=bob,
        approve=True,
        grant={"kind": "session", "ttl": "1h"},
    )

    answer = check({"amount": 150}, session_id="run-1", key=agent_key(other))

    assert answer["decision"] == "requires_approval"


def test_a_grant_never_applies_to_another_environment(bot, bob, check):
    hold_rule(bot, ALL_KINDS)
    request = held(check({"amount": 150}))
    approval_decide(
        request_or_action_id=request,
        actor_user=bob,
        approve=True,
        grant={"kind": "identical", "ttl": "1h"},
    )

    live = check({"amount": 150}, key=agent_key(bot, "live"))

    assert live["decision"] == "requires_approval"
    assert check({"amount": 150})["decision"] == "allow"


def test_a_grant_stops_applying_when_the_rule_no_longer_allows_its_kind(bot, bob, check):
    rule = hold_rule(bot, ALL_KINDS)
    request = held(check({"amount": 150}))
    approval_decide(
        request_or_action_id=request,
        actor_user=bob,
        approve=True,
        grant={"kind": "identical", "ttl": "1h"},
    )
    agents_services.rule_update(
        rule=rule, data={**rule.document, "approval": {"grants": ["amount"]}}, actor=None
    )

    assert check({"amount": 150})["decision"] == "requires_approval"


def test_a_call_the_policy_allows_never_looks_for_a_grant(
    bot, check, django_assert_max_num_queries
):
    hold_rule(bot, ALL_KINDS)
    check({"amount": 10})  # warm the compiled policy and the key cache

    with django_assert_max_num_queries(2) as queries:
        assert check({"amount": 10})["decision"] == "allow"

    assert not any("approvals_grant" in q["sql"] for q in queries.captured_queries)


def test_a_held_call_looks_for_grants_with_one_query_only_when_its_rule_allows_them(
    bot, org_a, alice, check
):
    hold_rule(bot, ["identical"])
    other = agents_services.agent_create(organization=org_a, actor=alice, name="other-bot")
    hold_rule(other)  # no grants allowed
    other_key = agent_key(other)
    check({"amount": 150})
    check({"amount": 150}, key=other_key)  # warm the policies and keys

    with CaptureQueriesContext(connection) as allowing:
        check({"amount": 150})
    with CaptureQueriesContext(connection) as not_allowing:
        check({"amount": 150}, key=other_key)

    def grant_queries(context: CaptureQueriesContext) -> list[str]:
        return [q["sql"] for q in context.captured_queries if '"approvals_grant"' in q["sql"]]

    assert len(grant_queries(allowing)) == 1
    assert grant_queries(allowing)[0].startswith("SELECT")
    assert grant_queries(not_allowing) == []


# --- refused grants: 400, nothing decided -----------------------------------------------------


@pytest.mark.parametrize(
    ("grant", "field"),
    [
        ({"kind": "forever", "ttl": "1h"}, "grant.kind"),
        ({"kind": "identical"}, "grant.ttl"),
        ({"kind": "identical", "ttl": "soon"}, "grant.ttl"),
        ({"kind": "identical", "ttl": "31d"}, "grant.ttl"),
        ({"kind": "identical", "ttl": True}, "grant.ttl"),
        ({"kind": "amount", "ttl": "1d", "uses": 5}, "grant.max_amount"),
        ({"kind": "amount", "ttl": "1d", "uses": 5, "max_amount": "NaN"}, "grant.max_amount"),
        ({"kind": "amount", "ttl": "1d", "uses": 5, "max_amount": -1}, "grant.max_amount"),
        ({"kind": "amount", "ttl": "1d", "max_amount": 10}, "grant.uses"),
        ({"kind": "amount", "ttl": "1d", "max_amount": 10, "uses": 0}, "grant.uses"),
        ({"kind": "amount", "ttl": "1d", "max_amount": 10, "uses": 2.5}, "grant.uses"),
        ({"kind": "identical", "ttl": "1h", "uses": 3}, "grant.uses"),
        ("identical", "grant"),
    ],
    ids=repr,
)
def test_a_malformed_grant_is_a_400_naming_the_field_and_nothing_is_decided(
    bot, bob, check, grant, field
):
    hold_rule(bot, ALL_KINDS)
    request = held(check({"amount": 150}))

    response = member(bob).post(
        f"/api/v1/actions/{request.action_id}/approve", {"grant": grant}, format="json"
    )

    assert response.status_code == HTTPStatus.BAD_REQUEST, response.content
    assert response.json()["field"] == field
    request.refresh_from_db()
    assert request.status == ApprovalRequest.Status.PENDING
    assert not ApprovalVote.objects.exists()
    assert not Grant.objects.exists()


def test_a_grant_the_rule_does_not_allow_is_a_400_and_nothing_is_decided(bot, bob, check):
    hold_rule(bot, ["amount"])
    request = held(check({"amount": 150}))

    response = member(bob).post(
        f"/api/v1/actions/{request.action_id}/approve",
        {"notes": "ok", "grant": {"kind": "identical", "ttl": "1h"}},
        format="json",
    )

    assert response.status_code == HTTPStatus.BAD_REQUEST
    body = response.json()
    assert body["field"] == "grant.kind"
    assert "does not allow identical grants" in body["detail"]
    request.refresh_from_db()
    assert request.status == ApprovalRequest.Status.PENDING
    assert not AuditEntry.objects.filter(kind=AuditEntry.Kind.DECISION).exists()


def test_a_rule_without_grants_allows_none(bot, bob, check):
    hold_rule(bot)
    request = held(check({"amount": 150}))

    with pytest.raises(ValidationFailed, match="allows: no grants"):
        approval_decide(
            request_or_action_id=request,
            actor_user=bob,
            approve=True,
            grant={"kind": "identical", "ttl": "1h"},
        )


def test_a_grant_goes_with_an_approval_not_a_denial(bot, bob, check):
    hold_rule(bot, ALL_KINDS)
    request = held(check({"amount": 150}))

    response = member(bob).post(
        f"/api/v1/actions/{request.action_id}/deny",
        {"grant": {"kind": "identical", "ttl": "1h"}},
        format="json",
    )

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["field"] == "grant"
    request.refresh_from_db()
    assert request.status == ApprovalRequest.Status.PENDING


def test_approving_through_the_api_with_a_grant_answers_the_grant(bot, bob, check):
    hold_rule(bot, ALL_KINDS)
    request = held(check({"amount": 150}))

    response = member(bob).post(
        f"/api/v1/actions/{request.action_id}/approve",
        {"notes": "fine", "grant": {"kind": "amount", "max_amount": 200, "uses": 5, "ttl": "1d"}},
        format="json",
    )

    assert response.status_code == HTTPStatus.OK, response.content
    body = response.json()
    assert body["status"] == "approved"
    [grant] = body["grants"]
    assert grant["kind"] == "amount"
    assert (grant["max_amount"], grant["uses"], grant["uses_left"]) == ("200", 5, 5)
    assert grant["created_by"] == "bob@example.com"
    assert grant["action_id"] == request.action_id


# --- quorum -------------------------------------------------------------------------------


def test_with_a_quorum_the_grant_takes_effect_only_when_the_request_is_approved(
    org_a, bot, alice, bob, check
):
    org_a.plan = plan("business")
    org_a.save()
    hold_rule(bot, ALL_KINDS, approval={"approvals_required": 2})
    request = held(check({"amount": 150}))

    approval_decide(
        request_or_action_id=request,
        actor_user=bob,
        approve=True,
        grant={"kind": "identical", "ttl": "1h"},
    )
    assert not Grant.objects.exists()
    assert check({"amount": 150})["decision"] == "requires_approval"

    approval_decide(request_or_action_id=request, actor_user=alice, approve=True)

    grant = Grant.objects.get()
    assert grant.created_by_label == "bob@example.com"
    assert check({"amount": 150})["decision"] == "allow"


def test_with_a_quorum_a_denial_discards_the_offered_grant(org_a, bot, alice, bob, check):
    org_a.plan = plan("business")
    org_a.save()
    hold_rule(bot, ALL_KINDS, approval={"approvals_required": 2})
    request = held(check({"amount": 150}))
    approval_decide(
        request_or_action_id=request,
        actor_user=bob,
        approve=True,
        grant={"kind": "identical", "ttl": "1h"},
    )

    approval_decide(request_or_action_id=request, actor_user=alice, approve=False)

    assert not Grant.objects.exists()


# --- audit ----------------------------------------------------------------------------------


def test_a_grant_is_audited_when_created_used_and_revoked(bot, bob, check):
    hold_rule(bot, ALL_KINDS)
    request = held(check({"amount": 150}))
    approval_decide(
        request_or_action_id=request,
        actor_user=bob,
        approve=True,
        grant={"kind": "amount", "max_amount": 200, "uses": 5, "ttl": "1d"},
    )
    grant = Grant.objects.get()
    used = check({"amount": 170})
    grant_revoke(grant=grant, actor_user=bob, source="api")

    created = AuditEntry.objects.get(target_id=grant.public_id, data__verb="create")
    assert created.actor_user == bob
    assert created.data["after"]["kind"] == "amount"
    use = AuditEntry.objects.get(public_id=used["action_id"])
    assert use.decision == "allow"
    assert use.rule_name == "big refunds"
    assert (
        use.reason == f"allowed by grant {grant.public_id} from bob@example.com, 4 of 5 uses left"
    )
    assert use.data["grant"]["id"] == grant.public_id
    assert use.data["grant"]["held"] == "amount 170 exceeds max_amount 100 of rule 'big refunds'"
    revoked = AuditEntry.objects.get(target_id=grant.public_id, data__verb="revoke")
    assert revoked.actor_user == bob
    assert revoked.data["after"]["revoked_at"] is not None


def test_the_action_detail_names_the_grant_that_allowed_the_call(bot, bob, alice, check):
    hold_rule(bot, ALL_KINDS)
    request = held(check({"amount": 150}))
    approval_decide(
        request_or_action_id=request,
        actor_user=bob,
        approve=True,
        grant={"kind": "identical", "ttl": "1h"},
    )
    used = check({"amount": 150})

    response = member(alice).get(f"/api/v1/actions/{used['action_id']}")

    assert response.status_code == HTTPStatus.OK
    body = response.json()
    assert body["grant"]["id"] == Grant.objects.get().public_id
    assert any("grant" in line for line in body["explanation"]["lines"])


# --- revoking -------------------------------------------------------------------------------


@pytest.fixture
def granted(bot, bob, check) -> Grant:
    hold_rule(bot, ALL_KINDS)
    request = held(check({"amount": 150}))
    approval_decide(
        request_or_action_id=request,
        actor_user=bob,
        approve=True,
        grant={"kind": "identical", "ttl": "1h"},
    )
    return Grant.objects.get()


def test_a_revoked_grant_allows_nothing_more(granted, bob, check):
    assert check({"amount": 150})["decision"] == "allow"

    response = member(bob).post(f"/api/v1/grants/{granted.public_id}/revoke")

    assert response.status_code == HTTPStatus.OK
    assert response.json()["active"] is False
    assert response.json()["revoked_by"] == "bob@example.com"
    assert check({"amount": 150})["decision"] == "requires_approval"


def test_delete_revokes_a_grant_too(granted, alice, check):
    response = member(alice).delete(f"/api/v1/grants/{granted.public_id}")

    assert response.status_code == HTTPStatus.OK
    granted.refresh_from_db()
    assert granted.revoked_at is not None
    assert check({"amount": 150})["decision"] == "requires_approval"


def test_revoking_a_revoked_grant_changes_nothing(granted, alice, bob):
    grant_revoke(grant=granted, actor_user=bob)
    grant_revoke(grant=granted, actor_user=alice)

    granted.refresh_from_db()
    assert granted.revoked_by_label == "bob@example.com"
    assert AuditEntry.objects.filter(target_id=granted.public_id, data__verb="revoke").count() == 1


def test_viewers_cannot_revoke_grants(granted, vera):
    response = member(vera).post(f"/api/v1/grants/{granted.public_id}/revoke")

    assert response.status_code == HTTPStatus.FORBIDDEN
    with pytest.raises(Forbidden):
        grant_revoke(grant=granted, actor_user=vera)
    granted.refresh_from_db()
    assert granted.revoked_at is None


def test_viewers_cannot_grant(bot, bob, check, org_a):
    hold_rule(bot, ALL_KINDS)
    request = held(check({"amount": 150}))
    viewer = UserFactory(email="viewer2@example.com")
    MembershipFactory(user=viewer, organization=org_a, role="viewer")

    response = member(viewer).post(
        f"/api/v1/actions/{request.action_id}/approve",
        {"grant": {"kind": "identical", "ttl": "1h"}},
        format="json",
    )

    assert response.status_code == HTTPStatus.FORBIDDEN
    assert not Grant.objects.exists()


def test_an_approver_key_may_grant_and_revoke_as_its_creator(bot, alice, check):
    hold_rule(bot, ALL_KINDS)
    request = held(check({"amount": 150}))
    _key, raw = agents_services.api_key_create(
        organization=bot.organization, kind="approver", actor=alice
    )
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)

    approved = client.post(
        f"/api/v1/actions/{request.action_id}/approve",
        {"grant": {"kind": "identical", "ttl": "1h"}},
        format="json",
    )
    grant_id = approved.json()["grants"][0]["id"]
    revoked = client.post(f"/api/v1/grants/{grant_id}/revoke")

    assert approved.status_code == HTTPStatus.OK
    assert approved.json()["grants"][0]["created_by"].startswith("alice@example.com (key ")
    assert revoked.status_code == HTTPStatus.OK
    assert revoked.json()["active"] is False


def test_agent_keys_cannot_list_read_or_revoke_grants(granted, bot):
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=agent_key(bot))

    assert client.get("/api/v1/grants").status_code == HTTPStatus.FORBIDDEN
    assert client.get(f"/api/v1/grants/{granted.public_id}").status_code == HTTPStatus.FORBIDDEN
    revoke = client.post(f"/api/v1/grants/{granted.public_id}/revoke")
    assert revoke.status_code == HTTPStatus.FORBIDDEN
    delete = client.delete(f"/api/v1/grants/{granted.public_id}")
    assert delete.status_code == HTTPStatus.FORBIDDEN
    granted.refresh_from_db()
    assert granted.revoked_at is None


# --- listing --------------------------------------------------------------------------------


def test_grants_are_listed_with_agent_and_active_filters(granted, org_a, alice, bot, vera):
    other = agents_services.agent_create(organization=org_a, actor=alice, name="other-bot")
    Grant.objects.create(
        public_id="grt_old",
        organization=org_a,
        agent=other,
        environment="test",
        action="stripe.refund",
        rule_public_id="rul_x",
        kind="identical",
        expires_at=timezone.now() - timedelta(minutes=1),
        created_by_label="alice@example.com",
    )
    client = member(vera)

    everything = client.get("/api/v1/grants").json()
    active = client.get("/api/v1/grants?active=true").json()
    inactive = client.get("/api/v1/grants?active=false").json()
    of_bot = client.get(f"/api/v1/grants?agent={bot.public_id}").json()
    by_name = client.get("/api/v1/grants?agent=other-bot").json()

    assert everything["count"] == 2
    assert [g["id"] for g in active["results"]] == [granted.public_id]
    assert [g["id"] for g in inactive["results"]] == ["grt_old"]
    assert [g["id"] for g in of_bot["results"]] == [granted.public_id]
    assert [g["id"] for g in by_name["results"]] == ["grt_old"]
    one = client.get(f"/api/v1/grants/{granted.public_id}")
    assert one.status_code == HTTPStatus.OK
    assert one.json()["kind"] == "identical"


def test_a_bad_active_filter_is_a_400_naming_it(granted, alice):
    response = member(alice).get("/api/v1/grants?active=maybe")

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "active" in response.content.decode()


def test_an_organisation_key_may_list_grants(granted, org_a):
    _key, raw = agents_services.api_key_create(organization=org_a, kind="org", actor=None)
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)

    response = client.get("/api/v1/grants")

    assert response.status_code == HTTPStatus.OK
    assert response.json()["count"] == 1


# --- isolation ------------------------------------------------------------------------------


def test_an_outsider_gets_404_for_another_organisations_grant_everywhere(granted, charlie, org_c):
    client = member(charlie)
    url = f"/api/v1/grants/{granted.public_id}"

    assert client.get(url).status_code == HTTPStatus.NOT_FOUND
    assert client.post(f"{url}/revoke").status_code == HTTPStatus.NOT_FOUND
    assert client.delete(url).status_code == HTTPStatus.NOT_FOUND
    assert client.get("/api/v1/grants").json() == {"results": [], "count": 0}
    with pytest.raises(NotFound):
        grant_revoke(grant=granted, actor_user=charlie)
    granted.refresh_from_db()
    assert granted.revoked_at is None


def test_another_organisations_keys_get_404_for_a_grant(granted, org_c):
    for kind in ("org", "approver"):
        _key, raw = agents_services.api_key_create(
            organization=org_c, kind=kind, actor=org_c.memberships.get().user
        )
        client = APIClient()
        client.credentials(HTTP_X_API_KEY=raw)
        url = f"/api/v1/grants/{granted.public_id}"
        assert client.get(url).status_code == HTTPStatus.NOT_FOUND
        if kind == "approver":
            assert client.post(f"{url}/revoke").status_code == HTTPStatus.NOT_FOUND
            assert client.delete(url).status_code == HTTPStatus.NOT_FOUND
    granted.refresh_from_db()
    assert granted.revoked_at is None
