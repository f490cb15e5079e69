"""Counted downloads: anonymous fetches of open releases, per file and hour, through Redis into PostgreSQL.

Each web process adds its counts up in memory and sends them to a Redis hash per hour every
OPEN_COUNT_FLUSH_SECONDS (1 s) in one pipelined round trip, so an anonymous redirect makes no Redis call of its
own; a process that stops normally (SIGTERM, gunicorn's graceful restart) sends what it holds on its way out.
A process killed outright loses at most its last second of counts; OPEN_COUNT_FLUSH_SECONDS=0 sends each count
before its redirect instead (nothing lost, one more round trip per download). When Redis does not answer, the
counts stay in the process and go with the next send, and downloads are logged as rows until it answers again.
Every minute beat moves the hashes into `DownloadCount`: a hash is renamed to a batch key first (new counts go
on in a fresh hash), added in one transaction that also records the batch's name, then deleted, so a flush that
dies at any point and runs again counts nothing twice. What Redis holds between flushes (at most a minute of
counts) is lost only if Redis itself loses data.
"""

from __future__ import annotations

import atexit
import logging
import os
import secrets
import threading
from datetime import UTC, date, datetime, time, timedelta

import redis
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Max, Q, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from .models import DownloadCount, DownloadCountBatch, DownloadDay, DownloadEvent, ModelFile, ModelRelease
from .redisconn import redis_key, shared_redis
from .taskbase import portal_task

log = logging.getLogger(__name__)

LIVE = "downloads:live:"
BATCH = "downloads:batch:"


def _hour(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%d%H")


class _Pending:
    """This process's counts not yet in Redis, and the thread that sends them."""

    def __init__(self, interval: float):
        self.interval = interval
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.counts: dict[tuple[str, int], int] = {}
        self.failing = False  # the last send failed: callers log rows until one succeeds
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name="download-counts", daemon=True)
        self.thread.start()

    def add(self, file_id: int) -> None:
        key = (_hour(), file_id)
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1

    def send(self) -> None:
        with self.lock:
            counts, self.counts = self.counts, {}
        if not counts:
            return
        client = shared_redis()
        try:
            if client is None:
                raise redis.ConnectionError("no Redis to count in")
            with client.pipeline(transaction=False) as pipe:
                for (hour, file_id), n in counts.items():
                    pipe.execute_command("HINCRBY", redis_key(LIVE + hour), file_id, n)
                pipe.execute()
        except redis.RedisError as exc:
            with self.lock:  # kept for the next send; newer counts of the same key are added on top
                for key, n in counts.items():
                    self.counts[key] = self.counts.get(key, 0) + n
            if not self.failing:
                log.warning("counted downloads not sent to Redis (%d kept): %s", sum(counts.values()), exc)
            self.failing = True
        else:
            self.failing = False

    def _run(self) -> None:
        while not self.wake.wait(self.interval):
            self.send()


_pending: _Pending | None = None
_pending_lock = threading.Lock()


def _buffer() -> _Pending:
    global _pending
    pending = _pending
    if pending is None or pending.pid != os.getpid():  # a forked child sends its own
        with _pending_lock:
            pending = _pending
            if pending is None or pending.pid != os.getpid():
                pending = _pending = _Pending(settings.OPEN_COUNT_FLUSH_SECONDS)
    return pending


def send_pending() -> None:
    """Send this process's counts to Redis now (at exit, and before a flush reads Redis)."""
    pending = _pending
    if pending is not None and pending.pid == os.getpid():
        pending.send()


atexit.register(send_pending)


def count_open_download(file_id: int) -> bool:
    """Count one anonymous download; False when there is no Redis to count in (the caller records a row)."""
    client = shared_redis()
    if client is None:
        return False
    if settings.OPEN_COUNT_FLUSH_SECONDS > 0:
        pending = _buffer()
        if pending.failing:
            return False
        pending.add(file_id)
        return True
    try:
        client.execute_command("HINCRBY", redis_key(LIVE + _hour()), file_id, 1)
    except redis.RedisError:
        return False
    return True


def download_counts_flush() -> int:
    """Move every counter hash into DownloadCount; returns how many downloads were added."""
    send_pending()
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
