"""A malformed setting stops start-up with an error that names the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def start_django(env_overrides: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update({"DJANGO_SETTINGS_MODULE": "wardenproject.settings.base", **env_overrides})
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


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
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from django.conf import settings; import django; django.setup(); "
            "print(settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE, "
            "settings.SECURE_HSTS_SECONDS > 0)",
        ],
        cwd=ROOT,
        env={
            **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}},
            "DJANGO_SETTINGS_MODULE": "wardenproject.settings.base",
            "DEBUG": "false",
            "SECRET_KEY": "x" * 50,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True", "True"]


def test_audit_async_commit_is_an_explicit_postgresql_only_opt_in():
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.WARDEN_AUDIT_WRITE_ALIAS, "
        "s.DATABASES.get('audit_async', {}).get('OPTIONS', {}).get('options'))"
    )
    base = {
        **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}},
        "DJANGO_SETTINGS_MODULE": "wardenproject.settings.base",
        "DEBUG": "true",
    }

    def run(extra: dict[str, str]) -> str:
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={**base, **extra},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    postgres = "postgres://postgres@127.0.0.1:5432/x"
    assert run({"DATABASE_URL": postgres}) == "default None"
    assert run({"DATABASE_URL": postgres, "WARDEN_AUDIT_ASYNC_COMMIT": "true"}) == (
        "audit_async -c synchronous_commit=off"
    )
    assert run({"WARDEN_AUDIT_ASYNC_COMMIT": "true"}) == "default None"  # SQLite: no such knob


def test_prepared_statements_are_on_for_postgresql_unless_turned_off():
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.DATABASES['default'].get('OPTIONS', {}).get('prepare_threshold'))"
    )
    base = {
        **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}},
        "DJANGO_SETTINGS_MODULE": "wardenproject.settings.base",
        "DEBUG": "true",
    }

    def run(extra: dict[str, str]) -> str:
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={**base, **extra},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    postgres = "postgres://postgres@127.0.0.1:5432/x"
    assert run({"DATABASE_URL": postgres}) == "5"
    assert run({"DATABASE_URL": postgres, "DATABASE_PREPARED_STATEMENTS": "false"}) == "None"
    assert run({}) == "None"  # SQLite has no such option
