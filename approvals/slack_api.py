"""Calls to Slack's Web API through ``slack_sdk.WebClient``, and what their errors mean.

The base URL is ``settings.SLACK_API_URL`` (tests point it at a local stand-in). An error is
either worth retrying (``SlackRetryLater``: rate limited, with Slack's ``Retry-After``; a 5xx;
the network) or permanent (``SlackPermanentError``: a revoked token, an unknown channel, the
bot not in the channel), and that alone decides whether the task tries again.

The token never reaches a log: slack-sdk redacts the Authorization header in its own debug
lines, and errors here carry Slack's error code, never the request.
"""

from __future__ import annotations

import logging
import urllib.error
from typing import Any

from django.conf import settings
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

logger = logging.getLogger(__name__)

DEFAULT_RETRY_AFTER = 30  # seconds, when a 429 says nothing
SERVER_ERROR_RETRY_AFTER = 10


class SlackRetryLater(Exception):
    def __init__(self, error: str, after: int) -> None:
        super().__init__(error)
        self.error = error
        self.after = after


class SlackPermanentError(Exception):
    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def slack_client(token: str) -> WebClient:
    return WebClient(
        token=token,
        base_url=settings.SLACK_API_URL,
        timeout=settings.SLACK_TIMEOUT_SECONDS,
        logger=logger,
    )


def _retry_after(headers: Any) -> int:
    value = None
    if headers:
        for name, item in dict(headers).items():
            if str(name).lower() == "retry-after":
                value = item[0] if isinstance(item, list) else item
    try:
        return max(1, min(int(str(value).strip()), 3600))
    except (TypeError, ValueError):
        return DEFAULT_RETRY_AFTER


def slack_call(client: WebClient, method: str, **params: Any) -> dict[str, Any]:
    """``client.<method>(**params)``'s data; raises SlackRetryLater or SlackPermanentError."""
    try:
        response = getattr(client, method)(**params)
    except SlackApiError as exc:
        status = exc.response.status_code
        error = str((exc.response.data or {}).get("error") or f"http_{status}")[:100]
        if status == 429 or error == "ratelimited":
            raise SlackRetryLater(error, _retry_after(exc.response.headers)) from None
        if status >= 500:
            raise SlackRetryLater(error, SERVER_ERROR_RETRY_AFTER) from None
        raise SlackPermanentError(error) from None
    except (SlackClientError, urllib.error.URLError, OSError) as exc:
        raise SlackRetryLater(type(exc).__name__, SERVER_ERROR_RETRY_AFTER) from None
    return dict(response.data) if isinstance(response.data, dict) else {}
