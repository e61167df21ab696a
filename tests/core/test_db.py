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
    fields = {
        "created_at": datetime(2026, 11, 21, 12, 0, tzinfo=UTC),
        "arguments": {"amount": 42.5, "customer": {"tier": "vip"}},
        "latency_us": 120,
        **fields,
    }
    return AuditEntry(
        public_id="act_lean",
        organization=org,
        kind=AuditEntry.Kind.CHECK,
        action="stripe.refund",
        **fields,
    )


def test_the_params_are_what_the_fields_own_conversion_gives(org_a):
    entry = audit_entry(org_a, session_id="s1", data={"metadata": {"k": 1}})
    statement = insert_statement(AuditEntry)
    params = statement.params(entry, connections["default"])
    assert adapted(params) == adapted(full_conversion(entry))


def test_values_of_other_types_are_still_prepared_by_their_fields(org_a, alice):
    # Plain str and int values skip preparation; anything else goes through the field, so
    # an int in a text column is sent as text, and a foreign key given as an instance or an
    # id is the same key.
    entry = audit_entry(org_a, session_id=5, actor_user_id=alice.pk, reason="r")
    statement = insert_statement(AuditEntry)
    params = statement.params(entry, connections["default"])
    assert adapted(params) == adapted(full_conversion(entry))
    by_column = dict(zip([f.column for f in statement.fields], params, strict=True))
    assert by_column["session_id"] == "5" and type(by_column["session_id"]) is str
    assert by_column["actor_user_id"] == alice.pk
    assert by_column["organization_id"] == org_a.pk
    assert by_column["agent_id"] is None
    row_insert(entry)
    stored = AuditEntry.objects.get(pk=entry.pk)
    assert (stored.session_id, stored.actor_user_id, stored.kind) == ("5", alice.pk, "check")


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


def stored_values(entry):
    """The row as the database returns it, every column."""
    stored = AuditEntry.objects.get(pk=entry.pk)
    return {f.attname: getattr(stored, f.attname) for f in AuditEntry._meta.concrete_fields}


@pytest.mark.postgres
def test_a_batch_as_json_stores_what_one_row_with_values_stores(org_a, alice):
    """Batches of several rows travel as one JSON parameter on PostgreSQL; each column must
    come back exactly as the same row written alone (VALUES) does."""
    from agents import services

    agent = services.agent_create(organization=org_a, actor=alice, name="json-bot")
    key, _ = services.api_key_create(
        organization=org_a, kind="agent", agent=agent, environment="live", actor=alice
    )

    def variety():
        return [
            audit_entry(
                org_a,
                actor_key=key,
                agent=agent,
                session_id='sé\u00a0ss 🙂 "quoted" \\ back',
                reason="line\nbreak\ttab ' single",
                data={"trace": [{"n": 1.5, "big": 2**70, "t": True, "no": None}], "u": "ü"},
            ),
            audit_entry(org_a, arguments=None, data={}, latency_us=None),
            audit_entry(
                org_a,
                arguments=["a", 1, None],
                created_at=datetime(2026, 11, 21, 12, 0, 0, 123456, tzinfo=UTC),
                actor_user=alice,
                policy_version=7,
            ),
            audit_entry(org_a, arguments="just text", data={"": 0, "nested": {"x": []}}),
        ]

    alone, batch = variety(), variety()
    for i, (one, many) in enumerate(zip(alone, batch, strict=True)):
        one.public_id, many.public_id = f"act_one{i}", f"act_many{i}"
        row_insert(one)
    assert statement_kind_for(batch) == "json"
    rows_insert(batch)
    for one, many in zip(alone, batch, strict=True):
        expected, got = stored_values(one), stored_values(many)
        for column in ("id", "public_id"):
            expected.pop(column), got.pop(column)
        assert got == expected
    # Every instance got its own row's key (the rows come back in order).
    assert [AuditEntry.objects.get(pk=e.pk).public_id for e in batch] == [
        f"act_many{i}" for i in range(4)
    ]


@pytest.mark.postgres
def test_a_batch_with_a_json_null_document_falls_back_to_values(org_a):
    """A JSON document that is JSON null (not SQL NULL) has no JSON-record form."""
    from django.db.models import JSONField, Value

    entries = [audit_entry(org_a), audit_entry(org_a)]
    entries[0].public_id, entries[1].public_id = "act_null0", "act_null1"
    entries[1].arguments = Value(None, JSONField())
    assert statement_kind_for(entries) == "values"
    rows_insert(entries)
    assert AuditEntry.objects.filter(public_id="act_null1", arguments__isnull=True).count() == 0


def statement_kind_for(instances):
    from wardenproject.db import _rows_as_json

    statement = insert_statement(AuditEntry)
    as_json = _rows_as_json(statement, instances, connections["default"])
    return "json" if as_json is not None else "values"


@pytest.mark.postgres  # prepared statements: PostgreSQL only
def test_the_row_and_the_batch_statements_are_prepared_once_per_connection(org_a):
    """PostgreSQL parses and plans the audit INSERTs once per connection (psycopg prepares a
    statement on its second run, prepare_threshold=1), and the values travel as parameters,
    never quoted into the SQL text."""

    def write(round_):
        entries = [audit_entry(org_a) for _ in range(4)]
        for i, entry in enumerate(entries):
            entry.public_id = f"act_prep{round_}{i}"
        row_insert(entries[0])
        rows_insert(entries[1:])

    def prepared():
        with connections["default"].cursor() as cursor:
            cursor.execute(
                "SELECT statement, generic_plans + custom_plans FROM pg_prepared_statements"
                " WHERE statement LIKE 'INSERT INTO \"audit_auditentry\"%%'"
            )
            return dict(cursor.fetchall())

    write(0)
    write(1)
    before = prepared()
    write(2)
    write(3)
    after = prepared()
    assert len(after) == 2, after
    values, batch = sorted(after, key=lambda s: "json_populate_recordset" in s)
    assert "VALUES ($1, $2" in values and "act_prep" not in values
    assert "json_populate_recordset" in batch and "$1::json" in batch
    assert after[values] - before[values] == after[batch] - before[batch] == 2
