"""Lean writes for the hot paths: one INSERT generated from a model, none of ``save()``.

The check endpoint writes one audit row per tool call and the webhook worker one attempt row
per delivery; the ORM's save path (signals, SQL compiled per call) cost as much CPU as the
rest of that work. The statements here are built once per model and database from the
model's own field list, so they follow the model through migrations.

On PostgreSQL a batch of several rows (the audit group commit, audit/writer.py) travels as
one JSON parameter, ``INSERT ... SELECT ... FROM json_populate_recordset(NULL::table, %s)``:
the statement's text is the same for any number of rows, so psycopg converts it once and
keeps it (a multi-row ``VALUES`` has 26 placeholders per audit row, and psycopg re-parses any
statement of 50 or more on every call), and one string is quoted instead of 26 values per
row. On the lab machine that is 30-40 µs less CPU per row in the web process from three rows
a batch, and no more in PostgreSQL (bench/audit_batch.py, bench/NOTES.md 2026-12-07). A
single row keeps ``VALUES``: PostgreSQL spends more on the JSON of one row than on its
values.

Both statements run on ``prepared_cursor``: PostgreSQL parses and plans each once per
connection and takes the values as parameters, so neither side quotes them into the SQL text.
With the values' fast path (``InsertStatement.params``) that took a check's web-process CPU
from 599 to 513 µs in process, and through gunicorn its CPU (web + PostgreSQL) from 1.143 to
1.078 ms (docs/PERFORMANCE.md, "Check API").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper

# Field types whose values, as ``get_db_prep_save`` gives them on PostgreSQL (str, int, bool,
# None, an aware datetime, psycopg's Jsonb of a JSONField without its own encoder), JSON
# carries exactly. A model with any other field is inserted with VALUES.
_JSON_SAFE_TYPES = frozenset(
    {
        "AutoField",
        "BigAutoField",
        "BigIntegerField",
        "BooleanField",
        "CharField",
        "DateTimeField",
        "IntegerField",
        "JSONField",
        "PositiveBigIntegerField",
        "PositiveIntegerField",
        "PositiveSmallIntegerField",
        "SmallAutoField",
        "SmallIntegerField",
        "TextField",
    }
)


# Fields whose values of an exact type ``pre_save`` and ``get_db_prep_save`` return unchanged
# (on SQLite and PostgreSQL): text fields a str, and foreign keys to an auto-increment key an
# int (or None where the column is nullable). Exact field classes only: a subclass may
# prepare its values (encrypt, normalise) in ways these do not.
_PLAIN_TEXT = (models.CharField, models.TextField)
_AUTO_KEYS = (models.AutoField, models.BigAutoField)


def _plain_types(field: models.Field) -> frozenset[type] | None:
    """The value types ``field`` takes unprepared (see above), or None."""
    if type(field) in _PLAIN_TEXT:
        return frozenset({str, type(None)} if field.null else {str})
    if type(field) is models.ForeignKey and type(field.target_field) in _AUTO_KEYS:
        return frozenset({int, type(None)})
    return None


@dataclass(frozen=True)
class InsertStatement:
    table: str
    columns: str
    placeholders: str
    fields: list[models.Field]
    pk_column: str
    # For rows as JSON (PostgreSQL): the columns' plain names, and which values are
    # datetimes and JSON documents; None when a field's values may not survive JSON.
    json_names: tuple[str, ...] | None = None
    datetime_positions: tuple[int, ...] = ()
    document_positions: tuple[int, ...] = ()

    # Per field, in order: the value types it takes unprepared (_plain_types), or None.
    plain_types: tuple[frozenset[type] | None, ...] = ()

    def params(self, instance: models.Model, connection: BaseDatabaseWrapper) -> list[Any]:
        """The row's values as the database takes them (``get_db_prep_save``).

        A value of a type its field takes unprepared (``_plain_types``) is taken as it is:
        ``pre_save`` and ``get_db_prep_save`` would return it unchanged, and calling them
        for every column was most of the cost of building a check's row (26 columns, ~35
        µs). Every other value (datetimes, numbers, JSON documents, an int given to a text
        field) is prepared by its field as ``save()`` would."""
        values = instance.__dict__
        params = []
        for field, plain in zip(self.fields, self.plain_types, strict=True):
            if plain is not None and type(value := values[field.attname]) in plain:
                params.append(value)
            else:
                params.append(field.get_db_prep_save(field.pre_save(instance, True), connection))
        return params


_STATEMENTS: dict[tuple[type[models.Model], str], InsertStatement] = {}


def insert_statement(model: type[models.Model], using: str = "default") -> InsertStatement:
    """The pieces of ``INSERT INTO table (every non-key column) VALUES (...)`` for ``model``."""
    key = (model, using)
    if key not in _STATEMENTS:
        quote = connections[using].ops.quote_name
        fields = [f for f in model._meta.concrete_fields if not f.primary_key]
        types = [(f.target_field if f.is_relation else f).get_internal_type() for f in fields]
        json_safe = all(kind in _JSON_SAFE_TYPES for kind in types) and all(
            getattr(f, "encoder", None) is None for f in fields
        )
        _STATEMENTS[key] = InsertStatement(
            table=quote(model._meta.db_table),
            columns=", ".join(quote(f.column) for f in fields),
            placeholders=", ".join(["%s"] * len(fields)),
            fields=fields,
            plain_types=tuple(_plain_types(f) for f in fields),
            pk_column=quote(model._meta.pk.column),
            json_names=tuple(f.column for f in fields) if json_safe else None,
            datetime_positions=tuple(i for i, k in enumerate(types) if k == "DateTimeField"),
            document_positions=tuple(i for i, k in enumerate(types) if k == "JSONField"),
        )
    return _STATEMENTS[key]


def row_insert(instance: models.Model, *, using: str = "default") -> models.Model:
    """Insert a new instance with one ``INSERT ... RETURNING`` its primary key."""
    return rows_insert([instance], using=using)[0]


def prepared_cursor(connection: BaseDatabaseWrapper) -> CursorWrapper:
    """A cursor whose statements PostgreSQL parses and plans once per connection.

    Django's psycopg cursors bind parameters on the client, so the server parses and plans
    every statement afresh: for the running totals' read and spend (agents/limits.py) that
    was most of their PostgreSQL CPU (EXPLAIN: 0.16-0.29 ms planning against 0.05-0.13 ms
    execution). The audit INSERTs of ``rows_insert`` run on it too. This is psycopg's own
    server-binding cursor on Django's connection, wrapped as Django wraps its cursors
    (execute wrappers, error mapping, query logging); psycopg prepares its statements as the
    connection's ``prepare_threshold`` says (settings: ``DATABASE_PREPARED_STATEMENTS``).
    Elsewhere (SQLite), and while queries are logged (DEBUG, tests capturing queries:
    psycopg keeps no text of a statement it has prepared, so the log would show none),
    Django's cursor.
    """
    if connection.vendor != "postgresql" or connection.queries_logged:
        return connection.cursor()
    import psycopg

    connection.ensure_connection()
    connection.validate_thread_sharing()
    return connection.make_cursor(psycopg.Cursor(connection.connection))


def rows_insert_sql(
    instances: list[models.Model], *, using: str = "default"
) -> tuple[str, list[Any]]:
    """``INSERT INTO table (...) VALUES (...), ... RETURNING pk`` for new instances of one
    model, and its parameters (as the database takes them)."""
    statement = insert_statement(type(instances[0]), using)
    values = ", ".join([f"({statement.placeholders})"] * len(instances))
    # Identifiers come from the model and quote_name; values are bound parameters.
    sql = (
        f"INSERT INTO {statement.table} ({statement.columns}) "  # noqa: S608
        f"VALUES {values} RETURNING {statement.pk_column}"
    )
    connection = connections[using]
    params: list[Any] = []
    for instance in instances:
        params.extend(statement.params(instance, connection))
    return sql, params


def rows_inserted(instances: list[models.Model], keys: list[Any], *, using: str) -> None:
    """Mark instances as saved with the primary keys their INSERT returned."""
    for instance, (pk,) in zip(instances, keys, strict=True):
        instance.pk = pk
        instance._state.adding = False
        instance._state.db = using


def _rows_as_json(
    statement: InsertStatement, instances: list[models.Model], connection: BaseDatabaseWrapper
) -> str | None:
    """The rows as one JSON array of objects keyed by column, or None if one of them cannot
    be (a JSON document that is JSON ``null``: as a column of a JSON record it would become
    SQL NULL)."""
    names = statement.json_names
    assert names is not None
    rows = []
    for instance in instances:
        values = statement.params(instance, connection)
        for position in statement.document_positions:
            document = values[position]
            if document is not None:  # None: SQL NULL, as in JSON
                if document.obj is None:
                    return None
                values[position] = document.obj
        for position in statement.datetime_positions:
            moment = values[position]
            if isinstance(moment, datetime):
                values[position] = moment.isoformat()
        rows.append(dict(zip(names, values, strict=True)))
    return json.dumps(rows)


def rows_insert(instances: list[models.Model], *, using: str = "default") -> list[models.Model]:
    """Insert new instances of one model with one multi-row ``INSERT ... RETURNING`` (one
    statement: all rows or none); each instance gets its primary key."""
    connection = connections[using]
    statement = insert_statement(type(instances[0]), using)
    rows = (
        _rows_as_json(statement, instances, connection)
        if len(instances) > 1
        and statement.json_names is not None
        and connection.vendor == "postgresql"
        else None
    )
    if rows is not None:
        # Identifiers come from the model and quote_name; the rows are one bound parameter.
        sql = (
            f"INSERT INTO {statement.table} ({statement.columns}) "  # noqa: S608
            f"SELECT {statement.columns} FROM json_populate_recordset(NULL::{statement.table}, "
            f"%s::json) RETURNING {statement.pk_column}"
        )
        params: list[Any] = [rows]
    else:
        sql, params = rows_insert_sql(instances, using=using)
    with prepared_cursor(connection) as cursor:
        cursor.execute(sql, params)
        # PostgreSQL and SQLite return the rows of an INSERT ... VALUES in VALUES order (as
        # Django's bulk_create relies on).
        keys = cursor.fetchall()
    rows_inserted(instances, keys, using=using)
    return instances
