"""The gate's recorder: makes every allowed download durable before any URL is handed out, and is the only place
that knows how. A `DownloadEvent` row is committed before the response is sent — on PostgreSQL sharing a commit
with concurrent requests of the process (access.gate.groupcommit), or inserted alone through a prepared
statement — with the revision actually served. Anonymous downloads of an open release's files are counted per
file and hour instead, their addresses among the release's visitors of the day (access.counts), or get a row when
there is no Redis to count in."""

from __future__ import annotations

from datetime import datetime

import psycopg
from django.db import connection
from django.utils import timezone

from .. import metrics
from ..counts import count_open_download
from . import groupcommit

# One statement, built once: the ORM's per-call SQL compilation is most of an insert's cost on this path.
INSERT_EVENT = (
    "INSERT INTO access_downloadevent "
    "(created_at, release_id, file_id, revision_id, user_id, token_id, grant_id, via, manifest_format, ip) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
# The same insert for a group commit's batch, one array per column (PostgreSQL): one statement of constant text
# for any number of rows, so it is prepared once per connection and a batch costs one round trip.
INSERT_EVENTS = (
    "INSERT INTO access_downloadevent "
    "(created_at, release_id, file_id, revision_id, user_id, token_id, grant_id, via, manifest_format, ip) "
    "SELECT * FROM unnest(%s::timestamptz[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], "
    "%s::bigint[], %s::bigint[], %s::varchar[], %s::varchar[], %s::inet[])"
)


def record(
    *,
    release,
    via: str,
    revision_id: int | None,
    user_id: int | None,
    token_id: int | None,
    grant_id: int | None,
    ip: str | None,
    file_id: int | None = None,
    manifest_format: str = "",
    when: datetime | None = None,
) -> None:
    """Record one allowed download (a file, or a manifest when `file_id` is None) of `revision_id`."""
    metrics.DOWNLOADS.labels(via, release.repo_id).inc()
    if (
        user_id is None
        and file_id is not None
        and not release.is_gated
        and count_open_download(file_id, release.pk, ip)
    ):
        return
    params = [
        when or timezone.now(),
        release.pk,
        file_id,
        revision_id,
        user_id,
        token_id,
        grant_id,
        via,
        manifest_format,
        ip,
    ]
    if groupcommit.write(INSERT_EVENTS, params):
        return
    if connection.vendor == "postgresql":
        # A server-side prepared statement (Django's cursors bind on the client, which cannot prepare): PostgreSQL
        # parses and plans it once per connection, about a fifth of an insert's cost on both sides.
        connection.ensure_connection()
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(INSERT_EVENT, params, prepare=True)
    else:
        with connection.cursor() as cursor:
            cursor.execute(INSERT_EVENT, params)
