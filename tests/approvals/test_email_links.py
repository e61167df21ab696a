"""One-click signed links in approval emails: GET shows, only the page's POST decides."""

from __future__ import annotations

import re
from datetime import timedelta
from http import HTTPStatus

import pytest
from django.core import mail, signing
from django.test import Client
from django.utils import timezone

from accounts.models import Membership
from approvals.email_links import SALT
from approvals.models import ApprovalRequest, EmailLink, Grant
from approvals.services import approval_decide
from approvals.tasks import approvals_notify
from audit.models import AuditEntry
from tests.approvals.conftest import approval_spec, held, hold_rule, request_create

pytestmark = pytest.mark.django_db

LINK = re.compile(r"(?P<choice>Approve|Reject): (?P<url>\S+/approvals/email/\S+/)")


def links_in(message) -> dict[str, str]:
    """{"approve": path, "reject": path} of a one-request email."""
    found = {m["choice"].lower(): m["url"] for m in LINK.finditer(message.body)}
    return {choice: "/" + url.split("/", 3)[3] for choice, url in found.items()}


def email_to(address: str):
    (message,) = [m for m in mail.outbox if m.to == [address]]
    return message


@pytest.fixture
def emailed(org_a, agent_a):
    """A pending request of Acme, emailed to Alice and Bob; Bob's links."""
    request = request_create(
        agent_a,
        arguments={"amount": 500, "card_number": "4242424242424242", "customer": {"email": "c@x"}},
        spec=approval_spec(redact=("card_number", "customer.email")),
    )
    approvals_notify(org_a.pk)
    return request, links_in(email_to("bob@example.com"))


def csrf_client() -> Client:
    return Client(enforce_csrf_checks=True)


def confirm(client: Client, path: str, notes: str = "", **fields: str) -> object:
    """GET the page (which sets the CSRF cookie), then POST its form with the token (and
    any other ``fields`` of the form, such as the grant's)."""
    page = client.get(path)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())
    assert token, page.content.decode()
    return client.post(path, {"csrfmiddlewaretoken": token.group(1), "notes": notes, **fields})


def test_each_reviewer_gets_links_of_their_own(emailed):
    request, bob_links = emailed
    alice_links = links_in(email_to("alice@example.com"))
    assert set(bob_links) == {"approve", "reject"}
    assert bob_links["approve"] != alice_links["approve"]
    assert EmailLink.objects.filter(request=request).count() == 2


def test_a_scanner_that_follows_the_links_decides_nothing(emailed):
    request, links = emailed
    for path in (links["approve"], links["reject"], links["approve"]):
        response = Client().get(path)
        assert response.status_code == HTTPStatus.OK
    request.refresh_from_db()
    assert request.status == "pending"
    assert request.votes.count() == 0
    assert not EmailLink.objects.filter(used_at__isnull=False).exists()


def test_the_page_shows_the_context_with_redacted_arguments(emailed):
    request, links = emailed
    page = Client().get(links["approve"]).content.decode()
    for shown in (request.action, "refund-bot", "large refunds", request.reason, "500"):
        assert shown in page
    assert "4242424242424242" not in page
    assert "c@x" not in page
    assert page.count("[redacted]") == 2
    assert "bob@example.com" in page
    assert "Confirm: approve" in page


def test_the_email_itself_redacts_the_arguments(emailed):
    body = email_to("bob@example.com").body
    assert "4242424242424242" not in body
    assert "card_number=[redacted]" in body


def test_confirming_decides_as_the_reviewer_with_source_email(emailed, bob):
    request, links = emailed
    response = confirm(csrf_client(), links["approve"], notes="looks fine")
    assert response.status_code == HTTPStatus.OK
    assert "This link is now used up" in response.content.decode()
    request.refresh_from_db()
    assert (request.status, request.decided_by, request.notes) == ("approved", bob, "looks fine")
    entry = AuditEntry.objects.get(action_id=request.action_id, kind="decision")
    assert (entry.source, entry.actor_user) == ("email", bob)


def test_the_reject_link_denies(emailed):
    request, links = emailed
    confirm(csrf_client(), links["reject"])
    request.refresh_from_db()
    assert request.status == "denied"


def test_a_post_without_the_csrf_token_is_refused(emailed):
    request, links = emailed
    response = csrf_client().post(links["approve"], {"notes": ""})
    assert response.status_code == HTTPStatus.FORBIDDEN
    request.refresh_from_db()
    assert request.status == "pending"


