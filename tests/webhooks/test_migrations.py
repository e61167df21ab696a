"""Migration 0004 moves secrets stored by the retired scheme (or in clear) to Fernet."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from tests.webhooks.test_crypto import old_scheme_decrypt, old_scheme_encrypt
from webhooks.crypto import secret_decrypt

BEFORE = [("webhooks", "0004_arden_endpoints_decision_events_only")]
AFTER = [("webhooks", "0005_endpoint_secrets_fernet")]


def migrate(targets):
    """Migrate webhooks to ``targets`` and every other app to its latest migration (so the
    historical models of the other apps are today's)."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    apps = {app for app, _ in targets}
    targets = [n for n in executor.loader.graph.leaf_nodes() if n[0] not in apps] + list(targets)
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture
def at_0003(transactional_db):
    apps = migrate(BEFORE)
    yield apps
    migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


def old_endpoint(apps, **fields):
    Organization = apps.get_model("accounts", "Organization")
    Endpoint = apps.get_model("webhooks", "Endpoint")
    Plan = apps.get_model("accounts", "Plan")
    org = Organization.objects.first() or Organization.objects.create(
        name="Old Co", plan=Plan.objects.get(slug="pro")
    )
    return Endpoint.objects.create(
        organization=org, url="https://example.com/hook", events=["approval.approved"], **fields
    )


def test_secrets_written_by_the_old_code_are_readable_after_the_migration(settings, at_0003):
    settings.SECRET_KEY = "key-of-today"
    settings.SECRET_KEY_FALLBACKS = ["key-of-last-year"]
    current = old_endpoint(
        at_0003,
        secret=old_scheme_encrypt("whsec_current", "key-of-today"),
        previous_secret=old_scheme_encrypt("whsec_previous", "key-of-last-year"),
        previous_secret_expires_at=timezone.now() + timedelta(hours=1),
    )
    clear = old_endpoint(at_0003, secret="whsk_stored_in_clear")

    apps = migrate(AFTER)

    Endpoint = apps.get_model("webhooks", "Endpoint")
    current, clear = Endpoint.objects.get(pk=current.pk), Endpoint.objects.get(pk=clear.pk)
    assert current.secret.startswith("fernet:")
    assert current.previous_secret.startswith("fernet:")
    settings.SECRET_KEY_FALLBACKS = []  # everything now lives under the current key
    assert secret_decrypt(current.secret) == "whsec_current"
    assert secret_decrypt(current.previous_secret) == "whsec_previous"
    assert secret_decrypt(clear.secret) == "whsk_stored_in_clear"
    assert clear.previous_secret == ""


def test_a_secret_no_key_can_read_is_left_as_it_was(settings, at_0003):
    settings.SECRET_KEY = "key-of-today"
    lost = old_scheme_encrypt("whsec_lost", "a-key-nobody-kept")
    endpoint = old_endpoint(at_0003, secret=lost)

    apps = migrate(AFTER)

    assert apps.get_model("webhooks", "Endpoint").objects.get(pk=endpoint.pk).secret == lost


def test_migrating_back_restores_what_the_old_code_reads(settings, at_0003):
    settings.SECRET_KEY = "key-of-today"
    endpoint = old_endpoint(at_0003, secret=old_scheme_encrypt("whsec_roundtrip", "key-of-today"))
    migrate(AFTER)

    apps = migrate(BEFORE)

    stored = apps.get_model("webhooks", "Endpoint").objects.get(pk=endpoint.pk).secret
    assert old_scheme_decrypt(stored, "key-of-today") == "whsec_roundtrip"
