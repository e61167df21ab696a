"""The sender refuses forbidden addresses, never follows redirects, and bounds its time."""

from __future__ import annotations

import pytest

from tests.live import Answer
from webhooks import delivery


@pytest.fixture
def private_refused(settings):
    settings.WARDEN_WEBHOOKS_ALLOW_PRIVATE = False
    settings.WARDEN_WEBHOOKS_ALLOW_HTTP = True


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://[::1]:9/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://172.16.5.4/hook",
        "http://100.64.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[fd00:ec2::254]/latest",
        "http://0.0.0.0/hook",
        "http://224.0.0.1/hook",
        "http://240.0.0.1/hook",
        "http://[::ffff:127.0.0.1]/hook",
    ],
)
def test_forbidden_address_is_refused_permanently_without_a_request(private_refused, url):
    result = delivery.post(url, {}, b"{}")
    assert result.permanent
    assert result.status_code is None
    assert "not allowed" in result.error


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://localhost:9/hook", "127.0.0.1"),
        ("http://10.1.2.3/hook", "10.1.2.3"),
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254"),
    ],
)
def test_a_delivery_refusal_does_not_name_the_resolved_address(private_refused, url, address):
    result = delivery.post(url, {}, b"{}")
    assert "not allowed" in result.error
    assert address not in result.error


def test_loopback_receiver_gets_nothing_when_private_addresses_are_refused(
    private_refused, webhook_receiver
):
    result = delivery.post(webhook_receiver.url(), {}, b"{}")
    assert result.permanent
    assert webhook_receiver.received() == []


def test_public_address_passes_the_check():
    import ipaddress

    assert delivery.address_refusal(ipaddress.ip_address("93.184.216.34")) is None


def test_plain_http_url_is_refused_unless_allowed(settings):
    settings.WARDEN_WEBHOOKS_ALLOW_HTTP = False
    assert "https" in delivery.url_problem("http://example.com/hook")
    assert delivery.url_problem("https://example.com/hook") is None


def test_redirect_is_not_followed(webhook_receiver):
    webhook_receiver.always(
        Answer(status=302, headers={"Location": webhook_receiver.url("/elsewhere")}, body=b"")
    )
    result = delivery.post(webhook_receiver.url(), {}, b"{}")
    assert result.status_code == 302
    assert not result.ok
    assert not result.permanent
    assert [r.path for r in webhook_receiver.received()] == ["/hook"]


def test_request_reaches_the_receiver_with_body_headers_and_hostname_host_header(
    webhook_receiver,
):
    result = delivery.post(webhook_receiver.url(host="localhost"), {"X-Test": "1"}, b'{"hello": 1}')
    assert result.ok
    (request,) = webhook_receiver.received()
    assert request.body == b'{"hello": 1}'
    assert request.headers["X-Test"] == "1"
    assert request.headers["Host"] == f"localhost:{webhook_receiver.port}"


def test_response_body_is_kept_up_to_20_kib(webhook_receiver):
    webhook_receiver.always(Answer(body=b"x" * 50_000))
    result = delivery.post(webhook_receiver.url(), {}, b"{}")
    assert result.ok
    assert len(result.response_body) == 20 * 1024


def test_slow_receiver_is_a_transient_timeout(settings, webhook_receiver):
    settings.WARDEN_WEBHOOKS_TOTAL_TIMEOUT = 0.5
    webhook_receiver.always(Answer(sleep=2))
    result = delivery.post(webhook_receiver.url(), {}, b"{}")
    assert "timeout" in result.error
    assert not result.ok
    assert not result.permanent


def test_closed_port_is_a_transient_connection_error():
    from tests.live import free_port

    result = delivery.post(f"http://127.0.0.1:{free_port()}/hook", {}, b"{}")
    assert "connection error" in result.error
    assert not result.permanent


def test_410_is_permanent(webhook_receiver):
    webhook_receiver.always(Answer(status=410))
    result = delivery.post(webhook_receiver.url(), {}, b"{}")
    assert result.permanent


def test_retry_after_is_read_from_a_429(webhook_receiver):
    webhook_receiver.always(Answer(status=429, headers={"Retry-After": "120"}))
    result = delivery.post(webhook_receiver.url(), {}, b"{}")
    assert result.retry_after == 120
    assert not result.permanent