def test_a_used_link_cannot_be_replayed(org_a, agent_a, bob):
    request = request_create(agent_a, approvals_required=2)  # Bob's vote leaves it pending
    org_a.plan.approval_quorum = True
    org_a.plan.save()
    approvals_notify(org_a.pk)
    links = links_in(email_to("bob@example.com"))
    client = csrf_client()
    assert confirm(client, links["approve"]).status_code == HTTPStatus.OK
    page = client.get(links["approve"])
    assert page.status_code == HTTPStatus.GONE
    assert "already used" in page.content.decode()
    replay = confirm_without_form(client, links["reject"])
    assert replay.status_code == HTTPStatus.CONFLICT
    request.refresh_from_db()
    assert request.status == "pending"
    assert list(request.votes.values_list("vote", flat=True)) == ["approve"]


def confirm_without_form(client: Client, path: str):
    """POST with a valid CSRF cookie and token (the login page sets one), even where the
    link's page offers no form: what a replaying attacker with a browser could send."""
    client.get("/accounts/login/")
    token = client.cookies["csrftoken"].value
    return client.post(path, {"csrfmiddlewaretoken": token})


def test_a_link_of_a_request_decided_elsewhere_says_so_and_changes_nothing(emailed, alice):
    request, links = emailed
    approval_decide(request_or_action_id=request, actor_user=alice, approve=False)
    page = Client().get(links["approve"])
    assert page.status_code == HTTPStatus.CONFLICT
    assert "already decided elsewhere: it is denied" in page.content.decode()
    response = confirm_without_form(csrf_client(), links["approve"])
    assert response.status_code == HTTPStatus.CONFLICT
    request.refresh_from_db()
    assert request.status == "denied"
    assert not EmailLink.objects.filter(used_at__isnull=False).exists()


def test_a_link_of_an_expired_request_says_so(emailed):
    request, links = emailed
    ApprovalRequest.objects.filter(pk=request.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    page = Client().get(links["approve"])
    assert page.status_code == HTTPStatus.GONE
    assert "expired" in page.content.decode()
    response = confirm_without_form(csrf_client(), links["approve"])
    assert response.status_code == HTTPStatus.CONFLICT
    request.refresh_from_db()
    assert request.status == "expired"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda token: token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        lambda token: token[:20],
        lambda token: signing.dumps({"a": "act_x", "n": "guess"}, salt=SALT),
        lambda token: signing.dumps({"a": "act_x", "n": "guess"}, salt="another.salt"),
    ],
)
def test_a_tampered_or_forged_link_is_not_valid(emailed, tamper):
    request, links = emailed
    token = links["approve"].rstrip("/").rsplit("/", 1)[1]
    path = f"/approvals/email/approve/{tamper(token)}/"
    page = Client().get(path)
    assert page.status_code == HTTPStatus.NOT_FOUND
    assert "not valid" in page.content.decode()
    assert confirm_without_form(csrf_client(), path).status_code == HTTPStatus.NOT_FOUND
    request.refresh_from_db()
    assert request.status == "pending"


def test_a_link_pointed_at_another_request_is_not_valid(emailed, make_request):
    """A token is bound to its request: its nonce with another action id does not load."""
    _request, links = emailed
    token = links["approve"].rstrip("/").rsplit("/", 1)[1]
    payload = signing.loads(token, salt=SALT)
    other = make_request(action="db.drop")
    forged = signing.dumps({"a": other.action_id, "n": payload["n"]}, salt=SALT)
    page = Client().get(f"/approvals/email/approve/{forged}/")
    assert page.status_code == HTTPStatus.NOT_FOUND


def test_a_reviewer_who_left_the_organisation_gets_404_and_changes_nothing(emailed, bob, org_a):
    request, links = emailed
    Membership.objects.filter(user=bob, organization=org_a).delete()
    page = Client().get(links["approve"])
    assert page.status_code == HTTPStatus.NOT_FOUND
    assert request.action not in page.content.decode()  # a foreign request shows nothing
    assert confirm_without_form(csrf_client(), links["approve"]).status_code == 404
    request.refresh_from_db()
    assert request.status == "pending"


def test_role_is_checked_at_use_not_at_sending(emailed, bob, org_a):
    request, links = emailed
    Membership.objects.filter(user=bob, organization=org_a).update(role="viewer")
    page = Client().get(links["approve"])
    assert page.status_code == HTTPStatus.FORBIDDEN
    assert confirm_without_form(csrf_client(), links["approve"]).status_code == 403
    request.refresh_from_db()
    assert request.status == "pending"


