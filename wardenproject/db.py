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


def row_insert(instance: models.Model, *, using: str = "default") -> models.Model:
    """Insert a new instance with one ``INSERT ... RETURNING`` its primary key."""
    statement = insert_statement(type(instance), using)
    # Identifiers come from the model and quote_name; values are bound parameters.
    sql = (
        f"INSERT INTO {statement.table} ({statement.columns}) "  # noqa: S608
        f"VALUES ({statement.placeholders}) RETURNING {statement.pk_column}"
    )
    with connections[using].cursor() as cursor:
        cursor.execute(sql, statement.params(instance, using))
        instance.pk = cursor.fetchone()[0]
    instance._state.adding = False
    instance._state.db = using
    return instance
