"""A malformed setting stops start-up with an error that names the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The test run's own services and mail settings never leak into the started process.
OWN_VARIABLES = {"DATABASE_URL", "REDIS_URL", "EMAIL_HOST", "EMAIL_BACKEND"}
PRODUCTION = {"DEBUG": "false", "SECRET_KEY": "x" * 50}


def start_django(
    env_overrides: dict[str, str], code: str = "import django; django.setup()"
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in OWN_VARIABLES}
    env.update({"DJANGO_SETTINGS_MODULE": "wardenproject.settings.base", **env_overrides})
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def printed_by_settings(expression: str, env_overrides: dict[str, str]) -> str:
    """What ``expression`` (over ``settings as s``) is in a development process started with
    ``env_overrides`` and no DATABASE_URL or REDIS_URL of the test run's own."""
    code = (
        f"import django; django.setup(); from django.conf import settings as s; print({expression})"
    )
    result = start_django({"DEBUG": "true", **env_overrides}, code)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"DEBUG": "maybe"}, "DEBUG"),
        ({"DEBUG": "true", "DATABASE_URL": "mysql://db/x"}, "DATABASE_URL"),
        ({"DEBUG": "true", "DATABASE_URL": "postgres://host:notaport/x"}, "DATABASE_URL"),
        ({"DEBUG": "true", "DATABASE_URL": "postgres://host:5432/"}, "DATABASE_URL"),
        ({"DEBUG": "true", "REDIS_URL": "http://localhost:6379"}, "REDIS_URL"),
        ({"DEBUG": "true", "WARDEN_MAX_BODY_BYTES": "lots"}, "WARDEN_MAX_BODY_BYTES"),
        ({"DEBUG": "true", "LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"DEBUG": "false", "SECRET_KEY": ""}, "SECRET_KEY"),
    ],
)
def test_malformed_variable_stops_start_up_naming_it(overrides, named):
    result = start_django(overrides)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert named in result.stderr


def test_production_settings_turn_on_secure_cookies_and_hsts():
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE, "
        "settings.SECURE_HSTS_SECONDS > 0)"
    )
    result = start_django({**PRODUCTION, "EMAIL_HOST": "smtp.example.com"}, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True", "True"]


def test_audit_async_commit_is_an_explicit_postgresql_only_opt_in():
    def run(extra: dict[str, str]) -> str:
        return printed_by_settings(
            "s.WARDEN_AUDIT_WRITE_ALIAS, "
            "s.DATABASES.get('audit_async', {}).get('OPTIONS', {}).get('options')",
            extra,
        )

    postgres = "postgres://postgres@127.0.0.1:5432/x"
    assert run({"DATABASE_URL": postgres}) == "default None"
    assert run({"DATABASE_URL": postgres, "WARDEN_AUDIT_ASYNC_COMMIT": "true"}) == (
        "audit_async -c synchronous_commit=off"
    )
    assert run({"WARDEN_AUDIT_ASYNC_COMMIT": "true"}) == "default None"  # SQLite: no such knob


def test_prepared_statements_are_on_with_postgresql_unless_turned_off():
    """Only the running totals' server-binding cursor prepares (agents/limits.py)."""

    def run(extra: dict[str, str]) -> str:
        return printed_by_settings(
            "s.DATABASES['default']['OPTIONS'].get('prepare_threshold', 'unset')", extra
        )

    postgres = "postgres://postgres@127.0.0.1:5432/x"
    assert run({"DATABASE_URL": postgres}) == "1"
    assert run({"DATABASE_URL": postgres, "DATABASE_PREPARED_STATEMENTS": "false"}) == "None"
    assert run({}) == "unset"  # SQLite


def test_self_serve_plans_are_off_unless_turned_on():
    """A hosted service: plan changes are the operator's; `make run` turns them on."""
    assert printed_by_settings("s.WARDEN_SELF_SERVE_PLANS", {}) == "False"
    assert printed_by_settings(
        "s.WARDEN_SELF_SERVE_PLANS", {"WARDEN_SELF_SERVE_PLANS": "true"}
    ) == ("True")


def test_production_without_smtp_or_an_explicit_email_backend_refuses_to_start():
    result = start_django(PRODUCTION)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "EMAIL_HOST" in result.stderr and "EMAIL_BACKEND" in result.stderr


@pytest.mark.parametrize(
    ("overrides", "backend"),
    [
        ({"EMAIL_HOST": "smtp.example.com"}, "django.core.mail.backends.smtp.EmailBackend"),
        (
            {"EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"},
            "django.core.mail.backends.console.EmailBackend",
        ),
    ],
)
def test_production_starts_with_smtp_or_an_explicit_email_backend(overrides, backend):
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.EMAIL_BACKEND)"
    )
    result = start_django({**PRODUCTION, **overrides}, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == backend


def test_development_prints_email_to_the_console_without_configuration():
    assert printed_by_settings("s.EMAIL_BACKEND", {}) == (
        "django.core.mail.backends.console.EmailBackend"
    )
