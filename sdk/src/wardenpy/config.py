"""Global SDK configuration: ``configure()``, ``configure_test()``, ``configure_live()``."""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .exceptions import ConfigurationError

ENV_API_KEY = "WARDEN_API_KEY"
ENV_API_URL = "WARDEN_API_URL"
ENV_ENVIRONMENT = "WARDEN_ENVIRONMENT"

ENVIRONMENTS = ("test", "live")

# key prefix -> environment the key implies
_KEY_PREFIXES = {
    "wdn_test_": "test",
    "wdn_live_": "live",
    "wdn_org_": "live",
}
_APPROVER_PREFIX = "wdn_apv_"


@dataclass(frozen=True)
class WardenConfig:
    """Validated settings. Build it with :func:`configure` or :func:`build_config`."""

    api_key: str = field(repr=False)
    api_url: str
    environment: str
    timeout: float = 30.0
    poll_interval: float = 2.0
    max_poll_time: float = 300.0
    retry_attempts: int = 3
    retry_backoff: float = 0.5
    max_retry_after: float = 30.0

    @property
    def key_kind(self) -> str:
        """``agent``, ``org`` or ``approver``."""
        if self.api_key.startswith("wdn_org_"):
            return "org"
        if self.api_key.startswith(_APPROVER_PREFIX):
            return "approver"
        return "agent"

    @property
    def masked_key(self) -> str:
        """The key with its secret part hidden, safe to print."""
        prefix, _, rest = self.api_key.rpartition("_")
        return f"{prefix}_…{rest[-4:]}" if prefix else "…"

    def __repr__(self) -> str:
        return (
            f"WardenConfig(api_key={self.masked_key!r}, api_url={self.api_url!r}, "
            f"environment={self.environment!r}, timeout={self.timeout}, "
            f"poll_interval={self.poll_interval}, max_poll_time={self.max_poll_time}, "
            f"retry_attempts={self.retry_attempts})"
        )


def environment_for_key(api_key: str) -> str | None:
    """The environment a key's prefix implies, or ``None`` for a key that implies none."""
    for prefix, env in _KEY_PREFIXES.items():
        if api_key.startswith(prefix):
            return env
    return None


