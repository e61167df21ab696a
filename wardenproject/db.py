"""Lean writes for the hot paths: one INSERT generated from a model, none of ``save()``.

The check endpoint writes one audit row per tool call and the webhook worker one attempt row
per delivery; the ORM's save path (signals, SQL compiled per call) cost as much CPU as the
rest of that work. The statements here are built once per model and database from the
model's own field list, so they follow the model through migrations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import connections, models
from django.db.backends.base.base import BaseDatabaseWrapper


@dataclass(frozen=True)
class InsertStatement:
    table: str
    columns: str
    placeholders: str
    fields: list[models.Field]
    pk_column: str

    def params(self, instance: models.Model, connection: BaseDatabaseWrapper) -> list[Any]:
        """The row's values as the database takes them (``get_db_prep_save``)."""
        return [
            field.get_db_prep_save(field.pre_save(instance, True), connection)
            for field in self.fields
        ]


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


def row_insert(instance: models.Model, *, using: str = "default") -> models.Model:
    """Insert a new instance with one ``INSERT ... RETURNING`` its primary key."""
    return rows_insert([instance], using=using)[0]


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


def rows_insert(instances: list[models.Model], *, using: str = "default") -> list[models.Model]:
    """Insert new instances of one model with one multi-row ``INSERT ... RETURNING`` (one
    statement: all rows or none); each instance gets its primary key."""
    sql, params = rows_insert_sql(instances, using=using)
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)
        # PostgreSQL and SQLite return the rows of an INSERT ... VALUES in VALUES order (as
        # Django's bulk_create relies on).
        keys = cursor.fetchall()
    rows_inserted(instances, keys, using=using)
    return instances
