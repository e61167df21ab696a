"""Thin Celery tasks: expiry sweep, reviewer notifications and Slack messages."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from approvals.notifications import approval_notify_reviewers, notifications_sweep
from approvals.services import approval_expire_overdue
from approvals.slack import (
    slack_message_give_up,
    slack_message_post,
    slack_message_update,
    slack_sweep,
)
from approvals.slack_api import SlackRetryLater

EXPIRE_EVERY_SECONDS = 2.0
NOTIFY_SWEEP_EVERY_SECONDS = 60.0
SLACK_SWEEP_EVERY_SECONDS = 60.0


@shared_task(name="approvals.expire_overdue", ignore_result=True)
def approvals_expire_overdue() -> int:
    return approval_expire_overdue()


@shared_task(name="approvals.notify", ignore_result=True, acks_late=False)
def approvals_notify(organization_id: int) -> list[str]:
    """Reviewer email: routed to the mail queue (CELERY_TASK_ROUTES)."""
    return approval_notify_reviewers(organization_id=organization_id).notified


@shared_task(name="approvals.notify_sweep", ignore_result=True)
def approvals_notify_sweep() -> list[int]:
    """Queues the notify tasks that were lost; sends nothing itself (default queue)."""
    return notifications_sweep()


# --- Slack (queue "slack", CELERY_TASK_ROUTES) ------------------------------------------------

SLACK_MAX_RETRIES = 8


def _slack_run(task: Any, function: Any, request_id: int) -> None:
    """Run a Slack service; on SlackRetryLater try again after Slack's Retry-After (or the
    backoff for a server or network error), at most SLACK_MAX_RETRIES times."""
    try:
        function(request_id=request_id)
    except SlackRetryLater as exc:
        if task.request.retries >= SLACK_MAX_RETRIES:
            slack_message_give_up(request_id=request_id, error=exc.error)
            return
        raise task.retry(countdown=exc.after, max_retries=SLACK_MAX_RETRIES) from None


@shared_task(name="approvals.slack_post", bind=True, ignore_result=True)
def approvals_slack_post(self: Any, request_id: int) -> None:
    _slack_run(self, slack_message_post, request_id)


@shared_task(name="approvals.slack_update", bind=True, ignore_result=True)
def approvals_slack_update(self: Any, request_id: int) -> None:
    _slack_run(self, slack_message_update, request_id)


@shared_task(name="approvals.slack_sweep", ignore_result=True)
def approvals_slack_sweep() -> dict[str, list[int]]:
    """Queues the Slack posts and edits that were lost; calls Slack itself never (default
    queue)."""
    result = slack_sweep()
    return {"posts": result.posts, "updates": result.updates}
