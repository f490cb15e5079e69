"""The one way work is handed to Celery: tasks that enqueue on commit and retry only transient errors.

A service calls `some_task.enqueue(pk)` inside its transaction; the message is sent once the transaction
commits (a worker can never run before the row it needs exists), and not at all if it rolls back. Because the
tasks are defined next to the services they run, services never import a tasks module, and no cycle needs a
function-local import to break it.
"""

from __future__ import annotations

import logging
import smtplib
from dataclasses import dataclass, field

import kombu.exceptions
import redis.exceptions
from celery import Task, shared_task
from django.db import InterfaceError, OperationalError, transaction

from . import logs
from .storage import StorageError

log = logging.getLogger(__name__)

# What a retry can cure: the broker, the database connection, storage and mail servers being briefly away.
# A programming error fails once, loudly, instead of ten times.
TRANSIENT_ERRORS = (
    OperationalError,
    InterfaceError,
    kombu.exceptions.OperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    StorageError,
    smtplib.SMTPException,
    ConnectionError,
    TimeoutError,
)


@dataclass
class Enqueued:
    """Filled in when the transaction commits: whether the broker took the message."""

    ok: bool | None = None
    errors: list[str] = field(default_factory=list)


class TransactionAwareTask(Task):
    abstract = True

    def enqueue(self, *args, result: Enqueued | None = None, countdown: float | None = None) -> Enqueued:
        """Send once the current transaction commits (at once outside one). A broker outage is logged and
        reported in the result, not raised: the periodic reconcile task finds the work again. The request id of
        the web request (or task) that enqueues travels in the message headers, so the worker logs it too."""
        result = result or Enqueued()
        headers = {"request_id": logs.current_request_id()}

        def send():
            try:
                self.apply_async(args=args, retry=False, countdown=countdown, headers=headers)
                result.ok = result.ok is not False
            except Exception as exc:  # the broker's errors vary by transport
                log.warning("could not enqueue %s%r: %s", self.name, args, exc)
                result.ok = False
                result.errors.append(str(exc))

        transaction.on_commit(send)
        return result


def portal_task(name: str):
    """A task that takes primary keys, is idempotent, acks late and retries transient errors with backoff."""
    return shared_task(
        name=name,
        base=TransactionAwareTask,
        acks_late=True,
        reject_on_worker_lost=True,
        soft_time_limit=120,
        time_limit=150,
        autoretry_for=TRANSIENT_ERRORS,
        retry_backoff=2,
        retry_backoff_max=300,
        retry_jitter=True,
        max_retries=10,
    )
