"""Counted downloads: anonymous fetches of open releases, per file and hour, through Redis into PostgreSQL.

Each such redirect adds one to a Redis hash for its hour before the redirect is sent (a web process killed
mid-request loses nothing already counted). Every minute beat moves the hashes into `DownloadCount`: a hash is
renamed to a batch key first (new counts go on in a fresh hash), added in one transaction that also records the
batch's name, then deleted, so a flush that dies at any point and runs again counts nothing twice. What Redis
holds between flushes (at most a minute of counts) is lost only if Redis itself loses data.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime, timedelta

import redis
from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone

from ..cache import redis_key, shared_redis
from ..models import DownloadCount, DownloadCountBatch, DownloadEvent, ModelFile, ModelRelease
from ..taskbase import portal_task

log = logging.getLogger(__name__)

LIVE = "downloads:live:"
BATCH = "downloads:batch:"


def _hour(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%d%H")


def count_open_download(file_id: int) -> bool:
    """Count one anonymous download; False when there is no Redis to count in (the caller records a row)."""
    client = shared_redis()
    if client is None:
        return False
    try:
        client.hincrby(redis_key(LIVE + _hour()), str(file_id), 1)
    except redis.RedisError:
        return False
    return True


def download_counts_flush() -> int:
    """Move every counter hash into DownloadCount; returns how many downloads were added."""
    client = shared_redis()
    if client is None:
        return 0
    added = 0
    prefix = redis_key("")
    for raw in list(client.scan_iter(match=redis_key(LIVE + "*"))):
        live = raw.decode()
        hour = live.removeprefix(prefix).removeprefix(LIVE)
        batch = redis_key(f"{BATCH}{hour}:{secrets.token_hex(6)}")
        try:
            client.rename(live, batch)
        except redis.ResponseError:
            continue  # another flush took it
    for raw in list(client.scan_iter(match=redis_key(BATCH + "*"))):
        batch = raw.decode()
        added += _flush_batch(client, batch, batch.removeprefix(prefix).removeprefix(BATCH).split(":")[0])
    return added


def _flush_batch(client, batch: str, hour: str) -> int:
    counts = {int(k): int(v) for k, v in client.hgetall(batch).items()}
    start = datetime.strptime(hour, "%Y%m%d%H").replace(tzinfo=UTC)
    known = set(ModelFile.objects.filter(pk__in=counts).values_list("pk", flat=True))
    try:
        with transaction.atomic():
            DownloadCountBatch.objects.create(batch=batch)
            for file_id, n in counts.items():
                if file_id not in known:
                    continue
                updated = DownloadCount.objects.filter(file_id=file_id, hour=start).update(count=F("count") + n)
                if not updated:
                    DownloadCount.objects.create(file_id=file_id, hour=start, count=n)
    except IntegrityError:
        pass  # this batch was added before; only the delete was missing
    else:
        log.info("added %d counted downloads of %s", sum(counts.values()), hour)
    client.delete(batch)
    return sum(counts.values())


@portal_task("access.tasks.download_counts_flush")
def download_counts_flush_task() -> int:
    return download_counts_flush()


def release_downloads(*, release: ModelRelease, days: int = 30) -> int:
    """Downloads of a release's files over the last `days`: recorded ones and counted ones."""
    since = timezone.now() - timedelta(days=days)
    recorded = DownloadEvent.objects.filter(release=release, file__isnull=False, created_at__gte=since).count()
    counted = DownloadCount.objects.filter(file__release=release, hour__gte=since).aggregate(n=Sum("count"))["n"]
    return recorded + (counted or 0)
