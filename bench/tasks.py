"""Bench-only Celery task (the worker loads it with `--include bench.tasks`): the broker round trip floor."""

import time

from celery import shared_task
from django.core.cache import cache


@shared_task(ignore_result=True)
def stamp(key: str) -> None:
    """Record when the worker ran this task; enqueue -> stamp is what any task costs before doing work."""
    cache.set(key, time.time(), 600)
