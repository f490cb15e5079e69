"""Group commit of download events: the requests of one web process that record an event at the same moment
share one transaction and one WAL flush.

Each gated download must leave a committed DownloadEvent before its redirect is sent. Committed one by one, every
redirect pays PostgreSQL a commit and a flush of the write-ahead log; under load most of the portal's database
time is those. Here a request hands its row to the process's writer thread and waits until the transaction
holding it has committed; the writer takes every row waiting when it starts a transaction, so while one commit is
being flushed the next batch forms by itself (one row when the portal is quiet, a handful under load). Nothing is
acknowledged before its commit: `synchronous_commit` stays on, a killed process loses only rows whose requests
were never answered, and a failed commit fails every request of its batch with the database error, as an insert
of their own would have.

The statement takes one array per column (`INSERT … SELECT * FROM unnest(%s::type[], …)`): a batch is one
statement in autocommit, so one round trip whatever its size, prepared once per connection. Round trips are
what limits the writer: after each reply its thread has to win the interpreter lock back from the request
threads, which under load takes up to the switch interval (5 ms). Measured with one busy thread beside eight
writers, BEGIN + insert + COMMIT (three round trips) committed about 110 rows/s and this one statement about 280.

Only for PostgreSQL and outside an atomic block (the writer's connection cannot see a caller's uncommitted rows);
anywhere else `write` returns False and the caller inserts itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading

import psycopg
from django.conf import settings
from django.db import OperationalError, connection, connections

log = logging.getLogger(__name__)

MAX_BATCH = 256
WAIT_SECONDS = 10.0


class _Row:
    __slots__ = ("done", "error", "params")

    def __init__(self, params):
        self.params = params
        self.done = threading.Event()
        self.error: BaseException | None = None


class Writer:
    """The process's writer thread and its queue (one per process: a forked child starts its own)."""

    def __init__(self, statement: str):
        self.statement = statement
        self.queue: queue.SimpleQueue[_Row | None] = queue.SimpleQueue()
        self.pid = os.getpid()
        self.thread = threading.Thread(target=self._run, name="download-events", daemon=True)
        self.thread.start()

    def write(self, params) -> None:
        row = _Row(params)
        self.queue.put(row)
        if not row.done.wait(WAIT_SECONDS):
            raise OperationalError("the download event was not committed in time")
        if row.error is not None:
            raise row.error

    def stop(self) -> None:
        self.queue.put(None)
        self.thread.join(WAIT_SECONDS)

    def _run(self) -> None:
        database = None
        while True:
            first = self.queue.get()
            if first is None:
                if database is not None:
                    database.close()
                return
            batch = [first]
            stopping = False
            while len(batch) < MAX_BATCH:
                try:
                    row = self.queue.get_nowait()
                except queue.Empty:
                    break
                if row is None:
                    stopping = True
                    break
                batch.append(row)
            try:
                if database is None:
                    database = connections.create_connection("default")
                with database.wrap_database_errors:
                    database.ensure_connection()
                    # One statement in autocommit, its own transaction: a single round trip, however many rows.
                    # A server-side binding cursor (Django's own bind on the client, which cannot prepare).
                    with psycopg.Cursor(database.connection) as cursor:
                        columns = [list(column) for column in zip(*(row.params for row in batch), strict=True)]
                        cursor.execute(self.statement, columns, prepare=True)
            except BaseException as exc:  # every waiting request learns it, whatever it was
                log.warning("download events not committed (%d rows): %s", len(batch), exc)
                for row in batch:
                    row.error = exc if isinstance(exc, Exception) else OperationalError(str(exc))
                if database is not None:
                    with contextlib.suppress(Exception):  # the connection is gone already
                        database.close()
                    database = None
            for row in batch:
                row.done.set()
            if stopping:
                self.queue.put(None)


_writer: Writer | None = None
_lock = threading.Lock()


def enabled() -> bool:
    return settings.DOWNLOAD_EVENT_GROUP_COMMIT and connection.vendor == "postgresql"


def _serves(writer: Writer | None, statement: str) -> bool:
    """Whether this process's writer exists and writes this statement (a forked child needs its own)."""
    return writer is not None and writer.pid == os.getpid() and writer.statement == statement


def write(statement: str, params) -> bool:
    """Commit this row with whatever else is waiting; False when the caller must insert it itself."""
    global _writer
    if not enabled() or connection.in_atomic_block:
        return False
    writer = _writer
    if not _serves(writer, statement):
        with _lock:
            writer = _writer
            if not _serves(writer, statement):
                writer = _writer = Writer(statement)
    writer.write(params)
    return True


def stop() -> None:
    """Close this process's writer and its connection (rows already queued are committed first)."""
    global _writer
    with _lock:
        writer, _writer = _writer, None
    if writer is not None and writer.pid == os.getpid():
        writer.stop()
