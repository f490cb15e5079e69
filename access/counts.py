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

What a release page shows is downloads that mean something: one per person (signed in or by token) or anonymous
address, per release and day, whatever the tool and however many files. People are counted from their download
events; anonymous addresses are never stored: each process adds them to a Redis HyperLogLog per release and UTC
day with the same send (one PFADD per key in the pipeline), and the flush copies each day's estimate
(PFCOUNT, about 1% off) into `DownloadVisitors`, replacing the last one, so flushing again changes nothing.
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

from .models import (
    DownloadCount,
    DownloadCountBatch,
    DownloadDay,
    DownloadEvent,
    DownloadVisitors,
    ModelFile,
    ModelRelease,
)
from .redisconn import redis_key, shared_redis
from .taskbase import portal_task

log = logging.getLogger(__name__)

LIVE = "downloads:live:"
BATCH = "downloads:batch:"
VISITORS = "downloads:visitors:"
# A day's HyperLogLog outlives its day long enough for the flushes after midnight to copy its last estimate.
VISITORS_TTL = 3 * 86400


def _hour(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%d%H")


class _Pending:
    """This process's counts not yet in Redis, and the thread that sends them."""

    def __init__(self, interval: float):
        self.interval = interval
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.counts: dict[tuple[str, int], int] = {}
        self.addresses: dict[tuple[str, int], set[str]] = {}  # (UTC day, release id) -> anonymous addresses
        self.failing = False  # the last send failed: callers log rows until one succeeds
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name="download-counts", daemon=True)
        self.thread.start()

    def add(self, file_id: int, release_id: int | None = None, ip: str | None = None) -> None:
        hour = _hour()
        key = (hour, file_id)
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1
            if release_id is not None and ip:
                self.addresses.setdefault((hour[:8], release_id), set()).add(ip)

    def send(self) -> None:
        with self.lock:
            counts, self.counts = self.counts, {}
            addresses, self.addresses = self.addresses, {}
        if not counts and not addresses:
            return
        client = shared_redis()
        try:
            if client is None:
                raise redis.ConnectionError("no Redis to count in")
            with client.pipeline(transaction=False) as pipe:
                for (hour, file_id), n in counts.items():
                    pipe.execute_command("HINCRBY", redis_key(LIVE + hour), file_id, n)
                _add_addresses(pipe, addresses)
                pipe.execute()
        except redis.RedisError as exc:
            with self.lock:  # kept for the next send; newer counts of the same key are added on top
                for key, n in counts.items():
                    self.counts[key] = self.counts.get(key, 0) + n
                for key, ips in addresses.items():
                    self.addresses.setdefault(key, set()).update(ips)
            if not self.failing:
                log.warning("counted downloads not sent to Redis (%d kept): %s", sum(counts.values()), exc)
            self.failing = True
        else:
            self.failing = False

    def _run(self) -> None:
        while not self.wake.wait(self.interval):
            self.send()


def _add_addresses(pipe, addresses: dict[tuple[str, int], set[str]]) -> None:
    for (day, release_id), ips in addresses.items():
        key = redis_key(f"{VISITORS}{day}:{release_id}")
        pipe.execute_command("PFADD", key, *ips)
        pipe.execute_command("EXPIRE", key, VISITORS_TTL)


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


def count_open_download(file_id: int, release_id: int | None = None, ip: str | None = None) -> bool:
    """Count one anonymous download (and its address among the release's visitors of the day); False when there
    is no Redis to count in (the caller records a row)."""
    client = shared_redis()
    if client is None:
        return False
    if settings.OPEN_COUNT_FLUSH_SECONDS > 0:
        pending = _buffer()
        if pending.failing:
            return False
        pending.add(file_id, release_id, ip)
        return True
    hour = _hour()
    try:
        with client.pipeline(transaction=False) as pipe:
            pipe.execute_command("HINCRBY", redis_key(LIVE + hour), file_id, 1)
            if release_id is not None and ip:
                _add_addresses(pipe, {(hour[:8], release_id): {ip}})
            pipe.execute()
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
    _flush_visitors(client, prefix)
    return added


def _flush_visitors(client, prefix: str) -> None:
    """Copy each release's and day's estimate of anonymous addresses into DownloadVisitors (replacing it)."""
    keys = [raw.decode() for raw in client.scan_iter(match=redis_key(VISITORS + "*"))]
    if not keys:
        return
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.execute_command("PFCOUNT", key)
        estimates = pipe.execute()
    rows = {}
    for key, n in zip(keys, estimates, strict=True):
        day, release_id = key.removeprefix(prefix).removeprefix(VISITORS).split(":")
        rows[(datetime.strptime(day, "%Y%m%d").date(), int(release_id))] = int(n)
    known = set(ModelRelease.objects.filter(pk__in={r for _, r in rows}).values_list("pk", flat=True))
    DownloadVisitors.objects.bulk_create(
        [DownloadVisitors(day=day, release_id=r, addresses=n) for (day, r), n in rows.items() if r in known],
        update_conflicts=True,
        unique_fields=["release", "day"],
        update_fields=["addresses"],
    )


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
    """Downloads of a release over the last `days` UTC days (today included), one per person or anonymous address
    and day, whatever the channel or the number of files: people from their events, anonymous addresses from the
    day's estimate (and from the rows logged while Redis did not answer)."""
    first = datetime.now(UTC).date() - timedelta(days=days - 1)
    since = datetime.combine(first, time.min, tzinfo=UTC)
    events = DownloadEvent.objects.filter(release=release, created_at__gte=since).annotate(
        day=TruncDate("created_at", tzinfo=UTC)
    )
    people = events.filter(user__isnull=False).values("day", "user_id").distinct().count()
    logged = events.filter(user__isnull=True, ip__isnull=False).values("day", "ip").distinct().count()
    counted = DownloadVisitors.objects.filter(release=release, day__gte=first).aggregate(n=Sum("addresses"))["n"]
    return people + logged + (counted or 0)


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
