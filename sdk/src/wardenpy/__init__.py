"""wardenpy: the Python SDK for Warden.

Every tool call of an AI agent is checked against its policy and allowed, blocked, or held
for a human to approve::

    import wardenpy

    wardenpy.configure(api_key="wdn_test_...", api_url="http://127.0.0.1:8000")
    safe_refund = wardenpy.guard_tool("stripe.refund", issue_refund)
    safe_refund(150.0, customer_id="cus_abc")
"""

from __future__ import annotations

__version__ = "0.1.0"

from .background import flush
from .client import Client, get_client
from .config import (
    WardenConfig,
    configure,
    configure_live,
    configure_test,
    get_config,
    is_configured,
    reset_config,
)
from .exceptions import (
    AlreadyClaimedError,
    APIError,
    ApprovalRequiredError,
    ApprovalTimeoutError,
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    PolicyDeniedError,
    RateLimitedError,
    ServerUnreachableError,
    WardenError,
)
from .guard import bind_arguments, guard, guard_tool
from .session import clear_session, get_session, session, set_session
from .token_usage import log_token_usage
from .types import (
    ActionState,
    CheckResult,
    LogResult,
    PendingApproval,
    PolicyDecision,
    WebhookEvent,
)
from .webhooks import (
    HandlerRegistry,
    InMemorySeenStore,
    SqliteSeenStore,
    handle_webhook,
    register_handler,
    set_seen_store,
    verify_webhook_signature,
)

__all__ = [
    "APIError",
    "ActionState",
    "AlreadyClaimedError",
    "ApprovalRequiredError",
    "ApprovalTimeoutError",
    "AuthenticationError",
    "CheckResult",
    "Client",
    "ConfigurationError",
    "ConflictError",
    "HandlerRegistry",
    "InMemorySeenStore",
    "LogResult",
    "PendingApproval",
    "PolicyDecision",
    "PolicyDeniedError",
    "RateLimitedError",
    "ServerUnreachableError",
    "SqliteSeenStore",
    "WardenConfig",
    "WardenError",
    "WebhookEvent",
    "__version__",
    "bind_arguments",
    "clear_session",
    "configure",
    "configure_live",
    "configure_test",
    "flush",
    "get_client",
    "get_config",
    "get_session",
    "guard",
    "guard_tool",
    "handle_webhook",
    "is_configured",
    "log_token_usage",
    "register_handler",
    "reset_config",
    "session",
    "set_seen_store",
    "set_session",
    "verify_webhook_signature",
]
