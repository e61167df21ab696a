"""Concurrent changes of one agent's policy number their versions one after the other.

PostgreSQL only (SQLite runs one writer at a time anyway): a change is paused inside its
transaction right after it wrote its version; a second change of the same agent, started
then, must wait for it and take the next number, never the same one.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection

from agents import services
from agents.models import PolicyVersion

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_two_changes_at_once_get_consecutive_version_numbers(monkeypatch, support_bot):
    reached, release = threading.Event(), threading.Event()
    real = services._versions_record
    errors: list[BaseException] = []
    first: list[threading.Thread] = []

    def paused(**kwargs: Any) -> None:
        real(**kwargs)
        if threading.current_thread() is first[0]:
            reached.set()
            release.wait(60)

    def change(name: str) -> None:
        try:
            services.rule_create(
                organization=support_bot.organization,
                agent=support_bot,
                data={"name": name, "action": f"{name}.*", "effect": "block"},
                actor=None,
                note=name,
            )
        except BaseException as error:  # reported by the test thread
            errors.append(error)
        finally:
            reached.set()
            connection.close()

    monkeypatch.setattr(services, "_versions_record", paused)
    first.append(threading.Thread(target=change, args=("one",)))
    first[0].start()
    assert reached.wait(60), "the first change never wrote its version"
    second = threading.Thread(target=change, args=("two",))
    second.start()
    time.sleep(0.5)  # let the second reach the agent's row, held by the first
    release.set()
    first[0].join(60)
    second.join(60)
    assert not errors, errors
    numbers = list(
        PolicyVersion.objects.filter(agent=support_bot)
        .order_by("number")
        .values_list("number", "note")
    )
    assert numbers == [(1, ""), (2, "one"), (3, "two")]
    last = PolicyVersion.objects.get(agent=support_bot, number=3)
    assert [rule["name"] for rule in last.document["rules"]] == ["one", "two"]
