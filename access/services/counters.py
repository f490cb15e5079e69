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
from datetime import UTC, date, datetime, time, timedelta

import redis
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Max, Q, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from ..cache import redis_key, shared_redis
from ..models import DownloadCount, DownloadCountBatch, DownloadDay, DownloadEvent, ModelFile, ModelRelease
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
        client.execute_command("HINCRBY", redis_key(LIVE + _hour()), file_id, 1)
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


def _day_range(start: date, end: date) -> tuple[datetime, datetime]:
    tz = timezone.get_current_timezone()
    return (
        timezone.make_aware(datetime.combine(start, time.min), tz),
        timezone.make_aware(datetime.combine(end, time.max), tz),
    )


def download_days_rollup(*, through: date | None = None) -> int:
    """Sum the download events of every closed day not summed yet into DownloadDay (per release and for all
    releases together, zero days included), the last two days summed again for events written around
    midnight. Idempotent: a day is replaced whole. Returns how many days it summed."""
    yesterday = timezone.localdate() - timedelta(days=1)
    through = min(through or yesterday, yesterday)
    last = DownloadDay.objects.filter(release__isnull=True).aggregate(last=Max("day"))["last"]
    if last is not None:
        start = last - timedelta(days=1)
    else:
        first = DownloadEvent.objects.order_by("created_at").values_list("created_at", flat=True).first()
        if first is None:
            return 0
        start = timezone.localdate(first)
    if start > through:
        return 0
    since, until = _day_range(start, through)
    events = DownloadEvent.objects.filter(created_at__range=(since, until)).annotate(day=TruncDate("created_at"))
    sums = {
        "researchers": Count("user", distinct=True),
        "files": Count("id", filter=Q(file__isnull=False)),
        "manifests": Count("id", filter=Q(file__isnull=True)),
        "bytes": Coalesce(Sum("file__size"), 0),
    }
    now = timezone.now()
    days = [start + timedelta(days=i) for i in range((through - start).days + 1)]
    rows = {(day, None): DownloadDay(day=day, release=None, computed_at=now) for day in days}
    for row in events.values("day").annotate(**sums):
        for name in sums:
            setattr(rows[(row["day"], None)], name, row[name])
    for row in events.values("day", "release_id").annotate(**sums):
        rows[(row["day"], row["release_id"])] = DownloadDay(
            day=row["day"], release_id=row["release_id"], computed_at=now, **{name: row[name] for name in sums}
        )
    with transaction.atomic():
        DownloadDay.objects.filter(day__range=(start, through)).delete()
        DownloadDay.objects.bulk_create(rows.values(), batch_size=2000)
    return len(days)


@portal_task("access.tasks.download_days_rollup")
def download_days_rollup_task() -> int:
    return download_days_rollup()
