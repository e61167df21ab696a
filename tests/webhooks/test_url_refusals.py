"""A refused webhook URL names the setting that would allow it (for the operator)."""

from __future__ import annotations

import pytest

from wardenproject.errors import ValidationFailed
from webhooks import services


def test_a_plain_http_url_names_the_allow_http_setting(settings, org_a):
    settings.WARDEN_WEBHOOKS_ALLOW_HTTP = False
    with pytest.raises(ValidationFailed) as caught:
        services.endpoint_create(actor=None, organization=org_a, url="http://example.com/hook")
    assert caught.value.field == "url"
    assert "WARDEN_WEBHOOKS_ALLOW_HTTP" in caught.value.detail


def test_a_private_address_names_the_allow_private_setting(settings, org_a):
    settings.WARDEN_WEBHOOKS_ALLOW_PRIVATE = False
    with pytest.raises(ValidationFailed) as caught:
        services.endpoint_create(actor=None, organization=org_a, url="https://127.0.0.1/hook")
    assert caught.value.field == "url"
    assert "not allowed" in caught.value.detail
    assert "WARDEN_WEBHOOKS_ALLOW_PRIVATE" in caught.value.detail
    assert "127.0.0.1" not in caught.value.detail  # never the address: no network probe
