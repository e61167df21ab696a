"""The suite never reads the clock at import time.

A value taken while a test module is imported (a module constant, a default argument, a
parametrize list, a class attribute) is as old as the whole collection plus every test
that ran before it. On a loaded machine that passed five minutes, and a webhook verifier
refused a signature dated then. Take the time inside the test or a fixture.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEST_TREES = [ROOT / "tests", ROOT / "sdk" / "tests"]

# time.time(), time.monotonic(), timezone.now(), datetime.now(), date.today(), ...
_CLOCK_ATTRIBUTES = {
    "time",
    "time_ns",
    "monotonic",
    "monotonic_ns",
    "perf_counter",
    "perf_counter_ns",
    "now",
    "utcnow",
    "today",
}
# now() / monotonic() imported by name (``from django.utils.timezone import now``)
_CLOCK_NAMES = {"now", "utcnow", "monotonic", "monotonic_ns", "perf_counter", "time_ns"}


def _reads_clock(call: ast.Call) -> bool:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr in _CLOCK_ATTRIBUTES
    return isinstance(func, ast.Name) and func.id in _CLOCK_NAMES


def _evaluated_at_import(statements: list[ast.stmt]) -> Iterator[ast.AST]:
    """The expressions Python evaluates when it imports a module with ``statements``."""
    for statement in statements:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from statement.decorator_list  # e.g. @pytest.mark.parametrize(...)
            yield from statement.args.defaults
            yield from (d for d in statement.args.kw_defaults if d is not None)
        elif isinstance(statement, ast.ClassDef):
            yield from statement.decorator_list
            yield from statement.bases
            yield from statement.keywords
            yield from _evaluated_at_import(statement.body)
        elif isinstance(statement, ast.If | ast.While):
            yield statement.test
            yield from _evaluated_at_import(statement.body + statement.orelse)
        elif isinstance(statement, ast.For):
            yield statement.iter
            yield from _evaluated_at_import(statement.body + statement.orelse)
        elif isinstance(statement, ast.With):
            yield from statement.items
            yield from _evaluated_at_import(statement.body)
        elif isinstance(statement, ast.Try):
            yield from _evaluated_at_import(statement.body + statement.orelse)
            yield from _evaluated_at_import(statement.finalbody)
            for handler in statement.handlers:
                yield from _evaluated_at_import(handler.body)
        else:
            yield statement


def _calls_outside_deferred_code(node: ast.AST) -> Iterator[ast.Call]:
    """Calls in ``node``, except inside lambdas and nested functions (they run later)."""
    if isinstance(node, ast.Lambda | ast.FunctionDef | ast.AsyncFunctionDef):
        return
    if isinstance(node, ast.Call):
        yield node
    for child in ast.iter_child_nodes(node):
        yield from _calls_outside_deferred_code(child)


def clock_reads_at_import(source: str) -> list[tuple[int, str]]:
    tree = ast.parse(source)
    return [
        (call.lineno, ast.unparse(call))
        for expression in _evaluated_at_import(tree.body)
        for call in _calls_outside_deferred_code(expression)
        if _reads_clock(call)
    ]


def test_the_scanner_finds_each_kind_of_clock_read_at_import():
    source = """
import time
from datetime import datetime
from django.utils import timezone
NOW = int(time.time())
if True:
    STARTED = timezone.now()
class Case:
    at = datetime.now()
    def method(self, when=time.monotonic()):
        return time.time()  # fine: runs inside the test
@pytest.mark.parametrize("ts", [time.time()])
def test_x(ts, later=lambda: time.time()):
    pass
"""
    assert [line for line, _ in clock_reads_at_import(source)] == [5, 7, 9, 10, 12]


def test_no_test_module_reads_the_clock_at_import():
    found = [
        f"{path.relative_to(ROOT)}:{line}: {call}"
        for tree in TEST_TREES
        for path in sorted(tree.rglob("*.py"))
        for line, call in clock_reads_at_import(path.read_text())
    ]
    assert found == [], "read the clock inside the test or a fixture:\n" + "\n".join(found)


def test_the_webhook_format_tests_pass_when_the_clock_moves_on_after_import():
    """tests/webhooks/test_formats.py signs with "now": it must mean the test's now."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "WARDEN_CI_LEG"}
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "tests.core.clock_jump",
            "tests/webhooks/test_formats.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
