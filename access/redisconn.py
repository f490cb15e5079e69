"""One Redis client per process for the portal's own round trips (the API throttle, the gate's input version,
open-download counts), and the helpers they share."""

from __future__ import annotations

import hashlib
from functools import cache

import redis
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache


def cache_alias() -> str:
    return "throttle" if "throttle" in settings.CACHES else "default"


@cache
def shared_redis() -> redis.Redis | None:
    """The process's one client for the throttle cache's Redis (a connection pool shared by all threads), or None
    when that cache is not Redis. Django's cache builds a new client object for every call, which costs more
    than the command itself on the download path."""
    store = caches[cache_alias()]
    if not isinstance(store, RedisCache):
        return None
    location = store._servers[0]
    return redis.Redis.from_url(location, socket_connect_timeout=1, socket_timeout=1, health_check_interval=30)


@cache
def _script_sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()  # noqa: S324 - Redis names scripts by their SHA-1


def run_script(client: redis.Redis, script: str, *, keys: list[str], args: list) -> list:
    """EVALSHA, loading the script when this Redis does not know it yet: one round trip in the steady state.
    redis-py's Script objects do the same through several layers of wrappers that cost more than the command
    on the download path."""
    sha = _script_sha(script)
    try:
        return client.execute_command("EVALSHA", sha, len(keys), *keys, *args)
    except redis.exceptions.NoScriptError:
        client.execute_command("SCRIPT LOAD", script)
        return client.execute_command("EVALSHA", sha, len(keys), *keys, *args)


def redis_key(key: str) -> str:
    """A key in the throttle cache's namespace (its KEY_PREFIX and version), as Django's cache would write it."""
    return caches[cache_alias()].make_key(key)
