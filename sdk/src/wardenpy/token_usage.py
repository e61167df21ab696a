"""Fire-and-forget token usage reporting."""

from __future__ import annotations

from . import background
from .client import get_client
from .session import get_session


def log_token_usage(
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    session_id: str | None = None,
) -> None:
    """Queue ``POST /api/v1/token-usage``; returns at once (never blocks on the network).

    The current session id is attached unless ``session_id`` is given. Raises
    :class:`ConfigurationError` synchronously if the SDK is not configured.
    """
    client = get_client()
    session_id = session_id if session_id is not None else get_session()
    background.worker.submit(
        client.log_token_usage, model, int(prompt_tokens), int(completion_tokens), session_id
    )
