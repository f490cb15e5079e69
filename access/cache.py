"""One Redis client per process, and a per-process cache of the download gate's inputs.

The gate's inputs — which user a token belongs to, a release's file rows, a user's active grant — change rarely
and are read on every download. Each web process keeps the rows it has read, tagged with a version that lives in
the shared Redis. Every change that can end an allowance (a revoked token or grant, a disabled account, an
unpublished release, a changed file, a new expiry) stores a new version once its transaction commits, so the next
request on every instance sees the new version and reads the database again: nothing is trusted for a period of
time, only for as long as nothing changed. Only positive lookups are kept (a refusal is always decided afresh),
and without a shared Redis (the dev default `locmem`, or Redis unreachable) nothing is cached at all.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
from functools import cache

import redis
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.db import transaction

log = logging.getLogger(__name__)

VERSION_KEY = "access:decision-version"
MAX_ENTRIES = 50_000  # a few MB; cleared as a whole when full (the hot set refills in one request each)
_UNREAD = object()


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


# --- The version of the decision inputs -----------------------------------------------------------------

_request = threading.local()


class RequestScope:
    """Middleware: the version is read at most once per request, and nothing is cached outside requests (tasks,
    commands and shells always read the database)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        _request.version = _UNREAD
        try:
            return self.get_response(request)
        finally:
            _request.version = None


def current_version() -> str | None:
    """The inputs' version for this request, read from Redis at most once per request (None: do not cache)."""
    version = getattr(_request, "version", None)
    if version is _UNREAD:
        version = _read_version()
        _request.version = version
    return version


def wants_version() -> bool:
    """Whether this request still has to read the version (the throttle pipeline can read it on the way)."""
    return getattr(_request, "version", None) is _UNREAD


def prime_version(value) -> None:
    """The version read by someone else's round trip (the throttle pipeline) for this request."""
    if value is None:
        _request.version = _read_version()  # a fresh Redis: start a version
    else:
        _request.version = value.decode() if isinstance(value, bytes) else value


def _read_version() -> str | None:
    client = shared_redis()
    if client is None:
        return None
    try:
        value = client.get(redis_key(VERSION_KEY))
    except redis.RedisError:
        return None
    if value is None:
        # A fresh (or flushed) Redis: start a version nobody has cached under.
        value = secrets.token_hex(8).encode()
        try:
            client.set(redis_key(VERSION_KEY), value, nx=True)
            value = client.get(redis_key(VERSION_KEY)) or value
        except redis.RedisError:
            return None
    return value.decode()


def changed() -> None:
    """Something the gate decides on changed: publish a new version now and again once the current transaction
    commits. The second is the one that counts (a process reading between the two sees the old rows and caches
    them under the first); the first lets this process's own later reads in the same transaction see the change.
    If Redis cannot be told, this process's entries are dropped and lookups go to the database until it answers
    (no version, no caching)."""
    _bump()
    transaction.on_commit(_bump)


def _bump() -> None:
    _entries.clear()
    client = shared_redis()
    if client is None:
        return
    try:
        client.set(redis_key(VERSION_KEY), secrets.token_hex(8))
    except redis.RedisError as exc:
        log.error("could not publish a decision-input change: %s", exc)
    if getattr(_request, "version", None) is not None:
        _request.version = _UNREAD  # this request reads the new version too


# --- The entries ----------------------------------------------------------------------------------------

_entries: dict = {}


def peek(key):
    """The value cached for key under any version, without reading the version: a guess to be checked."""
    entry = _entries.get(key)
    return None if entry is None else entry[1]


def get(key):
    """The value cached for key under this request's version, or None."""
    version = current_version()
    if version is None:
        return None
    entry = _entries.get(key)
    if entry is None or entry[0] != version:
        return None
    return entry[1]


def put(key, value) -> None:
    version = current_version()
    if version is None or value is None:
        return
    if len(_entries) >= MAX_ENTRIES:
        _entries.clear()
    _entries[key] = (version, value)


def clear() -> None:
    _entries.clear()
    shared_redis.cache_clear()
