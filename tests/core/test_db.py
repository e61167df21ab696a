"""The lean INSERT of the hot paths (wardenproject/db.py) writes what Model.save() would."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connections

from audit.models import AuditEntry
from wardenproject.db import insert_statement, row_insert, rows_insert

pytestmark = pytest.mark.django_db


def full_conversion(instance, using="default"):
    connection = connections[using]
    statement = insert_statement(type(instance), using)
    return [f.get_db_prep_save(f.pre_save(instance, True), connection) for f in statement.fields]


def adapted(values):
    # Jsonb wrappers (PostgreSQL) compare by identity; compare what they carry.
    return [getattr(value, "obj", value) for value in values]


def audit_entry(org, **fields):
    return AuditEntry(
        public_id="act_lean",
        organization=org,
        kind=AuditEntry.Kind.CHECK,
        created_at=datetime(2026, 11, 21, 12, 0, tzinfo=UTC),
        action="stripe.refund",
        arguments={"amount": 42.5, "customer": {"tier": "vip"}},
        latency_us=120,
        **fields,
    )


def test_the_params_are_what_the_fields_own_conversion_gives(org_a):
    entry = audit_entry(org_a, session_id="s1", data={"metadata": {"k": 1}})
    statement = insert_statement(AuditEntry)
    params = statement.params(entry, connections["default"])
    assert adapted(params) == adapted(full_conversion(entry))


def test_rows_insert_writes_every_row_in_order_and_sets_their_keys(org_a):
    entries = [audit_entry(org_a, session_id=f"s{i}") for i in range(3)]
    for i, entry in enumerate(entries):
        entry.public_id = f"act_lean{i}"
    rows_insert(entries)
    stored = {e.pk: e for e in AuditEntry.objects.filter(public_id__startswith="act_lean")}
    assert [stored[e.pk].session_id for e in entries] == ["s0", "s1", "s2"]
    assert stored[entries[0].pk].arguments == {"amount": 42.5, "customer": {"tier": "vip"}}
    assert all(not e._state.adding for e in entries)


def test_row_insert_keeps_defaults_and_foreign_keys(org_a, alice):
    from agents import services

    agent = services.agent_create(organization=org_a, actor=alice, name="lean-bot")
    key, _ = services.api_key_create(
        organization=org_a, kind="agent", agent=agent, environment="live", actor=alice
    )
    entry = row_insert(audit_entry(org_a, actor_key=key, agent=agent))
    stored = AuditEntry.objects.get(pk=entry.pk)
    assert stored.data == {}
    assert (stored.actor_key_id, stored.agent_id, stored.organization_id) == (
        key.pk,
        agent.pk,
        org_a.pk,
    )
