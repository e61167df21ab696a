"""Remembered approvals in the dashboard: offered on the detail page within what the rule
allows, listed on the agent's page, revoked with its button."""

from __future__ import annotations

from http import HTTPStatus

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from agents import services as agents_services
from approvals.models import ApprovalRequest, Grant
from approvals.services import approval_decide
from audit.models import AuditEntry
from tests.approvals.conftest import ALL_KINDS, held, hold_rule

pytestmark = pytest.mark.django_db


def _logged_in(client, user):
    client.force_login(user)
    return client


def test_the_detail_page_offers_only_the_kinds_the_rule_allows(client, bot, bob, check):
    hold_rule(bot, ["identical", "amount"])
    request = held(check({"amount": 150}, session_id="run-1"))

    page = _logged_in(client, bob).get(reverse("approvals:detail", args=[request.action_id]))

    html = page.content.decode()
    assert "Remember this approval" in html
    assert 'value="identical"' in html
    assert 'value="amount"' in html
    assert 'value="session"' not in html


def test_the_detail_page_offers_nothing_to_remember_when_the_rule_allows_no_grants(
    client, bot, bob, check
):
    hold_rule(bot)
    request = held(check({"amount": 150}))

    page = _logged_in(client, bob).get(reverse("approvals:detail", args=[request.action_id]))

    assert "Remember this approval" not in page.content.decode()


def test_approving_on_the_detail_page_can_remember_the_approval(client, bot, bob, check):
    hold_rule(bot, ALL_KINDS)
    request = held(check({"amount": 150}))

    response = _logged_in(client, bob).post(
        reverse("approvals:decide", args=[request.action_id]),
        {
            "decision": "approve",
            "notes": "",
            "grant_kind": "amount",
            "grant_ttl": "8h",
            "grant_max_amount": "300",
            "grant_uses": "3",
        },
    )

    assert response.status_code == HTTPStatus.FOUND
    request.refresh_from_db()
    assert request.status == ApprovalRequest.Status.APPROVED
    grant = Grant.objects.get()
    assert (grant.kind, grant.max_amount, grant.uses, grant.created_by_label) == (
        "amount",
        300,
        3,
        "bob@example.com",
    )
    assert check({"amount": 250})["decision"] == "allow"


def test_a_grant_the_rule_does_not_allow_decides_nothing_on_the_detail_page(
    client, bot, bob, check
):
    hold_rule(bot, ["amount"])
    request = held(check({"amount": 150}))

    response = _logged_in(client, bob).post(
        reverse("approvals:decide", args=[request.action_id]),
        {"decision": "approve", "grant_kind": "identical", "grant_ttl": "1h"},
        follow=True,
    )

    assert "does not allow identical grants" in response.content.decode()
    request.refresh_from_db()
    assert request.status == ApprovalRequest.Status.PENDING
    assert not Grant.objects.exists()


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


def test_the_agent_page_lists_active_grants_with_a_revoke_button_for_reviewers(
    client, granted, bot, bob
):
    page = _logged_in(client, bob).get(reverse("agents:detail", args=[bot.public_id]))

    html = page.content.decode()
    assert granted.public_id in html
    assert reverse("approvals:grant-revoke", args=[granted.public_id]) in html


def test_viewers_see_grants_but_no_revoke_button(client, granted, bot, vera):
    page = _logged_in(client, vera).get(reverse("agents:detail", args=[bot.public_id]))

    html = page.content.decode()
    assert granted.public_id in html
    assert reverse("approvals:grant-revoke", args=[granted.public_id]) not in html


def test_the_revoke_button_revokes_the_grant_at_once(client, granted, bot, bob, check):
    response = _logged_in(client, bob).post(
        reverse("approvals:grant-revoke", args=[granted.public_id])
    )

    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"].endswith(f"/agents/{bot.public_id}/#grants")
    granted.refresh_from_db()
    assert granted.revoked_by_label == "bob@example.com"
    assert check({"amount": 150})["decision"] == "requires_approval"
    page = client.get(reverse("agents:detail", args=[bot.public_id]))
    assert f'id="grant-{granted.public_id}"' not in page.content.decode()


def test_a_viewer_cannot_revoke_a_grant(client, granted, vera):
    response = _logged_in(client, vera).post(
        reverse("approvals:grant-revoke", args=[granted.public_id])
    )

    assert response.status_code == HTTPStatus.FORBIDDEN
    granted.refresh_from_db()
    assert granted.revoked_at is None


def test_an_outsider_gets_404_revoking_another_organisations_grant(client, granted, charlie, org_c):
    agents_services.agent_create(organization=org_c, actor=charlie, name="charlie-bot")

    response = _logged_in(client, charlie).post(
        reverse("approvals:grant-revoke", args=[granted.public_id])
    )

    assert response.status_code == HTTPStatus.NOT_FOUND
    granted.refresh_from_db()
    assert granted.revoked_at is None


def test_the_admin_lists_grants_and_revokes_them_through_the_service(client, granted, bob):
    bob.is_staff = bob.is_superuser = True
    bob.save()
    client.force_login(bob)

    listed = client.get("/admin/approvals/grant/")
    revoked = client.post(
        "/admin/approvals/grant/",
        {"action": "revoke_selected", ACTION_CHECKBOX_NAME: [granted.pk]},
    )

    assert listed.status_code == HTTPStatus.OK
    assert granted.public_id in listed.content.decode()
    assert revoked.status_code == HTTPStatus.FOUND
    granted.refresh_from_db()
    assert granted.revoked_by_label == "bob@example.com"
    assert AuditEntry.objects.filter(target_id=granted.public_id, data__verb="revoke").exists()
