"""The lean INSERT of the hot paths (wardenproject/db.py) writes what Model.save() would."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connections

from agents.models import Agent
from audit.models import AuditEntry
from wardenproject.db import insert_statement, instance_new, row_insert, rows_insert

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


def test_values_of_another_type_still_go_through_the_field(org_a):
    # A TextChoices member, an int in a CharField, a bool in an IntegerField.
    entry = audit_entry(org_a, target_id=42, decision=AuditEntry.Kind.CHECK)
    entry.latency_us = True
    params = insert_statement(AuditEntry).params(entry, connections["default"])
    fields = [f.name for f in insert_statement(AuditEntry).fields]
    assert params[fields.index("target_id")] == "42"
    assert params[fields.index("latency_us")] == 1
    assert adapted(params) == adapted(full_conversion(entry))


def test_foreign_keys_to_integer_keys_pass_the_id(org_a):
    statement = insert_statement(AuditEntry)
    plain = dict(zip([f.name for f in statement.fields], statement.plain, strict=True))
    assert plain["organization"] == (int,)
    assert plain["action"] == (str,)
    assert plain["latency_us"] is None  # integers get the backend's sized types
    assert plain["arguments"] is None  # JSON is always adapted
    assert plain["created_at"] is None  # dates may need pre_save (auto_now)


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


@pytest.mark.postgres
def test_the_insert_becomes_a_prepared_statement_on_postgresql(org_a):
    from django.db import connection

    for i in range(6):
        entry = audit_entry(org_a)
        entry.public_id = f"act_prep{i}"
        row_insert(entry)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            ['INSERT INTO "audit_auditentry"%'],
        )
        (prepared,) = cursor.fetchone()
    assert prepared == 1


@pytest.mark.postgres
def test_a_multi_row_insert_reuses_psycopgs_converted_statement(org_a):
    from psycopg import _queries

    def batch(tag):
        entries = [audit_entry(org_a) for _ in range(5)]
        for i, entry in enumerate(entries):
            entry.public_id = f"act_{tag}{i}"
        rows_insert(entries)

    batch("first")
    hits = _queries._query2pg.cache_info().hits
    batch("again")
    assert _queries._query2pg.cache_info().hits == hits + 1


def instance_state(instance):
    values = {k: v for k, v in instance.__dict__.items() if k != "_state"}
    state = instance._state
    return values, state.adding, state.db, dict(state.fields_cache)


def check_row_values(org, agent, key):
    return {
        "public_id": "act_lean",
        "organization": org,
        "kind": AuditEntry.Kind.CHECK,
        "created_at": datetime(2026, 11, 21, 12, 0, tzinfo=UTC),
        "actor_key": key,
        "actor_label": "key wdn_live… (live)",
        "agent": agent,
        "agent_public_id": agent.public_id,
        "action": "stripe.refund",
        "arguments": {"amount": 42},
        "environment": "live",
        "session_id": "s1",
        "decision": "allow",
        "status": "allowed",
        "rule_public_id": "",
        "rule_name": "",
        "reason": "no_policy_configured",
        "source": "native",
        "data": {},
        "idempotency_key": "",
    }


def test_instance_new_builds_what_the_model_constructor_builds(org_a, alice):
    from agents import services

    agent = services.agent_create(organization=org_a, actor=alice, name="lean-bot")
    key, _ = services.api_key_create(
        organization=org_a, kind="agent", agent=agent, environment="live", actor=alice
    )
    lean = instance_new(AuditEntry, **check_row_values(org_a, agent, key))
    django = AuditEntry(**check_row_values(org_a, agent, key))
    assert instance_state(lean) == instance_state(django)
    assert lean._state.adding and lean.agent is agent  # cached: no query to read it back
    row_insert(lean)
    stored = AuditEntry.objects.get(pk=lean.pk)
    assert (stored.agent_id, stored.actor_key_id) == (agent.pk, key.pk)
    assert stored.arguments == {"amount": 42}


def test_instance_new_fills_defaults_and_takes_ids_by_attname(org_a):
    django = AuditEntry(organization_id=org_a.pk, kind=AuditEntry.Kind.LOG)
    lean = instance_new(AuditEntry, organization_id=org_a.pk, kind=AuditEntry.Kind.LOG)
    lean_values, *lean_state = instance_state(lean)
    django_values, *django_state = instance_state(django)
    assert lean_state == django_state
    # Callable defaults are called for each instance: a fresh public id and creation time.
    assert lean_values.pop("public_id") != django_values.pop("public_id")
    assert lean_values.pop("created_at") >= django_values.pop("created_at")
    assert lean_values == django_values
    assert lean.organization_id == org_a.pk and lean.agent_id is None and lean.data == {}


def test_instance_new_refuses_an_unknown_field_or_a_wrong_related_object(org_a):
    with pytest.raises(TypeError, match="'colour'"):
        instance_new(AuditEntry, organization=org_a, colour="blue")
    with pytest.raises(ValueError, match='must be a "Agent" instance'):
        instance_new(AuditEntry, organization=org_a, agent=org_a)


def test_instance_new_is_the_constructor_when_init_signals_have_receivers(org_a):
    from django.db.models.signals import post_init

    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append(instance)

    post_init.connect(receiver, sender=AuditEntry)
    try:
        entry = instance_new(AuditEntry, organization=org_a, kind=AuditEntry.Kind.LOG)
    finally:
        post_init.disconnect(receiver, sender=AuditEntry)
    assert seen == [entry]
    assert not post_init.has_listeners(Agent)
