from __future__ import annotations

from collections.abc import Iterator

import pytest
from fake_warden import AGENT_KEY, FakeWarden

import wardenpy
from wardenpy import webhooks


@pytest.fixture(autouse=True)
def clean_sdk_state() -> Iterator[None]:
    wardenpy.reset_config()
    webhooks.registry.clear()
    webhooks.set_seen_store(webhooks.InMemorySeenStore())
    wardenpy.clear_session()
    yield
    wardenpy.flush(5.0)
    wardenpy.reset_config()
    webhooks.registry.clear()


@pytest.fixture
def fake() -> Iterator[FakeWarden]:
    server = FakeWarden().start()
    yield server
    wardenpy.flush(5.0)
    server.stop()


@pytest.fixture
def configured(fake: FakeWarden) -> FakeWarden:
    """The SDK pointed at the fake with short waits and backoffs."""
    wardenpy.configure(
        api_key=AGENT_KEY,
        api_url=fake.url,
        poll_interval=0.05,
        max_poll_time=10.0,
        retry_backoff=0.01,
        max_retry_after=2.0,
    )
    return fake
