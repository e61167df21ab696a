"""Thin Celery tasks of the agents app."""

from __future__ import annotations

from celery import shared_task

from agents.services import rule_counters_recount_pending
from agents.shadow import shadow_tallies_update

RECOUNT_EVERY_SECONDS = 60.0


@shared_task(name="agents.recount_pending", ignore_result=True)
def agents_recount_pending() -> int:
    """Recount the running totals of rules waiting for it (queued when a limit changes on a
    long history; beat runs it every minute in case that wake-up was lost)."""
    return rule_counters_recount_pending()


@shared_task(name="agents.shadow_tally", ignore_result=True)
def agents_shadow_tally() -> int:
    """Count new checks' shadow outcomes into the rules' daily tallies (beat, every minute)."""
    return shadow_tallies_update()
