"""HTTP transport: one ``requests.Session`` per thread, retries with backoff and jitter.

Retried: connection errors, timeouts, 502/503/504 and 429 (honouring ``Retry-After`` up to
``max_retry_after``). Never retried: any other 4xx. The API key is never logged.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from . import __version__
from .config import WardenConfig
from .exceptions import (
    AlreadyClaimedError,
    APIError,
    AuthenticationError,
    ConflictError,
    RateLimitedError,
    ServerUnreachableError,
    WardenError,
)

logger = logging.getLogger("wardenpy")

RETRY_STATUSES = frozenset({502, 503, 504})
MAX_BACKOFF = 8.0


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, float(when.timestamp()) - time.time())


def _error_body(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"detail": response.text[:500] or response.reason}
    return body if isinstance(body, dict) else {"detail": str(body)[:500]}


class Transport:
    """Sends JSON requests to one Warden server with the retry policy above."""

    def __init__(self, config: WardenConfig) -> None:
        self.config = config
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()

    # -- sessions -----------------------------------------------------------
    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers.update(
                {
                    "X-API-Key": self.config.api_key,
                    "Accept": "application/json",
                    "User-Agent": f"wardenpy/{__version__}",
                }
            )
            self._local.session = session
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        with self._sessions_lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        self._local = threading.local()

    def url(self, path: str) -> str:
        return f"{self.config.api_url}/{path.lstrip('/')}"

    def _backoff(self, attempt: int) -> float:
        base: float = self.config.retry_backoff * 2.0**attempt
        return min(MAX_BACKOFF, base) * (0.5 + random.random() / 2)

    # -- requests -----------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
        retry_attempts: int | None = None,
    ) -> Any:
        """Send one request (with retries); return the decoded JSON body (``None`` if empty)."""
        url = self.url(path)
        attempts = 1 + (self.config.retry_attempts if retry_attempts is None else retry_attempts)
        timeout = self.config.timeout if timeout is None else timeout
        last_cause = ""
        last_status: int | None = None
        for attempt in range(attempts):
            is_last = attempt == attempts - 1
            try:
                response = self._session().request(
                    method, url, json=json, params=params, timeout=timeout, headers=headers
                )
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                last_cause = type(exc).__name__
                last_status = None
                logger.debug(
                    "wardenpy: %s %s failed (%s), attempt %d", method, url, last_cause, attempt + 1
                )
                if not is_last:
                    time.sleep(self._backoff(attempt))
                continue
            except requests.RequestException as exc:
                raise WardenError(f"request to {url} failed: {type(exc).__name__}") from exc

            status = response.status_code
            if status < 400:
                if not response.content:
                    return None
                try:
                    return response.json()
                except ValueError as exc:
                    raise APIError(
                        f"Warden server at {url} answered HTTP {status} with a non-JSON body",
                        status_code=status,
                    ) from exc

            if status == 429:
                hint = _retry_after_seconds(response.headers.get("Retry-After"))
                if is_last:
                    body = _error_body(response)
                    raise RateLimitedError(
                        f"Warden rate limit hit on {method} {path}: {body.get('detail')}",
                        retry_after=hint,
                        status_code=status,
                        code=body.get("code"),
                        detail=body.get("detail"),
                        body=body,
                    )
                delay = self._backoff(attempt) if hint is None else hint
                time.sleep(min(delay, self.config.max_retry_after))
                continue

            if status in RETRY_STATUSES:
                last_cause = f"HTTP {status}"
                last_status = status
                if not is_last:
                    time.sleep(self._backoff(attempt))
                continue

            self._raise_for(response, method, path)

        raise ServerUnreachableError(
            self.config.api_url, f"{last_cause} after {attempts} attempt(s)", last_status
        )

    @staticmethod
    def _raise_for(response: requests.Response, method: str, path: str) -> None:
        status = response.status_code
        body = _error_body(response)
        code = body.get("code")
        detail = body.get("detail")
        kwargs: dict[str, Any] = {
            "status_code": status,
            "code": code,
            "detail": detail,
            "field": body.get("field"),
            "body": body,
        }
        text = f"{method} {path} -> HTTP {status}"
        if code:
            text += f" {code}"
        if detail:
            text += f": {detail}"
        if status == 401:
            raise AuthenticationError(f"Warden refused the API key ({text})", **kwargs)
        if status == 409:
            cls = AlreadyClaimedError if code == "already_claimed" else ConflictError
            raise cls(text, status=body.get("status"), **kwargs)
        raise APIError(text, **kwargs)
