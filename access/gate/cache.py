"""The loader's store: a per-process cache of the gate's facts, tagged with a version that lives in Redis.

Used by access.gate.loader only. Each web process keeps what it has read under the current version; a write to
any table the gate reads publishes a new version once its transaction commits (access.gate.loader watches the
SQL), so the next request on every instance reads the database again: nothing is trusted for a period of time,
only for as long as nothing changed. Without a shared Redis (the dev default `locmem`, or Redis unreachable)
nothing is cached at all. Outside requests (tasks, commands, shells) nothing is cached either.
"""

from __future__ import annotations

import logging
import secrets
import threading

import redis
from django.db import connection, transaction

from ..redisconn import redis_key, shared_redis

log = logging.getLogger(__name__)

VERSION_KEY = "access:decision-version"
MAX_ENTRIES = 50_000  # a few MB; cleared as a whole when full (the hot set refills in one request each)
_UNREAD = object()

_request = threading.local()


class RequestScope:
    """Middleware: the version is read at most once per request, and nothing is cached outside requests."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        _request.version = _UNREAD
        _request.dirty = False
        try:
            return self.get_response(request)
        finally:
            _request.version = None
            _request.dirty = False


def current_version() -> str | None:
    """The facts' version for this request, read from Redis at most once per request (None: do not cache)."""
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


def written() -> None:
    """A table the gate reads was written. This process forgets what it cached at once, caches nothing more for
    the rest of this request (it may read what it has not committed), and every process forgets once the
    transaction commits: a new version is published then (or now, outside a transaction). Other processes
    cannot see the change before the commit, so publishing earlier would tell them nothing."""
    _entries.clear()
    if getattr(_request, "version", None) is not None:
        _request.dirty = True
    if not connection.in_atomic_block:
        publish()
    elif not any(callback is publish for _sids, callback, _robust in connection.run_on_commit):
        transaction.on_commit(publish)


def publish() -> None:
    """Publish a new version. If Redis cannot be told, this process's entries are dropped and every process
    reads the database while Redis does not answer (no version, no caching)."""
    _entries.clear()
    client = shared_redis()
    if client is not None:
        try:
            client.set(redis_key(VERSION_KEY), secrets.token_hex(8))
        except redis.RedisError as exc:
            log.error("could not publish a change of the gate's facts: %s", exc)
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
    if value is None or getattr(_request, "dirty", False):
        return
    version = current_version()
    if version is None:
        return
    if len(_entries) >= MAX_ENTRIES:
        _entries.clear()
    _entries[key] = (version, value)


def clear() -> None:
    _entries.clear()
    shared_redis.cache_clear()
