"""Slack with a real Celery worker consuming only the slack queue (as the mail worker of
`make run` and of deploy/systemd does), posting to the local stand-in for Slack's Web API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agents.models import Agent
from approvals import slack
from approvals.models import SlackMessage
from approvals.services import approval_decide
from tests.approvals.slack_standin import SlackStandIn
from tests.approvals.test_slack import ACME_SECRET, ACME_TOKEN, hold
from tests.live import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.live]


@pytest.fixture
def live_standin(settings) -> Iterator[SlackStandIn]:
    server = SlackStandIn()
    server.teams = {ACME_TOKEN: ("T_ACME", "Acme HQ")}
    server.start()
    settings.SLACK_API_URL = server.url
    yield server
    server.stop()


@pytest.fixture
def celery_worker_env(live_standin) -> dict[str, str]:
    return {"SLACK_API_URL": live_standin.url}


@pytest.fixture
def celery_worker_queues() -> str:
    return "slack"


def test_a_worker_posts_after_slacks_retry_after_and_edits_the_message_when_decided(
    live_standin, celery_worker, org_a, alice
):
    slack.slack_connect(
        actor=alice,
        organization=org_a,
        bot_token=ACME_TOKEN,
        signing_secret=ACME_SECRET,
        default_channel="#approvals",
    )
    agent = Agent.objects.create(organization=org_a, name="refund-bot")
    live_standin.then(
        "chat.postMessage", 429, {"ok": False, "error": "ratelimited"}, **{"Retry-After": "2"}
    )
    request = hold(agent)  # commits: its post task is queued
    wait_until(
        lambda: len(live_standin.received("chat.postMessage")) >= 2,
        timeout=60,
        what="the post and its retry",
    )
    first, second = live_standin.received("chat.postMessage")[:2]
    assert second.at - first.at >= 2  # Slack's Retry-After was honoured
    message = wait_until(
        lambda: SlackMessage.objects.filter(request=request, state="posted").first(),
        what="the message to be recorded as posted",
    )
    assert message.ts

    approval_decide(request_or_action_id=request, actor_user=alice, approve=True, notes="ok")
    (update,) = wait_until(lambda: live_standin.received("chat.update"), what="the in-place edit")
    assert update.params["ts"] == message.ts
    assert "Approved" in str(update.params["blocks"])