def _number(name: str, value: object, *, minimum: float, strict: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be a number, got {value!r}", setting=name)
    number = float(value)
    if math.isnan(number) or number < minimum or (strict and number == minimum):
        relation = "greater than" if strict else "at least"
        raise ConfigurationError(
            f"{name} must be {relation} {minimum:g}, got {value!r}", setting=name
        )
    return number


def build_config(
    api_key: str | None = None,
    api_url: str | None = None,
    environment: str | None = None,
    timeout: float = 30.0,
    poll_interval: float = 2.0,
    max_poll_time: float = 300.0,
    retry_attempts: int = 3,
    *,
    retry_backoff: float = 0.5,
    max_retry_after: float = 30.0,
    allow_approver_key: bool = False,
) -> WardenConfig:
    """Validate settings (falling back to ``WARDEN_*`` environment variables)."""
    api_key = api_key if api_key is not None else os.environ.get(ENV_API_KEY)
    api_url = api_url if api_url is not None else os.environ.get(ENV_API_URL)
    if environment is None:
        environment = os.environ.get(ENV_ENVIRONMENT) or None

    if not api_key:
        raise ConfigurationError(
            f"api_key is required: pass configure(api_key=...) or set {ENV_API_KEY}",
            setting="api_key",
        )
    if not isinstance(api_key, str) or api_key != api_key.strip() or " " in api_key:
        raise ConfigurationError("api_key is malformed (contains whitespace)", setting="api_key")
    key_env = environment_for_key(api_key)
    if api_key.startswith(_APPROVER_PREFIX):
        if not allow_approver_key:
            raise ConfigurationError(
                "api_key is an approver key (wdn_apv_...): it may only decide approvals; "
                "use the agent's wdn_test_/wdn_live_ key or an org key",
                setting="api_key",
            )
        key_env = None
    elif key_env is None:
        raise ConfigurationError(
            "api_key is malformed: expected a key starting with wdn_test_, wdn_live_ or wdn_org_",
            setting="api_key",
        )
    if len(api_key.rpartition("_")[2]) == 0:
        raise ConfigurationError(
            "api_key is malformed: nothing after the prefix", setting="api_key"
        )

    if environment is not None and environment not in ENVIRONMENTS:
        raise ConfigurationError(
            f"environment must be 'test' or 'live', got {environment!r}", setting="environment"
        )
    if environment is not None and key_env is not None and environment != key_env:
        raise ConfigurationError(
            f"environment={environment!r} contradicts the api_key, which is a {key_env} key",
            setting="environment",
        )
    resolved_env = environment or key_env or "live"

    if not api_url:
        raise ConfigurationError(
            f"api_url is required (there is no hosted default): pass configure(api_url=...) "
            f"or set {ENV_API_URL}",
            setting="api_url",
        )
    parts = urlsplit(str(api_url).strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(
            f"api_url must be an http:// or https:// URL, got {api_url!r}", setting="api_url"
        )
    clean_url = str(api_url).strip().rstrip("/")

    if (
        isinstance(retry_attempts, bool)
        or not isinstance(retry_attempts, int)
        or retry_attempts < 0
    ):
        raise ConfigurationError(
            f"retry_attempts must be a whole number >= 0, got {retry_attempts!r}",
            setting="retry_attempts",
        )

    return WardenConfig(
        api_key=api_key,
        api_url=clean_url,
        environment=resolved_env,
        timeout=_number("timeout", timeout, minimum=0, strict=True),
        poll_interval=_number("poll_interval", poll_interval, minimum=0, strict=True),
        max_poll_time=_number("max_poll_time", max_poll_time, minimum=0, strict=False),
        retry_attempts=retry_attempts,
        retry_backoff=_number("retry_backoff", retry_backoff, minimum=0, strict=False),
        max_retry_after=_number("max_retry_after", max_retry_after, minimum=0, strict=False),
    )


_lock = threading.Lock()
_config: WardenConfig | None = None
_generation = 0


def configure(
    api_key: str | None = None,
    api_url: str | None = None,
    environment: str | None = None,
    timeout: float = 30.0,
    poll_interval: float = 2.0,
    max_poll_time: float = 300.0,
    retry_attempts: int = 3,
    *,
    retry_backoff: float = 0.5,
    max_retry_after: float = 30.0,
) -> WardenConfig:
    """Configure the SDK for this process. Returns the validated config.

    ``api_key`` / ``api_url`` fall back to ``WARDEN_API_KEY`` / ``WARDEN_API_URL``.
    The environment follows the key's prefix; passing one that contradicts it raises.
    """
    global _config, _generation
    config = build_config(
        api_key,
        api_url,
        environment,
        timeout,
        poll_interval,
        max_poll_time,
        retry_attempts,
        retry_backoff=retry_backoff,
        max_retry_after=max_retry_after,
    )
    with _lock:
        _config = config
        _generation += 1
    return config


def configure_test(api_key: str | None = None, **kwargs: object) -> WardenConfig:
    """``configure(environment="test", ...)``; raises if the key is not a test key."""
    return configure(api_key=api_key, environment="test", **kwargs)  # type: ignore[arg-type]


def configure_live(api_key: str | None = None, **kwargs: object) -> WardenConfig:
    """``configure(environment="live", ...)``; raises if the key is not a live or org key."""
    return configure(api_key=api_key, environment="live", **kwargs)  # type: ignore[arg-type]


def get_config() -> WardenConfig:
    """The active config; raises :class:`ConfigurationError` before :func:`configure`."""
    config = _config
    if config is None:
        raise ConfigurationError(
            "wardenpy is not configured: call wardenpy.configure(api_key=..., api_url=...) first",
            setting="api_key",
        )
    return config


def is_configured() -> bool:
    return _config is not None


def config_generation() -> int:
    """Bumped by every configure(); lets cached clients notice a new config."""
    return _generation


def reset_config() -> None:
    """Forget the configuration (mostly for tests)."""
    global _config, _generation
    with _lock:
        _config = None
        _generation += 1
