"""Shared fixtures: the personas, and the rules for tests that need real services.

Personas (as in healthchecks): Alice owns org A ("Acme", Pro plan), Bob is an approver on
Alice's team, Vera is a viewer there, and Charlie is an outsider who owns org C.

Tests that need PostgreSQL, Redis, a live worker or a browser carry a marker. Without the
service they skip with a reason; with CI=true any skip fails the run (see pytest_sessionfinish).
"""

from __future__ import annotations

import importlib
import os
import shutil

import pytest
from django.conf import settings
from django.db import connection

from accounts.models import Membership
from tests.factories import MembershipFactory, OrganizationFactory, UserFactory, plan

pytest_plugins = ["tests.live"]

IN_CI = os.environ.get("CI", "").lower() == "true"
PASSWORD = "correct horse battery"


def _postgres_available() -> bool:
    return settings.DATABASES["default"]["ENGINE"].endswith("postgresql")


def _redis_available() -> bool:
    return bool(settings.REDIS_URL)


def _browser_available() -> bool:
    return shutil.which("chromium") is not None or os.path.exists("/usr/bin/chromium")


_REQUIREMENTS = {
    "postgres": (_postgres_available, "needs PostgreSQL: set DATABASE_URL=postgres://..."),
    "redis": (_redis_available, "needs Redis: set REDIS_URL=redis://..."),
    "browser": (_browser_available, "needs Debian's chromium at /usr/bin/chromium"),
}


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker, (available, reason) in _REQUIREMENTS.items():
        if item.get_closest_marker(marker) and not available():
            if IN_CI:
                pytest.fail(f"CI=true but this test {reason}", pytrace=False)
            pytest.skip(reason)


_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if IN_CI and _skipped:
        print(f"\nCI=true: {len(_skipped)} test(s) skipped, which CI counts as failure:")
        for nodeid in _skipped:
            print(f"  {nodeid}")
        session.exitstatus = 1


def _reference_data_missing() -> bool:
    from accounts.models import Plan
    from agents.models import ModelPrice

    return not Plan.objects.exists() or not ModelPrice.objects.exists()


def reseed_reference_data() -> None:
    """Put back the rows data migrations seed (plans, model prices, the site's name).

    A transactional test (live server, worker, threads) ends with a flush of every table,
    which takes those rows with it; the tests after it need them again.
    """
    from django.apps import apps as django_apps

    for module, function in (
        ("accounts.migrations.0002_seed_plans", "seed_plans"),
        ("accounts.migrations.0003_site_name", "name_site"),
        ("agents.migrations.0002_seed_model_prices", "seed_prices"),
    ):
        getattr(importlib.import_module(module), function)(django_apps, None)


@pytest.fixture(autouse=True)
def _reference_data(request: pytest.FixtureRequest) -> None:
    names = request.fixturenames
    if "transactional_db" in names or "live_server" in names:
        request.getfixturevalue("transactional_db")
    elif "db" in names or request.node.get_closest_marker("django_db"):
        request.getfixturevalue("db")
    else:
        return
    if _reference_data_missing():
        reseed_reference_data()


@pytest.fixture
def alice(db):
    return UserFactory(email="alice@example.com")


@pytest.fixture
def bob(db):
    return UserFactory(email="bob@example.com")


@pytest.fixture
def vera(db):
    return UserFactory(email="vera@example.com")


@pytest.fixture
def charlie(db):
    return UserFactory(email="charlie@example.com")


@pytest.fixture
def org_a(alice, bob, vera):
    org = OrganizationFactory(name="Acme", plan=plan("pro"))
    MembershipFactory(user=alice, organization=org, role=Membership.Role.OWNER)
    MembershipFactory(user=bob, organization=org, role=Membership.Role.APPROVER)
    MembershipFactory(user=vera, organization=org, role=Membership.Role.VIEWER)
    return org


@pytest.fixture
def org_c(charlie):
    org = OrganizationFactory(name="Charlie Co", plan=plan("pro"))
    MembershipFactory(user=charlie, organization=org, role=Membership.Role.OWNER)
    return org


@pytest.fixture
def db_vendor() -> str:
    return connection.vendor
