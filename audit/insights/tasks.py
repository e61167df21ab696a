from __future__ import annotations

from celery import shared_task

from audit.insights.rollup import overview_rollup


@shared_task(name="insights.rollup", ignore_result=True)
def insights_rollup() -> int:
    """Count new checks and token usage into the overview's tables (beat, every
    WARDEN_OVERVIEW_ROLLUP_INTERVAL seconds)."""
    return overview_rollup()
