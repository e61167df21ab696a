"""Slack approvals end to end against a local stand-in for Slack's Web API: connecting,
posting held calls (channel, redaction), deciding from signed button clicks and the reject
modal, in-place edits after any outcome, user mapping, and isolation between organisations.

Personas: Alice owns Acme (workspace T_ACME), Bob approves there, Vera views; Charlie owns
Charlie Co (workspace T_CHARLIE).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import timedelta
from http import HTTPStatus
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from celery.signals import task_postrun, task_prerun
from django.urls import reverse
from django.utils import timezone

from agents import services as agent_services
from approvals import notifications as approvals_notifications
from approvals import slack
from approvals.models import (
    ApprovalRequest,
    Grant,
    SlackConnection,
    SlackMessage,
    SlackUserLink,
)
from approvals.services import approval_decide, approval_expire_overdue, approval_request_create
from approvals.slack_api import SlackRetryLater
from approvals.tasks import approvals_slack_post
from audit.models import AuditEntry
from audit.services import audit_record
from tests.approvals.slack_standin import (
    SlackStandIn,
    block_action,
    reject_submission,
    remember_submission,
    signed_interaction,
)
from tests.factories import plan
from wardenproject import tasks as wardenproject_tasks
from wardenproject.celery import app, close_old_connections
from wardenproject.errors import ValidationFailed
from wardenproject.ids import public_id

pytestmark = pytest.mark.django_db

URL = "/integrations/slack/interactions"
ACME_TOKEN, ACME_SECRET = "xoxb-acme-0123456789", "acmeSigningSecret0123456789abcdef"
CHARLIE_TOKEN, CHARLIE_SECRET = "xoxb-charlie-987654", "charlieSigningSecret9876543210"


@pytest.fixture
def standin(settings) -> Iterator[SlackStandIn]:
    server = SlackStandIn()
    server.teams = {ACME_TOKEN: ("T_ACME", "Acme HQ"), CHARLIE_TOKEN: ("T_CHARLIE", "Charlie")}
    server.start()
    settings.SLACK_API_URL = server.url
    settings.WARDEN_BASE_URL = "https://warden.test"
    yield server
    server.stop()


@pytest.fixture
def eager(monkeypatch) -> Iterator[None]:
    """Queued Slack tasks run at once, in this process (test_slack_live.py runs a worker).

    Reviewer email is not under test here: its tasks are not queued (run eagerly, a digest
    window's re-queue would loop until the window ends). A worker closes stale database
    connections around each task (wardenproject/celery.py); in this process that would close
    the test's own connection, so not here."""
    monkeypatch.setattr(approvals_notifications, "enqueue_now", lambda *args, **kwargs: True)
    signals = (task_prerun, task_postrun)
    for signal in signals:
        signal.disconnect(close_old_connections)
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    wardenproject_tasks._broker_down_until.clear()
    yield
    app.conf.task_always_eager = False
    app.conf.task_eager_propagates = False
    for signal in signals:
        signal.connect(close_old_connections)


@pytest.fixture
def acme_slack(standin, org_a, alice) -> SlackConnection:
    return slack.slack_connect(
        actor=alice,
        organization=org_a,
        bot_token=ACME_TOKEN,
        signing_secret=ACME_SECRET,
        default_channel="#approvals",
    )


@pytest.fixture
def charlie_slack(standin, org_c, charlie) -> SlackConnection:
    return slack.slack_connect(
        actor=charlie,
        organization=org_c,
        bot_token=CHARLIE_TOKEN,
        signing_secret=CHARLIE_SECRET,
        default_channel="#charlie",
    )


@pytest.fixture
def linked(acme_slack, org_a, alice, bob, vera) -> dict[str, str]:
    """Slack users of Acme's workspace linked to Alice, Bob and Vera."""
    ids = {"alice": "U_ALICE", "bob": "U_BOB", "vera": "U_VERA"}
    for name, user in (("alice", alice), ("bob", bob), ("vera", vera)):
        SlackUserLink.objects.create(
            organization=org_a, team_id="T_ACME", slack_user_id=ids[name], user=user, via="link"
        )
    return ids


@pytest.fixture
def refund_bot(org_a, alice):
    return agent_services.agent_create(organization=org_a, actor=alice, name="refund-bot")


def hold(
    agent: Any,
    *,
    rule: Any = None,
    arguments: dict[str, Any] | None = None,
    timeout_seconds: int = 3600,
    approvals_required: int = 1,
) -> ApprovalRequest:
    """What the check path does for a held call (its audit row, then the request)."""
    entry = audit_record(
        organization=agent.organization,
        kind=AuditEntry.Kind.CHECK,
        public_id=public_id("act"),
        agent=agent,
        agent_public_id=agent.public_id,
        action="stripe.refund",
        action_id="",
        arguments=arguments if arguments is not None else {"amount": 500, "customer": "cus_1"},
        environment="live",
        session_id="s1",
        decision="requires_approval",
        status="pending",
        rule_name=rule.name if rule else "large refunds",
        reason="Refunds over 100 need a human",
        source="native",
    )
    return approval_request_create(
        entry=entry,
        api_key=None,
        rule=rule,
        timeout_seconds=timeout_seconds,
        approvals_required=approvals_required,
    )


@pytest.fixture
def posted(acme_slack, refund_bot, eager, django_capture_on_commit_callbacks) -> ApprovalRequest:
    with django_capture_on_commit_callbacks(execute=True):
        request = hold(refund_bot)
    return request


def interact(client, payload: dict[str, Any], secret: str = ACME_SECRET, **kwargs: Any):
    body, headers = signed_interaction(payload, secret, **kwargs)
    return client.post(URL, data=body, content_type="application/x-www-form-urlencoded", **headers)


def texts(blocks: Any) -> str:
    return json.dumps(blocks, ensure_ascii=False)


# --- connecting -------------------------------------------------------------------------------


def test_connecting_keeps_the_workspace_and_stores_the_token_and_secret_encrypted(
    acme_slack, standin
):
    row = SlackConnection.objects.get(pk=acme_slack.pk)
    assert (row.team_id, row.team_name, row.default_channel) == ("T_ACME", "Acme HQ", "#approvals")
    assert row.bot_token.startswith("fernet:") and ACME_TOKEN not in row.bot_token
    assert row.signing_secret.startswith("fernet:") and ACME_SECRET not in row.signing_secret
    assert [c.token for c in standin.received("auth.test")] == [ACME_TOKEN]


def test_the_connection_audit_entry_names_the_actor_and_holds_no_secret(acme_slack, alice):
    entry = AuditEntry.objects.filter(
        kind=AuditEntry.Kind.CONFIG, target_type="slackconnection"
    ).get()
    assert entry.actor_user == alice
    assert ACME_TOKEN not in json.dumps(entry.data) and ACME_SECRET not in json.dumps(entry.data)
    assert entry.data["after"]["team_id"] == "T_ACME"


def test_a_token_slack_refuses_is_an_error_on_the_bot_token_field(standin, org_a, alice):
    with pytest.raises(ValidationFailed) as refused:
        slack.slack_connect(
            actor=alice,
            organization=org_a,
            bot_token="xoxb-revoked",
            signing_secret="abc123",
            default_channel="#approvals",
        )
    assert refused.value.field == "bot_token" and "invalid_auth" in refused.value.detail
    assert not SlackConnection.objects.exists()


def test_a_workspace_already_connected_to_another_organisation_is_refused(
    acme_slack, org_c, charlie
):
    with pytest.raises(ValidationFailed) as refused:
        slack.slack_connect(
            actor=charlie,
            organization=org_c,
            bot_token=ACME_TOKEN,
            signing_secret="other123",
            default_channel="#x",
        )
    assert refused.value.field == "bot_token"
    assert SlackConnection.objects.get().organization_id == acme_slack.organization_id


def test_the_settings_page_never_shows_the_token_or_the_secret(client, acme_slack, alice, org_a):
    client.force_login(alice)
    page = client.get(reverse("slack:settings", args=[org_a.public_id]))
    assert page.status_code == HTTPStatus.OK
    content = page.content.decode()
    assert "Acme HQ" in content and "/integrations/slack/interactions" in content
    assert ACME_TOKEN not in content and ACME_SECRET not in content


def test_connecting_from_the_settings_page_with_empty_secrets_keeps_the_stored_ones(
    client, acme_slack, alice, org_a
):
    client.force_login(alice)
    response = client.post(
        reverse("slack:settings", args=[org_a.public_id]),
        {"bot_token": "", "signing_secret": "", "default_channel": "#finance"},
    )
    assert response.status_code == HTTPStatus.FOUND
    row = SlackConnection.objects.get()
    assert row.default_channel == "#finance"
    assert slack.secret_decrypt(row.bot_token) == ACME_TOKEN


def test_a_token_slack_refuses_on_the_settings_page_is_shown_on_its_field(
    client, standin, alice, org_a
):
    client.force_login(alice)
    response = client.post(
        reverse("slack:settings", args=[org_a.public_id]),
        {"bot_token": "xoxb-revoked", "signing_secret": "abc123", "default_channel": "#a"},
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.context["form"].errors["bot_token"]
    assert "xoxb-revoked" not in response.content.decode()  # a password field is not re-shown
    assert not SlackConnection.objects.exists()


def test_an_outsider_gets_404_and_a_viewer_403_on_the_slack_settings_page(
    client, acme_slack, org_a, charlie, vera
):
    url = reverse("slack:settings", args=[org_a.public_id])
    client.force_login(charlie)
    assert client.get(url).status_code == HTTPStatus.NOT_FOUND
    assert client.post(url, {"default_channel": "#x"}).status_code == HTTPStatus.NOT_FOUND
    disconnect = reverse("slack:disconnect", args=[org_a.public_id])
    assert client.post(disconnect).status_code == HTTPStatus.NOT_FOUND
    client.force_login(vera)
    assert client.get(url).status_code == HTTPStatus.FORBIDDEN
    assert SlackConnection.objects.filter(organization=org_a).exists()


def test_disconnecting_forgets_the_connection_and_is_audited(client, acme_slack, alice, org_a):
    client.force_login(alice)
    client.post(reverse("slack:disconnect", args=[org_a.public_id]))
    assert not SlackConnection.objects.exists()
    assert AuditEntry.objects.filter(
        kind=AuditEntry.Kind.CONFIG, data__verb="disconnect", actor_user=alice
    ).exists()


# --- posting ----------------------------------------------------------------------------------


def test_a_held_call_through_the_check_api_posts_one_message_with_buttons(
    client, acme_slack, refund_bot, alice, standin, eager, django_capture_on_commit_callbacks
):
    agent_services.rule_create(
        organization=refund_bot.organization,
        agent=refund_bot,
        data={"name": "big refunds", "action": "stripe.refund", "effect": "requires_approval"},
        actor=alice,
    )
    _, raw_key = agent_services.api_key_create(
        organization=refund_bot.organization,
        kind="agent",
        agent=refund_bot,
        environment="live",
        actor=alice,
    )
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(
            "/api/v1/check",
            data=json.dumps({"action": "stripe.refund", "arguments": {"amount": 900}}),
            content_type="application/json",
            HTTP_X_API_KEY=raw_key,
        ).json()
    assert answer["decision"] == "requires_approval"
    (call,) = standin.received("chat.postMessage")
    assert call.token == ACME_TOKEN and call.params["channel"] == "#approvals"
    shown = texts(call.params["blocks"])
    for expected in ("stripe.refund", "refund-bot", "big refunds", "900", "<!date^"):
        assert expected in shown
    buttons = next(b for b in call.params["blocks"] if b["type"] == "actions")["elements"]
    assert [(b["action_id"], b["value"]) for b in buttons] == [
        ("warden_approve", answer["action_id"]),
        ("warden_reject", answer["action_id"]),
    ]
    message = SlackMessage.objects.get(request__action_id=answer["action_id"])
    assert (message.state, message.ts, message.channel_id) == (
        "posted",
        "1700000000.000001",
        "C0CHANNEL",
    )


def test_an_organisation_without_slack_posts_nothing(
    standin, refund_bot, eager, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        hold(refund_bot)
    assert standin.received() == []
    assert not SlackMessage.objects.exists()


def test_the_rules_channel_wins_then_the_agents_then_the_organisations(
    acme_slack, refund_bot, alice, standin, eager, django_capture_on_commit_callbacks
):
    routed = agent_services.rule_create(
        organization=refund_bot.organization,
        agent=refund_bot,
        data={
            "name": "finance",
            "action": "stripe.refund",
            "effect": "requires_approval",
            "approval": {"slack_channel": "#finance-approvals"},
        },
        actor=alice,
    )
    with django_capture_on_commit_callbacks(execute=True):
        hold(refund_bot)  # no rule: the organisation's default
    slack.slack_agent_channel_set(actor=alice, agent=refund_bot, channel="#refund-bot")
    with django_capture_on_commit_callbacks(execute=True):
        hold(refund_bot)  # the agent's channel
    with django_capture_on_commit_callbacks(execute=True):
        hold(refund_bot, rule=routed)  # the rule's
    channels = [c.params["channel"] for c in standin.received("chat.postMessage")]
    assert channels == ["#approvals", "#refund-bot", "#finance-approvals"]


def test_the_rules_redact_paths_are_hidden_and_long_values_cut(
    acme_slack, refund_bot, alice, standin, eager, django_capture_on_commit_callbacks
):
    rule = agent_services.rule_create(
        organization=refund_bot.organization,
        agent=refund_bot,
        data={
            "name": "cards",
            "action": "stripe.refund",
            "effect": "requires_approval",
            "approval": {"redact": ["card_number", "customer.email"]},
        },
        actor=alice,
    )
    arguments = {
        "card_number": "4242424242424242",
        "customer": {"email": "eve@example.com", "name": "Eve"},
        "memo": "x" * 5000,
    }
    with django_capture_on_commit_callbacks(execute=True):
        request = hold(refund_bot, rule=rule, arguments=arguments)
    shown = texts(standin.received("chat.postMessage")[0].params["blocks"])
    assert "4242424242424242" not in shown and "eve@example.com" not in shown
    assert shown.count("[redacted]") == 2 and "Eve" in shown
    assert "x" * 201 not in shown and "4800 more characters" in shown
    # The edit after the decision hides the same fields.
    with django_capture_on_commit_callbacks(execute=True):
        approval_decide(request_or_action_id=request, actor_user=alice, approve=True)
    edited = texts(standin.received("chat.update")[0].params["blocks"])
    assert "4242424242424242" not in edited and "[redacted]" in edited


def test_a_rate_limited_post_raises_retry_later_with_slacks_retry_after(posted, standin):
    SlackMessage.objects.all().delete()
    standin.then(
        "chat.postMessage", 429, {"ok": False, "error": "ratelimited"}, **{"Retry-After": "7"}
    )
    with pytest.raises(SlackRetryLater) as later:
        slack.slack_message_post(request_id=posted.pk)
    assert later.value.after == 7
    assert SlackMessage.objects.get().state == "posting"


def test_the_post_task_retries_after_a_429_and_posts_once(acme_slack, refund_bot, standin, eager):
    app.conf.task_eager_propagates = False  # apply() then runs the retry itself
    standin.then(
        "chat.postMessage", 429, {"ok": False, "error": "ratelimited"}, **{"Retry-After": "1"}
    )
    request = hold(refund_bot)
    # Run in this process, a retry is applied at once (a worker waits for Retry-After:
    # tests/approvals/test_slack_live.py).
    approvals_slack_post.apply(args=[request.pk])
    assert len(standin.received("chat.postMessage")) == 2
    message = SlackMessage.objects.get(request=request)
    assert message.state == "posted" and message.ts


def test_a_permanent_slack_error_marks_the_message_failed_without_retrying(
    acme_slack, refund_bot, standin, eager, django_capture_on_commit_callbacks
):
    standin.then("chat.postMessage", 200, {"ok": False, "error": "channel_not_found"})
    with django_capture_on_commit_callbacks(execute=True):
        request = hold(refund_bot)
    assert len(standin.received("chat.postMessage")) == 1
    message = SlackMessage.objects.get(request=request)
    assert (message.state, message.error) == ("failed", "channel_not_found")


def test_a_redelivered_post_task_does_not_post_twice(posted, standin):
    approvals_slack_post.apply(args=[posted.pk])
    assert len(standin.received("chat.postMessage")) == 1


def test_a_post_task_leaves_a_message_another_task_is_posting_until_its_lease_lapses(
    acme_slack, refund_bot, standin
):
    request = hold(refund_bot)
    SlackMessage.objects.create(
        request=request,
        organization=request.organization,
        channel="#approvals",
        leased_until=timezone.now() + timedelta(seconds=30),
    )
    slack.slack_message_post(request_id=request.pk)
    assert standin.received("chat.postMessage") == []
    SlackMessage.objects.update(leased_until=timezone.now() - timedelta(seconds=1))  # it died
    slack.slack_message_post(request_id=request.pk)
    assert len(standin.received("chat.postMessage")) == 1
    assert SlackMessage.objects.get().state == "posted"


# --- in-place edits ---------------------------------------------------------------------------


def test_a_dashboard_decision_edits_the_message_in_place(
    client, posted, alice, standin, django_capture_on_commit_callbacks
):
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("approvals:decide", args=[posted.action_id]),
            {"decision": "approve", "notes": "fine by me"},
        )
    assert response.status_code in (HTTPStatus.FOUND, HTTPStatus.OK)
    posted.refresh_from_db()
    assert posted.status == "approved"
    (update,) = standin.received("chat.update")
    assert (update.params["channel"], update.params["ts"]) == ("C0CHANNEL", "1700000000.000001")
    shown = texts(update.params["blocks"])
    assert "Approved" in shown and "alice@example.com" in shown and "fine by me" in shown
    assert '"actions"' not in shown  # the buttons are gone
    assert SlackMessage.objects.get().shown_status == "approved"


def test_an_expiry_edits_the_message_to_say_it_expired(
    acme_slack, refund_bot, standin, eager, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        request = hold(refund_bot, timeout_seconds=60)
    with django_capture_on_commit_callbacks(execute=True):
        assert approval_expire_overdue(now=timezone.now() + timedelta(minutes=2)) == 1
    (update,) = standin.received("chat.update")
    assert "Expired" in texts(update.params["blocks"])
    request.refresh_from_db()
    assert request.status == "expired"


@pytest.mark.django_db(transaction=True)
def test_a_decision_made_while_the_message_is_being_posted_is_shown_once_it_is_posted(
    acme_slack, refund_bot, alice, standin, eager
):
    request = hold(refund_bot)  # autocommit: its post task has run already
    SlackMessage.objects.all().delete()

    def decide_meanwhile() -> None:
        approval_decide(request_or_action_id=request, actor_user=alice, approve=False, notes="no")

    standin.before["chat.postMessage"] = decide_meanwhile
    slack.slack_message_post(request_id=request.pk)
    posted_blocks = texts(standin.received("chat.postMessage")[-1].params["blocks"])
    assert "warden_approve" in posted_blocks  # rendered while still pending
    edited = texts(standin.received("chat.update")[-1].params["blocks"])
    assert "Rejected" in edited and "alice@example.com" in edited
    assert SlackMessage.objects.get().shown_status == "denied"


def test_the_sweep_queues_the_post_of_a_held_call_whose_task_was_lost_and_the_lost_edits(
    acme_slack, refund_bot, alice, standin, eager
):
    lost = hold(refund_bot)  # no hook ran: as if its task was lost
    later = timezone.now() + timedelta(minutes=3)
    assert slack.slack_sweep(now=timezone.now()).posts == []  # not yet: its task may be queued
    assert slack.slack_sweep(now=later).posts == [lost.pk]
    assert len(standin.received("chat.postMessage")) == 1
    approval_decide(request_or_action_id=lost, actor_user=alice, approve=True)  # hook not run
    assert slack.slack_sweep(now=later + timedelta(minutes=3)).updates == [lost.pk]
    assert "Approved" in texts(standin.received("chat.update")[0].params["blocks"])
    assert slack.slack_sweep(now=later + timedelta(minutes=6)) == slack.SweepResult([], [])


def test_the_sweep_leaves_alone_calls_held_before_slack_was_connected(
    standin, org_a, alice, refund_bot, eager
):
    before = hold(refund_bot)
    ApprovalRequest.objects.filter(pk=before.pk).update(
        requested_at=timezone.now() - timedelta(minutes=10)
    )
    slack.slack_connect(
        actor=alice,
        organization=org_a,
        bot_token=ACME_TOKEN,
        signing_secret=ACME_SECRET,
        default_channel="#approvals",
    )
    assert slack.slack_sweep(now=timezone.now() + timedelta(minutes=3)).posts == []


def test_an_edit_slack_refuses_for_good_is_not_retried_by_the_sweep(posted, alice, standin):
    standin.then("chat.update", 200, {"ok": False, "error": "message_not_found"})
    approval_decide(request_or_action_id=posted, actor_user=alice, approve=True)
    slack.slack_message_update(request_id=posted.pk)
    assert SlackMessage.objects.get().state == "failed"
    assert slack.slack_sweep(now=timezone.now() + timedelta(minutes=5)).updates == []


# --- signatures -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "age", "why"),
    [
        ("wrongSecret000", 0, "a bad signature"),
        (ACME_SECRET, 301, "a timestamp older than five minutes"),
        (CHARLIE_SECRET, 0, "another organisation's signing secret"),
    ],
)
def test_an_interaction_that_does_not_verify_is_401_and_decides_nothing(
    client, posted, linked, charlie_slack, standin, secret, age, why
):
    payload = block_action(
        team_id="T_ACME", user_id=linked["bob"], action="warden_approve", action_id=posted.action_id
    )
    response = interact(client, payload, secret, timestamp=int(time.time()) - age)
    assert response.status_code == HTTPStatus.UNAUTHORIZED, why
    assert response.json()["code"] == "bad_signature"
    posted.refresh_from_db()
    assert posted.status == "pending"
    assert standin.received("chat.postEphemeral") == []


def test_an_interaction_without_signature_headers_or_from_an_unknown_workspace_is_401(
    client, posted, linked
):
    payload = block_action(
        team_id="T_ACME", user_id="U_BOB", action="warden_approve", action_id=posted.action_id
    )
    body, _ = signed_interaction(payload, ACME_SECRET)
    unsigned = client.post(URL, data=body, content_type="application/x-www-form-urlencoded")
    assert unsigned.status_code == HTTPStatus.UNAUTHORIZED
    payload["team"]["id"] = "T_NOBODY"
    assert interact(client, payload).status_code == HTTPStatus.UNAUTHORIZED
    posted.refresh_from_db()
    assert posted.status == "pending"


def test_a_malformed_interaction_body_is_400_naming_the_payload(client, acme_slack):
    response = client.post(
        URL, data="nothing=here", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["field"] == "payload"


def test_the_interactions_endpoint_takes_post_only(client):
    assert client.get(URL).status_code == HTTPStatus.METHOD_NOT_ALLOWED


# --- deciding from Slack ----------------------------------------------------------------------


def test_a_linked_approvers_approve_click_decides_as_them_and_edits_the_message(
    client, posted, linked, bob, standin, django_capture_on_commit_callbacks
):
    payload = block_action(
        team_id="T_ACME", user_id=linked["bob"], action="warden_approve", action_id=posted.action_id
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = interact(client, payload)
    assert response.status_code == HTTPStatus.OK
    posted.refresh_from_db()
    assert (posted.status, posted.decided_by) == ("approved", bob)
    entry = AuditEntry.objects.get(action_id=posted.action_id, kind=AuditEntry.Kind.DECISION)
    assert (entry.source, entry.actor_user) == ("slack", bob)
    assert "bob@example.com" in texts(standin.received("chat.update")[0].params["blocks"])


def test_a_viewers_click_gets_an_ephemeral_explanation_and_changes_nothing(
    client, posted, linked, standin
):
    payload = block_action(
        team_id="T_ACME",
        user_id=linked["vera"],
        action="warden_approve",
        action_id=posted.action_id,
    )
    assert interact(client, payload).status_code == HTTPStatus.OK
    posted.refresh_from_db()
    assert posted.status == "pending"
    (ephemeral,) = standin.received("chat.postEphemeral")
    assert ephemeral.params["user"] == "U_VERA" and ephemeral.params["channel"] == "C0CHANNEL"
    assert "Viewers" in ephemeral.params["text"]
    assert standin.received("chat.update") == []


def test_a_click_on_a_decided_request_says_so_and_changes_nothing(
    client, posted, linked, alice, standin
):
    approval_decide(request_or_action_id=posted, actor_user=alice, approve=False)
    payload = block_action(
        team_id="T_ACME", user_id=linked["bob"], action="warden_approve", action_id=posted.action_id
    )
    interact(client, payload)
    posted.refresh_from_db()
    assert posted.status == "denied"
    assert "already denied" in standin.received("chat.postEphemeral")[0].params["text"]


def test_with_a_quorum_one_click_is_a_vote_the_voter_is_told_and_the_buttons_stay(
    client,
    acme_slack,
    refund_bot,
    linked,
    org_a,
    standin,
    eager,
    django_capture_on_commit_callbacks,
):
    org_a.plan = plan("business")
    org_a.save(update_fields=["plan"])
    with django_capture_on_commit_callbacks(execute=True):
        request = hold(refund_bot, approvals_required=2)
    payload = block_action(
        team_id="T_ACME",
        user_id=linked["bob"],
        action="warden_approve",
        action_id=request.action_id,
    )
    with django_capture_on_commit_callbacks(execute=True):
        interact(client, payload)
    request.refresh_from_db()
    assert request.status == "pending" and request.votes.count() == 1
    assert "2 people must approve" in standin.received("chat.postEphemeral")[0].params["text"]
    assert standin.received("chat.update") == []
    with django_capture_on_commit_callbacks(execute=True):
        interact(client, payload)  # the same person again
    assert "already voted" in standin.received("chat.postEphemeral")[1].params["text"]


def test_reject_opens_a_modal_and_its_submission_denies_with_the_note(
    client, posted, linked, bob, standin, django_capture_on_commit_callbacks
):
    click = block_action(
        team_id="T_ACME", user_id=linked["bob"], action="warden_reject", action_id=posted.action_id
    )
    assert interact(client, click).status_code == HTTPStatus.OK
    (opened,) = standin.received("views.open")
    assert opened.params["trigger_id"] == "trigger.123"
    assert opened.params["view"]["private_metadata"] == posted.action_id
    posted.refresh_from_db()
    assert posted.status == "pending"  # the click alone decides nothing
    submission = reject_submission(
        team_id="T_ACME", user_id=linked["bob"], action_id=posted.action_id, notes="too large"
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = interact(client, submission)
    assert response.status_code == HTTPStatus.OK and response.content == b""
    posted.refresh_from_db()
    assert (posted.status, posted.notes, posted.decided_by) == ("denied", "too large", bob)
    shown = texts(standin.received("chat.update")[0].params["blocks"])
    assert "Rejected" in shown and "too large" in shown


def test_a_viewers_reject_submission_shows_the_refusal_in_the_modal(client, posted, linked):
    submission = reject_submission(
        team_id="T_ACME", user_id=linked["vera"], action_id=posted.action_id, notes="no"
    )
    response = interact(client, submission)
    body = response.json()
    assert body["response_action"] == "errors" and "Viewers" in body["errors"]["notes"]
    posted.refresh_from_db()
    assert posted.status == "pending"


# --- mapping Slack users ----------------------------------------------------------------------


def test_an_unlinked_users_click_gets_a_one_time_link_and_decides_nothing(
    client, posted, acme_slack, standin
):
    payload = block_action(
        team_id="T_ACME", user_id="U_STRANGER", action="warden_approve", action_id=posted.action_id
    )
    interact(client, payload)
    posted.refresh_from_db()
    assert posted.status == "pending"
    (ephemeral,) = standin.received("chat.postEphemeral")
    assert "not linked" in ephemeral.params["text"]
    assert "https://warden.test/integrations/slack/link/" in ephemeral.params["text"]


def _link_path(standin: SlackStandIn) -> str:
    text = standin.received("chat.postEphemeral")[-1].params["text"]
    return text[text.index("https://warden.test") + len("https://warden.test") :].split()[0]


def test_the_one_time_link_links_on_post_only_and_only_once(
    client, posted, acme_slack, standin, bob, alice, django_capture_on_commit_callbacks
):
    interact(
        client,
        block_action(
            team_id="T_ACME",
            user_id="U_NEWBOB",
            action="warden_approve",
            action_id=posted.action_id,
        ),
    )
    path = _link_path(standin)
    client.force_login(bob)
    page = client.get(path)  # a preview or a mail scanner's GET links nothing
    assert page.status_code == HTTPStatus.OK and "U_NEWBOB" in page.content.decode()
    assert not SlackUserLink.objects.exists()
    assert client.post(path).status_code == HTTPStatus.FOUND
    link = SlackUserLink.objects.get()
    assert (link.slack_user_id, link.user, link.via) == ("U_NEWBOB", bob, "link")
    client.force_login(alice)
    assert client.post(path).status_code == HTTPStatus.CONFLICT  # used
    assert SlackUserLink.objects.get().user == bob
    # Now Bob's Slack click decides as Bob.
    with django_capture_on_commit_callbacks(execute=True):
        interact(
            client,
            block_action(
                team_id="T_ACME",
                user_id="U_NEWBOB",
                action="warden_approve",
                action_id=posted.action_id,
            ),
        )
    posted.refresh_from_db()
    assert (posted.status, posted.decided_by) == ("approved", bob)


def test_an_outsider_opening_the_link_gets_404_and_links_nothing(
    client, posted, acme_slack, standin, charlie
):
    interact(
        client,
        block_action(
            team_id="T_ACME", user_id="U_X", action="warden_approve", action_id=posted.action_id
        ),
    )
    client.force_login(charlie)
    path = _link_path(standin)
    assert client.get(path).status_code == HTTPStatus.NOT_FOUND
    assert client.post(path).status_code == HTTPStatus.NOT_FOUND
    assert not SlackUserLink.objects.exists()


def test_the_link_page_asks_an_anonymous_visitor_to_log_in_first(client):
    response = client.get(reverse("slack:link", args=["anything"]))
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"].startswith(reverse("account_login"))


def test_a_forged_link_token_is_404(client, bob):
    client.force_login(bob)
    response = client.get(reverse("slack:link", args=["not-a-signed-token"]))
    assert response.status_code == HTTPStatus.NOT_FOUND


def test_a_slack_user_whose_email_is_a_members_verified_email_is_linked_on_first_click(
    client, posted, acme_slack, standin, bob, django_capture_on_commit_callbacks
):
    EmailAddress.objects.create(user=bob, email=bob.email, verified=True, primary=True)
    standin.users["U_BOBMAIL"] = "Bob@Example.com"
    with django_capture_on_commit_callbacks(execute=True):
        interact(
            client,
            block_action(
                team_id="T_ACME",
                user_id="U_BOBMAIL",
                action="warden_approve",
                action_id=posted.action_id,
            ),
        )
    posted.refresh_from_db()
    assert (posted.status, posted.decided_by) == ("approved", bob)
    assert SlackUserLink.objects.get(slack_user_id="U_BOBMAIL").via == "email"


def test_an_unverified_email_maps_nobody(client, posted, acme_slack, standin, bob):
    EmailAddress.objects.create(user=bob, email=bob.email, verified=False, primary=True)
    standin.users["U_BOBMAIL"] = bob.email
    interact(
        client,
        block_action(
            team_id="T_ACME",
            user_id="U_BOBMAIL",
            action="warden_approve",
            action_id=posted.action_id,
        ),
    )
    posted.refresh_from_db()
    assert posted.status == "pending"
    assert not SlackUserLink.objects.exists()
    assert "not linked" in standin.received("chat.postEphemeral")[0].params["text"]


def test_the_profile_lists_a_members_slack_links_and_unlinks_only_their_own(
    client, linked, bob, alice
):
    client.force_login(bob)
    assert "U_BOB" in client.get(reverse("profile")).content.decode()
    alices = SlackUserLink.objects.get(user=alice)
    remove = reverse("slack:link_remove", args=[alices.pk])
    assert client.post(remove).status_code == HTTPStatus.NOT_FOUND
    bobs = SlackUserLink.objects.get(user=bob)
    assert client.post(reverse("slack:link_remove", args=[bobs.pk])).status_code == HTTPStatus.FOUND
    assert set(SlackUserLink.objects.values_list("user__email", flat=True)) == {
        "alice@example.com",
        "vera@example.com",
    }


# --- isolation --------------------------------------------------------------------------------


def test_another_organisations_slack_cannot_decide_this_organisations_request(
    client, posted, charlie_slack, charlie, org_c, standin
):
    SlackUserLink.objects.create(
        organization=org_c, team_id="T_CHARLIE", slack_user_id="U_CHARLIE", user=charlie, via="link"
    )
    for action in ("warden_approve", "warden_reject"):
        payload = block_action(
            team_id="T_CHARLIE", user_id="U_CHARLIE", action=action, action_id=posted.action_id
        )
        assert interact(client, payload, CHARLIE_SECRET).status_code == HTTPStatus.OK
    submission = reject_submission(
        team_id="T_CHARLIE", user_id="U_CHARLIE", action_id=posted.action_id
    )
    assert interact(client, submission, CHARLIE_SECRET).json()["response_action"] == "errors"
    posted.refresh_from_db()
    assert posted.status == "pending"
    assert standin.received("views.open") == []
    assert all(
        "No such approval request" in c.params["text"]
        for c in standin.received("chat.postEphemeral")
    )


def test_a_slack_user_linked_in_another_organisation_is_not_a_member_here(
    client, posted, acme_slack, org_c, charlie, standin
):
    # Charlie's Slack id, linked in Charlie Co, clicking in Acme's workspace: unlinked here.
    SlackUserLink.objects.create(
        organization=org_c, team_id="T_CHARLIE", slack_user_id="U_CHARLIE", user=charlie, via="link"
    )
    interact(
        client,
        block_action(
            team_id="T_ACME",
            user_id="U_CHARLIE",
            action="warden_approve",
            action_id=posted.action_id,
        ),
    )
    posted.refresh_from_db()
    assert posted.status == "pending"
    assert "not linked" in standin.received("chat.postEphemeral")[0].params["text"]


def test_an_agents_slack_channel_is_set_by_its_managers_and_404_for_outsiders(
    client, refund_bot, alice, charlie, vera
):
    url = reverse("slack:agent_channel", args=[refund_bot.public_id])
    client.force_login(charlie)
    assert client.post(url, {"slack_channel": "#evil"}).status_code == HTTPStatus.NOT_FOUND
    client.force_login(vera)
    assert client.post(url, {"slack_channel": "#evil"}).status_code == HTTPStatus.FORBIDDEN
    assert slack.slack_agent_channel_get(agent=refund_bot) == ""
    client.force_login(alice)
    assert client.post(url, {"slack_channel": "#refunds"}).status_code == HTTPStatus.FOUND
    assert slack.slack_agent_channel_get(agent=refund_bot) == "#refunds"
    page = client.get(reverse("agents:detail", args=[refund_bot.public_id]))
    assert "#refunds" in page.content.decode()
    assert AuditEntry.objects.filter(data__verb="set Slack channel of", actor_user=alice).exists()


def test_an_invalid_agent_channel_is_refused(refund_bot, alice):
    with pytest.raises(ValidationFailed) as refused:
        slack.slack_agent_channel_set(actor=alice, agent=refund_bot, channel="not a channel!")
    assert refused.value.field == "slack_channel"


# --- secrets stay out of logs -----------------------------------------------------------------


def test_the_token_and_signing_secret_never_reach_the_logs(
    client,
    standin,
    org_a,
    alice,
    refund_bot,
    linked,
    eager,
    caplog,
    django_capture_on_commit_callbacks,
):
    caplog.set_level(logging.DEBUG)
    slack.slack_connect(
        actor=alice,
        organization=org_a,
        bot_token=ACME_TOKEN,
        signing_secret=ACME_SECRET,
        default_channel="#approvals",
    )
    standin.then("chat.postMessage", 200, {"ok": False, "error": "not_in_channel"})
    with django_capture_on_commit_callbacks(execute=True):
        request = hold(refund_bot)
        hold(refund_bot)
    interact(
        client,
        block_action(
            team_id="T_ACME", user_id="U_VERA", action="warden_approve", action_id=request.action_id
        ),
    )
    logged = caplog.text
    assert "not_in_channel" in logged  # the failure is logged...
    assert ACME_TOKEN not in logged and ACME_SECRET not in logged  # ...never the secrets


# --- remembering an approval, routing and escalation from Slack -------------------------------


def _rule(agent: Any, alice: Any, **approval: Any) -> Any:
    return agent_services.rule_create(
        organization=agent.organization,
        agent=agent,
        data={
            "name": "big refunds",
            "action": "stripe.refund",
            "effect": "requires_approval",
            "max_amount": 100,
            "approval": approval,
        },
        actor=alice,
    )


def _live_check(agent: Any, arguments: dict[str, Any]) -> dict[str, Any]:
    from rest_framework.test import APIClient

    _key, raw = agent_services.api_key_create(
        organization=agent.organization, kind="agent", agent=agent, environment="live", actor=None
    )
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)
    answer = client.post(
        "/api/v1/check",
        {"action": "stripe.refund", "arguments": arguments, "session_id": "s1"},
        format="json",
    )
    assert answer.status_code == HTTPStatus.OK, answer.content
    return answer.json()


def _held(agent: Any, capture: Any) -> ApprovalRequest:
    """A call held through the check API (the rule's routing, grants and escalation copied
    onto the request as in production); its Slack message posted."""
    with capture(execute=True):
        answer = _live_check(agent, {"amount": 500, "customer": "cus_1"})
    assert answer["decision"] == "requires_approval", answer
    return ApprovalRequest.objects.get(action_id=answer["action_id"])


def _buttons(message: Any) -> list[str]:
    (actions,) = [b for b in message.params["blocks"] if b["type"] == "actions"]
    return [element["action_id"] for element in actions["elements"]]


@pytest.fixture
def remembering(
    acme_slack, refund_bot, alice, eager, django_capture_on_commit_callbacks
) -> ApprovalRequest:
    """A call held by a rule that lets approvers remember identical and amount grants."""
    _rule(refund_bot, alice, grants=["identical", "amount"])
    return _held(refund_bot, django_capture_on_commit_callbacks)


def test_a_rule_that_allows_grants_adds_approve_and_remember(posted, remembering, standin):
    without, with_grants = standin.received("chat.postMessage")
    assert _buttons(without) == ["warden_approve", "warden_reject"]
    assert _buttons(with_grants) == ["warden_approve", "warden_reject", "warden_approve_remember"]


def test_approve_and_remember_opens_a_modal_with_the_rules_kinds_and_grants_on_submit(
    client, remembering, linked, bob, standin, django_capture_on_commit_callbacks
):
    click = block_action(
        team_id="T_ACME",
        user_id=linked["bob"],
        action="warden_approve_remember",
        action_id=remembering.action_id,
    )
    assert interact(client, click).status_code == HTTPStatus.OK
    (opened,) = standin.received("views.open")
    view = opened.params["view"]
    assert view["private_metadata"] == remembering.action_id
    (kind_block,) = [b for b in view["blocks"] if b.get("block_id") == "kind"]
    assert [o["value"] for o in kind_block["element"]["options"]] == ["identical", "amount"]
    remembering.refresh_from_db()
    assert remembering.status == "pending"  # opening the modal decides nothing

    submission = remember_submission(
        team_id="T_ACME",
        user_id=linked["bob"],
        action_id=remembering.action_id,
        kind="identical",
        ttl="2h",
        notes="fine for today",
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = interact(client, submission)
    assert response.status_code == HTTPStatus.OK and response.content == b""
    remembering.refresh_from_db()
    assert (remembering.status, remembering.decided_by) == ("approved", bob)
    assert remembering.notes == "fine for today"
    grant = Grant.objects.get(request=remembering)
    assert (grant.kind, grant.created_by) == ("identical", bob)
    created = AuditEntry.objects.get(target_id=grant.public_id, data__verb="create")
    assert created.source == "slack"
    # The identical call goes through without asking, naming the grant.
    again = _live_check(remembering.agent, {"amount": 500, "customer": "cus_1"})
    assert again["decision"] == "allow" and grant.public_id in again["reason"]
    # A different amount is still held.
    assert _live_check(remembering.agent, {"amount": 501, "customer": "cus_1"})["decision"] == (
        "requires_approval"
    )


def test_a_grant_the_rule_does_not_allow_is_refused_in_the_modal_and_decides_nothing(
    client, remembering, linked
):
    submission = remember_submission(
        team_id="T_ACME", user_id=linked["bob"], action_id=remembering.action_id, kind="session"
    )
    body = interact(client, submission).json()
    assert body["response_action"] == "errors"
    assert "does not allow session grants" in body["errors"]["kind"]
    bad_ttl = remember_submission(
        team_id="T_ACME",
        user_id=linked["bob"],
        action_id=remembering.action_id,
        kind="identical",
        ttl="forever",
    )
    assert "ttl" in interact(client, bad_ttl).json()["errors"]
    remembering.refresh_from_db()
    assert remembering.status == "pending"
    assert not Grant.objects.exists()


def test_a_viewer_gets_no_remember_modal(client, remembering, linked, standin):
    click = block_action(
        team_id="T_ACME",
        user_id=linked["vera"],
        action="warden_approve_remember",
        action_id=remembering.action_id,
    )
    interact(client, click)
    assert standin.received("views.open") == []
    assert "Viewers" in standin.received("chat.postEphemeral")[0].params["text"]
    submission = remember_submission(
        team_id="T_ACME", user_id=linked["vera"], action_id=remembering.action_id, kind="identical"
    )
    assert "Viewers" in interact(client, submission).json()["errors"]["kind"]
    remembering.refresh_from_db()
    assert remembering.status == "pending"


def test_routing_refuses_a_click_of_someone_the_rule_does_not_name(
    client,
    acme_slack,
    refund_bot,
    alice,
    linked,
    standin,
    eager,
    django_capture_on_commit_callbacks,
):
    """The rule names Alice alone: Bob (an approver by role) is refused on every Slack path
    with the approvers named; Alice's click decides."""
    _rule(refund_bot, alice, approvers=["user:alice@example.com"], grants=["identical"])
    request = _held(refund_bot, django_capture_on_commit_callbacks)
    for action in ("warden_approve", "warden_approve_remember"):
        interact(
            client,
            block_action(
                team_id="T_ACME", user_id=linked["bob"], action=action, action_id=request.action_id
            ),
        )
    refusals = [e.params["text"] for e in standin.received("chat.postEphemeral")]
    assert len(refusals) == 2
    assert all("alice@example.com" in text for text in refusals), refusals
    assert standin.received("views.open") == []
    rejected = interact(
        client,
        reject_submission(team_id="T_ACME", user_id=linked["bob"], action_id=request.action_id),
    ).json()
    assert "alice@example.com" in rejected["errors"]["notes"]
    remembered = interact(
        client,
        remember_submission(
            team_id="T_ACME", user_id=linked["bob"], action_id=request.action_id, kind="identical"
        ),
    ).json()
    assert "alice@example.com" in remembered["errors"]["kind"]
    request.refresh_from_db()
    assert request.status == "pending" and request.votes.count() == 0

    with django_capture_on_commit_callbacks(execute=True):
        interact(
            client,
            block_action(
                team_id="T_ACME",
                user_id=linked["alice"],
                action="warden_approve",
                action_id=request.action_id,
            ),
        )
    request.refresh_from_db()
    assert request.status == "approved"


def test_an_escalation_edits_the_message_to_name_the_new_approvers_and_deadline(
    client,
    acme_slack,
    refund_bot,
    alice,
    linked,
    standin,
    eager,
    django_capture_on_commit_callbacks,
):
    _rule(
        refund_bot,
        alice,
        timeout="10m",
        approvers=["user:bob@example.com"],
        on_timeout="escalate",
        escalate_to=["user:alice@example.com"],
        escalate_timeout="30m",
    )
    request = _held(refund_bot, django_capture_on_commit_callbacks)
    (posted,) = standin.received("chat.postMessage")
    assert "bob@example.com" in texts(posted.params["blocks"])
    with django_capture_on_commit_callbacks(execute=True):
        approval_expire_overdue(now=timezone.now() + timedelta(minutes=11))
    request.refresh_from_db()
    assert (request.status, request.approvers) == ("pending", ["user:alice@example.com"])
    (update,) = standin.received("chat.update")
    shown = texts(update.params["blocks"])
    assert "Approvers (escalated)" in shown and "alice@example.com" in shown
    assert "bob@example.com" not in shown
    assert _buttons(update) == ["warden_approve", "warden_reject"]  # still to be decided
