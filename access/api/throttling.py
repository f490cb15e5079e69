"""API rate limits: fixed-window counters in Redis (the `throttle` cache when THROTTLE_CACHE_URL is set).

DRF's SimpleRateThrottle keeps the time of every request in the window as one cached list, so a script making
thousands of requests an hour (a 992-file download with retries) would read and rewrite a list of thousands of
entries on each request. A counter per (scope, caller, window) costs one pipelined round trip whatever the rate.
"""

from __future__ import annotations

import time
from functools import cache

from django.conf import settings
from django.core.cache import caches
from rest_framework import throttling

from ..gate import loader
from ..http import client_ip
from ..redisconn import cache_alias, redis_key, run_script, shared_redis


@cache
def parse_rate(rate: str) -> tuple[int, int]:
    """'6000/hour' → (6000, 3600); the period may be s, m, h, d or any word starting with one."""
    count, period = rate.split("/")
    return int(count), {"s": 1, "m": 60, "h": 3600, "d": 86400}[period[0]]


def _store():
    return caches[cache_alias()]


# INCR each counter (giving a new one its window's TTL), then read the download gate's version when asked for:
# one command and one reply, where a pipeline of the same work costs redis-py five of each.
COUNT_SCRIPT = """
local out = {}
for i = 1, #ARGV - 1 do
  local n = redis.call('INCR', KEYS[i])
  if n == 1 then redis.call('EXPIRE', KEYS[i], ARGV[i]) end
  out[i] = n
end
if ARGV[#ARGV] == '1' then out[#ARGV] = redis.call('GET', KEYS[#KEYS]) end
return out
"""


def _count_many(keys: list[tuple[str, int]]) -> list[int]:
    """INCR each (key, ttl) counter, in one round trip on Redis; the window's count for each."""
    client = shared_redis()
    if client is not None:
        read_version = loader.version_wanted()
        results = run_script(
            client,
            COUNT_SCRIPT,
            keys=[redis_key(key) for key, _ in keys] + [redis_key(loader.VERSION_KEY)],
            args=[ttl for _, ttl in keys] + ["1" if read_version else "0"],
        )
        if read_version:
            # The download gate's cache needs this too: one round trip serves both.
            loader.version_seen(results[len(keys)] if len(results) > len(keys) else None)
        return results[: len(keys)]
    store = _store()
    counts = []
    for key, ttl in keys:
        store.add(key, 0, ttl)
        counts.append(store.incr(key))
    return counts


def _windows(request, user_id) -> list[tuple[str, int, int, float]]:
    """(key, ttl, limit, seconds until the window ends) of each limit that applies to this caller now."""
    rates = settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_RATES", {})
    checks = []
    if rates.get("user") and user_id is not None:
        checks.append(("user", str(user_id), rates["user"]))
    # Not DRF's get_ident: without NUM_PROXIES it keys on X-Forwarded-For, which any caller can rotate.
    if rates.get("ip") and (ip := client_ip(request)):
        checks.append(("ip", ip, rates["ip"]))
    now = time.time()
    out = []
    for scope, ident, rate in checks:
        limit, duration = parse_rate(rate)
        window = int(now // duration)
        out.append((f"throttle:{scope}:{ident}:{window}", duration + 1, limit, (window + 1) * duration - now))
    return out


def count_ahead(request, user_id) -> None:
    """Count this request against its limits now (with the gate's version read in the same round trip), for
    ApiRateThrottle to judge later: what lets a token's request make one Redis round trip instead of two."""
    keys = [(key, ttl) for key, ttl, _, _ in _windows(request, user_id)]
    if keys:
        request._throttle_counted = dict(zip((key for key, _ in keys), _count_many(keys), strict=True))


class ApiRateThrottle(throttling.BaseThrottle):
    """Per user (a token counts for its user) and per IP, in fixed windows, checked together."""

    def __init__(self):
        self.retry_after: float | None = None

    def allow_request(self, request, view):
        user_id = request.user.pk if request.user and request.user.is_authenticated else None
        windows = _windows(request, user_id)
        # What authentication counted already (with the user it guessed) is not counted twice.
        done = dict(getattr(request, "_throttle_counted", {}))
        missing = [(key, ttl) for key, ttl, _, _ in windows if key not in done]
        if missing:
            done.update(zip((key for key, _ in missing), _count_many(missing), strict=True))
        counts = [done[key] for key, _, _, _ in windows]
        waits = [wait for count, (_, _, limit, wait) in zip(counts, windows, strict=True) if count > limit]
        if waits:
            self.retry_after = max(waits)
            return False
        return True

    def wait(self):
        return self.retry_after
