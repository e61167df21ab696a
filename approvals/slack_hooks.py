"""What approvals/services.py calls so held calls reach Slack and decisions edit the message.

Both queue a task on the ``slack`` queue after the transaction commits, by the task's name
(services do not import tasks), and only for organisations that connected Slack: a check or
a decision never waits on Slack, and one that has nothing to do there costs one indexed query.
"""

from __future__ import annotations

from django.db import transaction

from approvals.slack_models import SlackConnection, SlackMessage
from wardenproject.celery import app
from wardenproject.tasks import enqueue_now

POST_TASK = "approvals.slack_post"
UPDATE_TASK = "approvals.slack_update"


def slack_task_queue(task_name: str, request_id: int) -> bool:
    """Queue a Slack task by name; False (logged) if the broker is down (the sweep retries)."""
    return enqueue_now(app.signature(task_name), request_id)


def slack_post_on_commit(*, request_id: int, organization_id: int) -> None:
    def queue() -> None:
        if SlackConnection.objects.filter(organization_id=organization_id).exists():
            slack_task_queue(POST_TASK, request_id)

    transaction.on_commit(queue, robust=True)


def slack_update_on_commit(*, request_id: int) -> None:
    """After a decision, escalation, expiry or cancellation: edit the request's message, if it
    has one.

    A message still being posted has no row's ``ts`` yet: the post task checks the status
    again once it has posted (approvals/slack.py), so no outcome is missed.
    """

    def queue() -> None:
        if SlackMessage.objects.filter(request_id=request_id).exists():
            slack_task_queue(UPDATE_TASK, request_id)

    transaction.on_commit(queue, robust=True)
