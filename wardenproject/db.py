"""Lean writes for the hot paths: one INSERT generated from a model, none of ``save()``.

The check endpoint writes one audit row per tool call and the webhook worker one attempt row
per delivery; the ORM's save path (signals, SQL compiled per call) cost as much CPU as the
rest of that work. The statements here are built once per model and database from the
model's own field list, so they follow the model through migrations; ``instance_new`` builds
the row's instance the same way, without ``Model.__init__``'s general machinery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from django.db.models.base import ModelState
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.query_utils import DeferredAttribute
from django.db.models.signals import post_init, pre_init

M = TypeVar("M", bound=models.Model)

# Built-in field classes whose value, when it already has exactly one of these Python types
# (or is None), is what the database adapter takes: ``get_db_prep_save`` would return it
# unchanged. Subclasses (which may convert or encrypt) always take the full path, and so do
# integer fields (Django wraps their values in sized types on PostgreSQL).
_PLAIN_VALUE_TYPES: dict[type[models.Field], tuple[type, ...]] = {
    models.CharField: (str,),
    models.TextField: (str,),
    models.BooleanField: (bool,),
}
_INTEGER_KEYS = (models.AutoField, models.BigAutoField, models.SmallAutoField)


def _plain_value_types(field: models.Field) -> tuple[type, ...] | None:
    if type(field) is models.ForeignKey and type(field.target_field) in _INTEGER_KEYS:
        return (int,)  # an auto key's value goes to the database as the int it is
    return _PLAIN_VALUE_TYPES.get(type(field))


@dataclass(frozen=True)
class InsertStatement:
    table: str
    columns: str
    placeholders: str
    fields: list[models.Field]
    pk_column: str
    plain: list[tuple[type, ...] | None]

    def params(self, instance: models.Model, connection: BaseDatabaseWrapper) -> list[Any]:
        """The row's values as the database takes them (``get_db_prep_save``), skipping the
        conversion where it would change nothing (a str for a CharField, an int key...)."""
        values = instance.__dict__
        params: list[Any] = []
        for field, plain in zip(self.fields, self.plain, strict=True):
            if plain is not None:
                value = values[field.attname]
                if value is None or type(value) in plain:
                    params.append(value)
                    continue
            params.append(field.get_db_prep_save(field.pre_save(instance, True), connection))
        return params


_STATEMENTS: dict[tuple[type[models.Model], str], InsertStatement] = {}


@dataclass(frozen=True)
class _FieldPlan:
    name: str
    attname: str
    relation: bool
    plain_attribute: bool  # the attname's descriptor only stores the value in __dict__
    field: models.Field


_PLANS: dict[type[models.Model], list[_FieldPlan]] = {}


def _field_plans(model: type[models.Model]) -> list[_FieldPlan]:
    if model not in _PLANS:
        _PLANS[model] = [
            _FieldPlan(
                name=field.name,
                attname=field.attname,
                relation=field.is_relation,
                # A ForeignKey's id attribute also clears a cached related object, and a new
                # instance has none.
                plain_attribute=type(model.__dict__.get(field.attname))
                in (DeferredAttribute, ForeignKeyDeferredAttribute),
                field=field,
            )
            for field in model._meta.concrete_fields
            if field.column is not None and not field.generated
        ]
    return _PLANS[model]


def instance_new(model: type[M], **values: Any) -> M:
    """``model(**values)`` for a row about to be inserted, in ~40% of the CPU (7.4 against
    18.1 µs for a check's audit row).

    Takes fields by name (a related object, set through its descriptor as Django does) or by
    attname (``agent_id``), fills the others with their defaults, and leaves the instance in
    the state ``__init__`` would. It skips what a hot-path row never needs: positional
    arguments, properties and deferred values. With ``pre_init`` or ``post_init`` receivers
    for the model it is ``model(**values)`` itself. tests/core/test_db.py compares the two.
    """
    if pre_init.has_listeners(model) or post_init.has_listeners(model):
        return model(**values)
    instance = model.__new__(model)
    instance._state = ModelState()
    stored = instance.__dict__
    for plan in _field_plans(model):
        if plan.name in values:
            value = values.pop(plan.name)
            if plan.relation:
                setattr(instance, plan.name, value)
                continue
        elif plan.attname in values:
            value = values.pop(plan.attname)
        else:
            value = plan.field.get_default()
        if plan.plain_attribute:
            stored[plan.attname] = value
        else:
            setattr(instance, plan.attname, value)
    if values:
        raise TypeError(
            f"{model.__name__}() got unexpected keyword arguments: {', '.join(map(repr, values))}"
        )
    return instance


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
            plain=[_plain_value_types(f) for f in fields],
        )
    return _STATEMENTS[key]


_statement_cache_widened = False


def _widen_psycopg_statement_cache() -> None:
    """Let psycopg keep its conversion of multi-row INSERTs.

    psycopg converts each query's ``%s`` placeholders to ``$n`` and caches the result, but
    only for queries of at most 50 parameters and 4 KiB. An audit row has 24 parameters, so
    every INSERT of three rows or more (group commit under load) was converted afresh on each
    call: a fifth of the check path's CPU in the web process. The limits are module settings
    of psycopg; the cache itself stays bounded (an LRU of 128 statements, and only the batch
    sizes that occur are in it). tests/core/test_db.py fails if a psycopg upgrade moves them.
    """
    global _statement_cache_widened
    from psycopg import _queries

    _queries.MAX_CACHED_STATEMENT_PARAMS = max(_queries.MAX_CACHED_STATEMENT_PARAMS, 4096)
    _queries.MAX_CACHED_STATEMENT_LENGTH = max(_queries.MAX_CACHED_STATEMENT_LENGTH, 65536)
    _statement_cache_widened = True


def server_cursor(connection: BaseDatabaseWrapper) -> CursorWrapper:
    """A cursor that binds parameters on the server where the backend can (PostgreSQL).

    Django's psycopg cursors bind on the client: every value is quoted into the SQL text in
    Python, which for a 24-column audit row cost more CPU than the rest of the INSERT. A
    plain psycopg cursor sends the values apart from the statement, adapted in C. It is
    wrapped the way Django wraps its own (execute wrappers, query logging, error mapping).
    """
    if connection.vendor != "postgresql":
        return connection.cursor()
    import psycopg

    if not _statement_cache_widened:
        _widen_psycopg_statement_cache()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    raw = psycopg.Cursor(connection.connection)
    if connection.queries_logged:
        return connection.make_debug_cursor(raw)
    return connection.make_cursor(raw)


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
    with server_cursor(connections[using]) as cursor:
        cursor.execute(sql, params)
        # PostgreSQL and SQLite return the rows of an INSERT ... VALUES in VALUES order (as
        # Django's bulk_create relies on).
        keys = cursor.fetchall()
    rows_inserted(instances, keys, using=using)
    return instances
