"""Shared fixtures: the personas, and the rules for tests that need real services.

Personas (as in healthchecks): Alice owns org A ("Acme", Pro plan), Bob is an approver on
Alice's team, Vera is a viewer there, and Charlie is an outsider who owns org C.

Tests that need PostgreSQL, Redis, a live worker or a browser carry a marker. Without the
service they skip with a reason; with CI=true any skip fails the run (see pytest_sessionfinish).

CI (.ci/run) runs the suite twice, and WARDEN_CI_LEG says which run this is:
- ``embedded``: no DATABASE_URL, no REDIS_URL (SQLite and the filesystem broker, what
  ``make run`` uses, with the ORM branches of the code). Tests marked ``postgres`` or
  ``redis`` are skipped, as expected: the other leg runs them. Any other skip fails.
- ``postgres``: PostgreSQL and Redis; every test runs, and any skip fails.
Each leg refuses to start without the services it names (or with the ones it must not use).
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
CI_LEG = os.environ.get("WARDEN_CI_LEG", "")
PASSWORD = "correct horse battery"

# The markers whose tests each CI leg leaves to the other leg ("": not a CI leg).
LEG_LEAVES_TO_THE_OTHER = {
    "": frozenset(),
    "embedded": frozenset({"postgres", "redis"}),
    "postgres": frozenset(),
}


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


def ci_leg_problem(leg: str, *, postgres: bool, redis: bool) -> str | None:
    """Why this process cannot run CI leg ``leg`` with the services it has (None: it can)."""
    if leg not in LEG_LEAVES_TO_THE_OTHER or not leg:
        return f"WARDEN_CI_LEG={leg!r}: use embedded or postgres"
    if leg == "embedded" and (postgres or redis):
        return "WARDEN_CI_LEG=embedded runs without DATABASE_URL and REDIS_URL (SQLite, no Redis)"
    if leg == "postgres" and not (postgres and redis):
        return "WARDEN_CI_LEG=postgres needs DATABASE_URL=postgres://... and REDIS_URL=redis://..."
    return None


def missing_service_verdict(marker: str, *, in_ci: bool, leg: str) -> str:
    """What becomes of a test whose ``marker`` service is missing: ``skip`` (outside CI),
    ``expected skip`` (CI's other leg runs it) or ``fail``."""
    if not in_ci:
        return "skip"
    if marker in LEG_LEAVES_TO_THE_OTHER.get(leg, frozenset()):
        return "expected skip"
    return "fail"


def _flush_may_empty_the_audit_log() -> None:
    """A transactional test ends with a flush (TRUNCATE of every table), which the audit
    log's triggers refuse on PostgreSQL unless the transaction sets warden.audit_purge, as
    retention does (audit.services.audit_purge_allowed)."""
    from django.db.backends.postgresql.operations import DatabaseOperations

    execute_sql_flush = DatabaseOperations.execute_sql_flush

    def flush_with_purge_allowed(self: DatabaseOperations, sql_list: list[str]) -> None:
        execute_sql_flush(self, ["SET LOCAL warden.audit_purge = 'on'", *sql_list])

    DatabaseOperations.execute_sql_flush = flush_with_purge_allowed  # type: ignore[method-assign]


def pytest_configure(config: pytest.Config) -> None:
    _flush_may_empty_the_audit_log()
    if CI_LEG:
        problem = ci_leg_problem(CI_LEG, postgres=_postgres_available(), redis=_redis_available())
        if problem:
            raise pytest.UsageError(problem)


_skipped: list[str] = []
_left_to_the_other_leg: set[str] = set()


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker, (available, reason) in _REQUIREMENTS.items():
        if item.get_closest_marker(marker) and not available():
            verdict = missing_service_verdict(marker, in_ci=IN_CI, leg=CI_LEG)
            if verdict == "fail":
                pytest.fail(f"CI=true but this test {reason}", pytrace=False)
            if verdict == "expected skip":
                _left_to_the_other_leg.add(item.nodeid)
                pytest.skip(f"{reason} (CI's postgres leg runs it)")
            pytest.skip(reason)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and report.nodeid not in _left_to_the_other_leg:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if IN_CI and _left_to_the_other_leg:
        print(
            f"\nWARDEN_CI_LEG={CI_LEG}: {len(_left_to_the_other_leg)} test(s) need PostgreSQL "
            "or Redis and were left to the postgres leg, as expected."
        )
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
