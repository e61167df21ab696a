from __future__ import annotations

import pytest

import wardenpy
from wardenpy import ConfigurationError

URL = "http://127.0.0.1:9"


def test_configure_without_a_key_names_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WARDEN_API_KEY", raising=False)
    with pytest.raises(ConfigurationError) as err:
        wardenpy.configure(api_url=URL)
    assert err.value.setting == "api_key"


def test_configure_without_a_url_names_api_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WARDEN_API_URL", raising=False)
    with pytest.raises(ConfigurationError) as err:
        wardenpy.configure(api_key="wdn_test_abc")
    assert err.value.setting == "api_url"


@pytest.mark.parametrize("url", ["ftp://example.com", "127.0.0.1:8000", "http://", "nonsense"])
def test_a_url_that_is_not_http_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError) as err:
        wardenpy.configure(api_key="wdn_test_abc", api_url=url)
    assert err.value.setting == "api_url"


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("timeout", -1),
        ("timeout", 0),
        ("poll_interval", -0.5),
        ("max_poll_time", -1),
        ("retry_attempts", -1),
        ("retry_attempts", 1.5),
    ],
)
def test_negative_or_zero_durations_are_refused(setting: str, value: float) -> None:
    with pytest.raises(ConfigurationError) as err:
        wardenpy.configure(api_key="wdn_test_abc", api_url=URL, **{setting: value})
    assert err.value.setting == setting


def test_an_unknown_environment_is_refused() -> None:
    with pytest.raises(ConfigurationError) as err:
        wardenpy.configure(api_key="wdn_test_abc", api_url=URL, environment="staging")
    assert err.value.setting == "environment"


@pytest.mark.parametrize("key", ["arden_live_abc", "sk-123", "wdn_test_", "wdn_apv_abc"])
def test_malformed_or_approver_keys_are_refused(key: str) -> None:
    with pytest.raises(ConfigurationError) as err:
        wardenpy.configure(api_key=key, api_url=URL)
    assert err.value.setting == "api_key"


@pytest.mark.parametrize(
    ("key", "environment"),
    [("wdn_test_abc", "test"), ("wdn_live_abc", "live"), ("wdn_org_abc", "live")],
)
def test_the_environment_follows_the_key_prefix(key: str, environment: str) -> None:
    assert wardenpy.configure(api_key=key, api_url=URL).environment == environment


def test_configure_test_refuses_a_live_key() -> None:
    with pytest.raises(ConfigurationError) as err:
        wardenpy.configure_test(api_key="wdn_live_abc", api_url=URL)
    assert err.value.setting == "environment"


def test_configure_live_refuses_a_test_key() -> None:
    with pytest.raises(ConfigurationError):
        wardenpy.configure_live(api_key="wdn_test_abc", api_url=URL)


def test_configure_live_accepts_an_org_key() -> None:
    assert wardenpy.configure_live(api_key="wdn_org_abc", api_url=URL).environment == "live"


def test_settings_fall_back_to_the_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARDEN_API_KEY", "wdn_test_fromenv")
    monkeypatch.setenv("WARDEN_API_URL", "http://127.0.0.1:8000/")
    config = wardenpy.configure()
    assert (config.api_key, config.api_url) == ("wdn_test_fromenv", "http://127.0.0.1:8000")


def test_the_config_repr_does_not_show_the_key() -> None:
    config = wardenpy.configure(api_key="wdn_test_supersecretvalue", api_url=URL)
    assert "supersecret" not in repr(config)


def test_guarding_before_configure_fails_at_call_time_with_configuration_error() -> None:
    safe = wardenpy.guard_tool("noop", lambda: 1)
    with pytest.raises(ConfigurationError):
        safe()
