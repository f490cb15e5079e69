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
from django.core.cache.backends.redis import RedisCache
from rest_framework import throttling

from ..http import client_ip


@cache
def parse_rate(rate: str) -> tuple[int, int]:
    """'6000/hour' → (6000, 3600); the period may be s, m, h, d or any word starting with one."""
    count, period = rate.split("/")
    return int(count), {"s": 1, "m": 60, "h": 3600, "d": 86400}[period[0]]


def _cache():
    return caches["throttle"] if "throttle" in settings.CACHES else caches["default"]


def _count(key: str, ttl: int) -> int:
    store = _cache()
    if isinstance(store, RedisCache):
        full_key = store.make_and_validate_key(key)
        client = store._cache.get_client(full_key, write=True)
        pipe = client.pipeline(transaction=False)
        pipe.incr(full_key)
        pipe.expire(full_key, ttl, nx=True)
        return pipe.execute()[0]
    store.add(key, 0, ttl)
    return store.incr(key)


class WindowRateThrottle(throttling.BaseThrottle):
    scope = ""

    def __init__(self):
        self.retry_after: float | None = None

    def ident(self, request) -> str | None:
        raise NotImplementedError

    def allow_request(self, request, view):
        rate = settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_RATES", {}).get(self.scope)
        ident = self.ident(request) if rate else None
        if ident is None:
            return True
        limit, duration = parse_rate(rate)
        now = time.time()
        window = int(now // duration)
        if _count(f"throttle:{self.scope}:{ident}:{window}", duration + 1) <= limit:
            return True
        self.retry_after = (window + 1) * duration - now
        return False

    def wait(self):
        return self.retry_after


class UserRateThrottle(WindowRateThrottle):
    """Per user (a token counts for its user); anonymous callers are left to the IP throttle."""

    scope = "user"

    def ident(self, request):
        return str(request.user.pk) if request.user and request.user.is_authenticated else None


class IpRateThrottle(WindowRateThrottle):
    scope = "ip"

    def ident(self, request):
        # Not DRF's get_ident: without NUM_PROXIES it keys on X-Forwarded-For, which any caller can rotate.
        return client_ip(request)
