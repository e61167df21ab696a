"""Exceptions raised by wardenpy. Every one is a :class:`WardenError`."""

from __future__ import annotations


class WardenError(Exception):
    """Base class for every error raised by wardenpy."""


class ConfigurationError(WardenError):
    """A setting is missing or malformed. ``setting`` names it."""

    def __init__(self, message: str, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class PolicyDeniedError(WardenError):
    """The call was blocked by policy, or a reviewer denied it (or it expired).

    The guarded function did not run.
    """

    def __init__(
        self,
        message: str,
        *,
        tool_name: str | None = None,
        action_id: str | None = None,
        reason: str | None = None,
        rule: str | None = None,
        status: str | None = None,
        notes: str | None = None,
        decided_by: str | None = None,
    ) -> None:
        super().__init__(message)
        self.tool_name = tool_name
        self.action_id = action_id
        self.reason = reason
        self.rule = rule
        self.status = status
        self.notes = notes
        self.decided_by = decided_by


class ApprovalTimeoutError(WardenError):
    """No decision arrived within ``max_poll_time`` seconds (wait mode)."""

    def __init__(self, action_id: str, timeout: float, tool_name: str | None = None) -> None:
        super().__init__(f"No approval decision for action {action_id} within {timeout:g}s")
        self.action_id = action_id
        self.timeout = timeout
        self.tool_name = tool_name


class ApprovalRequiredError(WardenError):
    """Raised by :meth:`Client.execute` when the action needs a human decision first."""

    def __init__(self, action: str, action_id: str | None, reason: str | None = None) -> None:
        message = f"Action {action!r} requires human approval (action_id={action_id})"
        if reason:
            message += f": {reason}"
        super().__init__(message)
        self.action = action
        self.action_id = action_id
        self.reason = reason


class APIError(WardenError):
    """The server answered with an error. ``code``/``detail``/``field`` come from its JSON body."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        detail: str | None = None,
        field: str | None = None,
        body: object = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.detail = detail
        self.field = field
        self.body = body


class AuthenticationError(APIError):
    """The server refused the API key (HTTP 401)."""


class RateLimitedError(APIError):
    """HTTP 429 persisted after every retry. ``retry_after`` is the server's last hint."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ConflictError(APIError):
    """HTTP 409. ``status`` is the state that stands on the server."""

    def __init__(self, message: str, *, status: str | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.status = status


class AlreadyClaimedError(ConflictError):
    """The approved action was already claimed, so another worker ran (or is running) it.

    wardenpy never runs the function in that case: an approval runs at most once.
    """


class ServerUnreachableError(WardenError):
    """The Warden server could not be reached (or kept answering 502/503/504).

    wardenpy fails closed: the guarded function did not run.
    """

    def __init__(self, url: str, cause: str, status_code: int | None = None) -> None:
        super().__init__(f"Warden server could not be reached at {url}: {cause}")
        self.url = url
        self.cause = cause
        self.status_code = status_code