def test_routing_is_checked_at_use_after_an_escalation(org_a, agent_a, bob):
    request = request_create(
        agent_a,
        spec=approval_spec(
            approvers=("user:bob@example.com",),
            on_timeout="escalate",
            escalate_to=("role:owner",),
        ),
    )
    approvals_notify(org_a.pk)
    links = links_in(email_to("bob@example.com"))
    ApprovalRequest.objects.filter(pk=request.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    page = Client().get(links["approve"])  # the read escalates it, to the owners
    assert page.status_code == HTTPStatus.FORBIDDEN
    assert "role:owner" in page.content.decode()
    response = confirm_without_form(csrf_client(), links["approve"])
    assert response.status_code == HTTPStatus.FORBIDDEN
    request.refresh_from_db()
    assert (request.status, request.approvers) == ("pending", ["role:owner"])


def test_only_routed_reviewers_get_links(org_a, agent_a):
    request_create(agent_a, spec=approval_spec(approvers=("role:owner",)))
    approvals_notify(org_a.pk)
    assert [m.to[0] for m in mail.outbox] == ["alice@example.com"]
    assert EmailLink.objects.get().user.email == "alice@example.com"


def test_a_digest_carries_links_for_every_request(org_a, agent_a):
    first = request_create(agent_a)
    second = request_create(agent_a, action="db.read")
    approvals_notify(org_a.pk)
    body = email_to("bob@example.com").body
    assert len(LINK.findall(body)) == 4
    bobs = EmailLink.objects.filter(user__email="bob@example.com")
    assert {link.request_id for link in bobs} == {first.pk, second.pk}


def test_the_link_page_is_not_cached(emailed):
    _request, links = emailed
    response = Client().get(links["approve"])
    assert "no-cache" in response["Cache-Control"] or "no-store" in response["Cache-Control"]


def test_an_unknown_choice_is_404(emailed):
    _request, links = emailed
    path = links["approve"].replace("/approve/", "/maybe/")
    assert Client().get(path).status_code == HTTPStatus.NOT_FOUND


# Remember this approval from the email page ---------------------------------------------


def _emailed_check(org_a, bot, check, grants, **check_kw):
    """A call of the bot held by a rule that allows ``grants``, emailed; Bob's links."""
    hold_rule(bot, grants)
    request = held(check({"amount": 150}, **check_kw))
    mail.outbox.clear()
    approvals_notify(org_a.pk)
    return request, links_in(email_to("bob@example.com"))


def test_the_approve_page_offers_the_grants_the_rule_allows(org_a, bot, check):
    _request, links = _emailed_check(org_a, bot, check, ["identical", "amount"])
    approve_page = Client().get(links["approve"]).content.decode()
    assert "Remember this approval" in approve_page
    assert 'value="identical"' in approve_page and 'value="amount"' in approve_page
    assert 'value="session"' not in approve_page  # not allowed by the rule
    assert "Remember this approval" not in Client().get(links["reject"]).content.decode()


def test_approving_from_the_email_page_remembers_the_approval(org_a, bot, bob, check):
    request, links = _emailed_check(org_a, bot, check, ["identical"])
    response = confirm(csrf_client(), links["approve"], grant_kind="identical", grant_ttl="1h")
    assert response.status_code == HTTPStatus.OK
    grant = Grant.objects.get(request=request)
    assert (grant.kind, grant.created_by) == ("identical", bob)
    assert grant.public_id in response.content.decode()
    # The identical call now goes through without a new request, naming the grant.
    again = check({"amount": 150})
    assert again["decision"] == "allow"
    assert grant.public_id in again["reason"]


def test_a_grant_the_rule_does_not_allow_decides_nothing_and_keeps_the_link(org_a, bot, check):
    request, links = _emailed_check(org_a, bot, check, ["identical"])
    response = confirm(csrf_client(), links["approve"], grant_kind="session", grant_ttl="8h")
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "does not allow session grants" in response.content.decode()
    request.refresh_from_db()
    assert request.status == "pending"
    assert not Grant.objects.exists()
    assert not EmailLink.objects.filter(used_at__isnull=False).exists()
    # The same link still works for a plain approval.
    confirm(csrf_client(), links["approve"], grant_kind="")
    request.refresh_from_db()
    assert request.status == "approved"


def test_a_reject_link_never_grants(org_a, bot, check):
    request, links = _emailed_check(org_a, bot, check, ["identical"])
    confirm(csrf_client(), links["reject"], grant_kind="identical", grant_ttl="1h")
    request.refresh_from_db()
    assert request.status == "denied"
    assert not Grant.objects.exists()
