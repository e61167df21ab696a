"""Lean writes for the hot paths: one INSERT generated from a model, none of ``save()``.

The check endpoint writes one audit row per tool call and the webhook worker one attempt row
per delivery; the ORM's save path (signals, SQL compiled per call) cost as much CPU as the
rest of that work. The statements here are built once per model and database from the
model's own field list, so they follow the model through migrations.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.db import connections, models


@dataclass(frozen=True)
class InsertStatement:
    table: str
    columns: str
    placeholders: str
    fields: list[models.Field]
    pk_column: str

    def params(self, instance: models.Model, using: str) -> list[Any]:
        connection = connections[using]
        return [f.get_db_prep_save(f.pre_save(instance, True), connection) for f in self.fields]


_STATEMENTS: dict[tuple[type[models.Model], str], InsertStatement] = {}


def insert_statement(model: type[models.Model], using: str = "default") -> InsertStatement:
    """The pieces of ``INSERT INTO table (every non-key column) VALUES (...)`` for ``model``."""
    key = (model, using)
    if key not in _STATEMENTS:
        quote = connections[using].ops.quote_name
        fields = [f for f in model._meta.concrete_fields if not f.primary_key]
        _STATEMENTS[key] = InsertStatement(
            table=quote(model._meta.db_table),
            columns=", ".join(quote(f.column) for f in fields),
            placeholders=", ".join(["%s"] * len(fields)),
            fields=fields,
            pk_column=quote(model._meta.pk.column),
        )
    return _STATEMENTS[key]


@contextmanager
def _cursor(using: str) -> Iterator[Any]:
    """A cursor that binds parameters on the server where the backend can (PostgreSQL).

    Django's psycopg cursors bind on the client: every value is quoted into the SQL text in
    Python, which for a 24-column audit row cost more CPU than the rest of the INSERT. A
    plain psycopg cursor sends the values apart from the statement, adapted in C. It is
    wrapped the way Django wraps its own (execute wrappers, query logging, error mapping).
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            yield cursor
        return
    import psycopg

    connection.ensure_connection()
    connection.validate_thread_sharing()
    raw = psycopg.Cursor(connection.connection)
    wrapped = (
        connection.make_debug_cursor(raw)
        if connection.queries_logged
        else connection.make_cursor(raw)
    )
    with wrapped as cursor:
        yield cursor


def row_insert(instance: models.Model, *, using: str = "default") -> models.Model:
    """Insert a new instance with one ``INSERT ... RETURNING`` its primary key."""
    return rows_insert([instance], using=using)[0]


def rows_insert(instances: list[models.Model], *, using: str = "default") -> list[models.Model]:
    """Insert new instances of one model with one multi-row ``INSERT ... RETURNING`` (one
    statement: all rows or none); each instance gets its primary key."""
    statement = insert_statement(type(instances[0]), using)
    values = ", ".join([f"({statement.placeholders})"] * len(instances))
    # Identifiers come from the model and quote_name; values are bound parameters.
    sql = (
        f"INSERT INTO {statement.table} ({statement.columns}) "  # noqa: S608
        f"VALUES {values} RETURNING {statement.pk_column}"
    )
    params: list[Any] = []
    for instance in instances:
        params.extend(statement.params(instance, using))
    with _cursor(using) as cursor:
        cursor.execute(sql, params)
        # PostgreSQL and SQLite return the rows of an INSERT ... VALUES in VALUES order (as
        # Django's bulk_create relies on).
        keys = cursor.fetchall()
    for instance, (pk,) in zip(instances, keys, strict=True):
        instance.pk = pk
        instance._state.adding = False
        instance._state.db = using
    return instances
