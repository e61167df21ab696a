"""CI runs the suite twice (.ci/run), and tests/conftest.py knows which run it is.

WARDEN_CI_LEG=embedded (SQLite, no Redis): tests marked postgres or redis are left to the
other leg, any other skip fails. WARDEN_CI_LEG=postgres: nothing may be skipped. Each leg
refuses to start with the wrong services, so neither can silently run the other's code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ci_leg_problem, missing_service_verdict

ROOT = Path(__file__).resolve().parents[2]
ONLY_POSTGRES_TESTS = "tests/webhooks/test_live.py"  # every test there is marked postgres


def run_pytest(env_overrides: dict[str, str], tmp_path: Path, *args: str):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "WARDEN_CI_LEG", "CI"}
    }
    # A var/ of its own: the embedded test database is a file there.
    env |= {"WARDEN_VAR_DIR": str(tmp_path), **env_overrides}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_the_embedded_leg_leaves_postgres_tests_to_the_other_leg_and_passes(tmp_path):
    result = run_pytest({"CI": "true", "WARDEN_CI_LEG": "embedded"}, tmp_path, ONLY_POSTGRES_TESTS)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "left to the postgres leg, as expected" in result.stdout
    assert "counts as failure" not in result.stdout


def test_the_embedded_leg_refuses_to_start_on_postgresql(tmp_path):
    env = {"CI": "true", "WARDEN_CI_LEG": "embedded", "DATABASE_URL": "postgres://u@127.0.0.1/x"}
    result = run_pytest(env, tmp_path, "--collect-only", ONLY_POSTGRES_TESTS)
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert "runs without DATABASE_URL" in result.stderr


@pytest.mark.parametrize(
    ("marker", "in_ci", "leg", "verdict"),
    [
        ("postgres", False, "", "skip"),
        ("postgres", True, "", "fail"),
        ("postgres", True, "embedded", "expected skip"),
        ("redis", True, "embedded", "expected skip"),
        ("browser", True, "embedded", "fail"),
        ("postgres", True, "postgres", "fail"),
        ("redis", True, "postgres", "fail"),
    ],
)
def test_a_missing_service_is_a_skip_an_expected_skip_or_a_failure(marker, in_ci, leg, verdict):
    assert missing_service_verdict(marker, in_ci=in_ci, leg=leg) == verdict


@pytest.mark.parametrize(
    ("leg", "postgres", "redis", "problem"),
    [
        ("embedded", False, False, None),
        ("embedded", False, True, "runs without DATABASE_URL and REDIS_URL"),
        ("postgres", True, True, None),
        ("postgres", True, False, "needs DATABASE_URL=postgres://... and REDIS_URL"),
        ("postgres", False, True, "needs DATABASE_URL=postgres://... and REDIS_URL"),
        ("sqlite", False, False, "use embedded or postgres"),
    ],
)
def test_each_leg_needs_its_own_services(leg, postgres, redis, problem):
    found = ci_leg_problem(leg, postgres=postgres, redis=redis)
    if problem is None:
        assert found is None
    else:
        assert problem in found
