from __future__ import annotations

import socket

import pytest
from fake_warden import AGENT_KEY, FakeWarden

import wardenpy
from wardenpy import (
    APIError,
    AuthenticationError,
    RateLimitedError,
    ServerUnreachableError,
)


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_server_fails_closed_and_names_the_url() -> None:
    url = f"http://127.0.0.1:{unused_port()}"
    wardenpy.configure(api_key=AGENT_KEY, api_url=url, retry_attempts=1, retry_backoff=0.01)
    runs: list[int] = []
    with pytest.raises(ServerUnreachableError) as err:
        wardenpy.guard_tool("stripe.refund", lambda: runs.append(1))()
    assert runs == []
    assert url in str(err.value)


def test_a_503_is_retried_and_then_succeeds(configured: FakeWarden) -> None:
    configured.script("POST", "/api/v1/check", 503)
    assert wardenpy.guard_tool("stripe.refund", lambda: "ran")() == "ran"
    assert len(configured.calls("POST", "/api/v1/check")) == 2


def test_a_429_waits_for_retry_after_and_then_succeeds(configured: FakeWarden) -> None:
    configured.script("POST", "/api/v1/check", 429, headers={"Retry-After": "0"})
    assert wardenpy.guard_tool("stripe.refund", lambda: "ran")() == "ran"
    assert len(configured.calls("POST", "/api/v1/check")) == 2


def test_a_retried_check_reuses_its_idempotency_key(configured: FakeWarden) -> None:
    configured.script("POST", "/api/v1/check", 503)
    wardenpy.guard_tool("stripe.refund", lambda: "ran")()
    first, second = configured.calls("POST", "/api/v1/check")
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]


def test_a_persistent_429_raises_rate_limited_with_the_hint(configured: FakeWarden) -> None:
    for _ in range(4):
        configured.script("POST", "/api/v1/check", 429, headers={"Retry-After": "0"})
    with pytest.raises(RateLimitedError) as err:
        wardenpy.guard_tool("stripe.refund", lambda: "ran")()
    assert err.value.retry_after == 0


def test_persistent_503s_fail_closed_after_the_retry_budget(configured: FakeWarden) -> None:
    for _ in range(4):
        configured.script("POST", "/api/v1/check", 503)
    runs: list[int] = []
    with pytest.raises(ServerUnreachableError):
        wardenpy.guard_tool("stripe.refund", lambda: runs.append(1))()
    assert runs == [] and len(configured.calls("POST", "/api/v1/check")) == 4


def test_a_400_is_not_retried_and_carries_code_and_field(configured: FakeWarden) -> None:
    configured.script(
        "POST",
        "/api/v1/check",
        400,
        body={"code": "invalid", "detail": "bad action", "field": "action"},
    )
    with pytest.raises(APIError) as err:
        wardenpy.guard_tool("stripe.refund", lambda: "ran")()
    assert (err.value.status_code, err.value.code, err.value.field) == (400, "invalid", "action")
    assert len(configured.calls("POST", "/api/v1/check")) == 1


def test_an_unknown_key_raises_authentication_error_without_retrying(fake: FakeWarden) -> None:
    wardenpy.configure(api_key="wdn_test_unknown", api_url=fake.url)
    with pytest.raises(AuthenticationError):
        wardenpy.guard_tool("stripe.refund", lambda: "ran")()
    assert len(fake.calls("POST", "/api/v1/check")) == 1


def test_the_api_key_is_sent_in_the_x_api_key_header(configured: FakeWarden) -> None:
    wardenpy.guard_tool("stripe.refund", lambda: "ran")()
    assert configured.calls("POST", "/api/v1/check")[0].headers["x-api-key"] == AGENT_KEY


def test_error_messages_never_contain_the_api_key(fake: FakeWarden) -> None:
    wardenpy.configure(api_key="wdn_test_secretsecret", api_url=fake.url)
    with pytest.raises(AuthenticationError) as err:
        wardenpy.guard_tool("stripe.refund", lambda: "ran")()
    assert "secretsecret" not in str(err.value)
