"""Anonymous downloads of open releases are added up in each web process and sent to Redis together
(access.counts): nothing is lost when the process stops normally, at most the last interval when it
is killed, and while Redis does not answer the counts wait and downloads are logged as rows."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta

import pytest
import redis
import requests
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from access import counts as counters
from access.gate import loader as decision_cache
from access.models import DownloadCount, DownloadEvent, DownloadVisitors
from access.redisconn import redis_key, shared_redis
from tests.factories import ReleaseFactory, add_file, token_secret
from tests.support.processes import WebServer

FILE = "/api/v1/models/facebook/opt-125m/files/pytorch_model.bin"


@pytest.fixture
def open_release(local_storage):
    release = ReleaseFactory(repo_id="facebook/opt-125m", access="open")
    add_file(release, "pytorch_model.bin", b"open weights")
    return release


@pytest.fixture
def buffered(settings):
    """A fresh in-process buffer that only sends when told (or at the interval the test sets)."""

    def make(interval: float):
        settings.OPEN_COUNT_FLUSH_SECONDS = interval
        if counters._pending is not None:
            counters._pending.wake.set()
        counters._pending = None

    make(3600)
    yield make
    make(3600)


def live_counts() -> int:
    client = shared_redis()
    return sum(int(v) for key in client.scan_iter(match=redis_key(counters.LIVE + "*")) for v in client.hvals(key))


@pytest.mark.django_db
def test_counts_wait_in_the_process_and_go_to_redis_together(open_release, buffered):
    counters.download_counts_flush()
    api = APIClient()
    for _ in range(3):
        assert api.get(FILE).status_code == 302
    assert live_counts() == 0  # held in this process
    counters.send_pending()
    assert live_counts() == 3
    assert counters.download_counts_flush() == 3
    assert DownloadCount.objects.get().count == 3
    assert DownloadEvent.objects.count() == 0


@pytest.mark.django_db
def test_the_sending_thread_sends_at_its_interval(open_release, buffered):
    counters.download_counts_flush()
    buffered(0.2)
    APIClient().get(FILE)
    deadline = time.monotonic() + 5
    while live_counts() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live_counts() == 1


@pytest.mark.django_db
def test_with_no_interval_each_count_is_sent_before_its_redirect(open_release, buffered):
    counters.download_counts_flush()
    buffered(0)
    APIClient().get(FILE)
    assert counters._pending is None
    assert live_counts() == 1


@pytest.mark.django_db
def test_counts_wait_for_redis_and_downloads_are_logged_meanwhile(open_release, buffered, monkeypatch):
    counters.download_counts_flush()
    api = APIClient()
    api.get(FILE)
    api.get(FILE)

    def unreachable(self):
        raise redis.ConnectionError("Redis is down")

    with monkeypatch.context() as patch:
        patch.setattr(redis.client.Pipeline, "execute", unreachable)
        counters.send_pending()  # fails: the two counts stay
        assert api.get(FILE).status_code == 302
        assert DownloadEvent.objects.filter(user=None, file__path="pytorch_model.bin").count() == 1
    counters.send_pending()  # Redis answers again
    assert live_counts() == 2
    api.get(FILE)  # counted again, not logged
    assert DownloadEvent.objects.count() == 1
    assert counters.download_counts_flush() == 3


@pytest.fixture
def web_env(open_release, settings):
    db = connection.settings_dict
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        STORAGE_BACKEND="local",
        LOCAL_STORAGE_DIR=str(settings.LOCAL_STORAGE_DIR),
        ALLOWED_HOSTS="127.0.0.1,localhost",
    )
    decision_cache.forget()
    counters.download_counts_flush()
    return env


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_web_process_that_stops_sends_its_counts(web_env, tmp_path):
    web = WebServer({**web_env, "OPEN_COUNT_FLUSH_SECONDS": "3600"}, workers=2, log_path=tmp_path / "web.log").start()
    try:
        with requests.Session() as session:
            for _ in range(5):
                assert session.get(web.url + FILE, allow_redirects=False).status_code == 302
        assert live_counts() == 0
    finally:
        web.stop()  # SIGTERM: gunicorn's graceful stop
    assert live_counts() == 5, web.output()
    assert counters.download_counts_flush() == 5


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_killed_web_process_loses_at_most_its_last_interval(web_env, tmp_path):
    web = WebServer({**web_env, "OPEN_COUNT_FLUSH_SECONDS": "0.2"}, log_path=tmp_path / "web.log").start()
    try:
        with requests.Session() as session:
            for _ in range(4):
                assert session.get(web.url + FILE, allow_redirects=False).status_code == 302
        time.sleep(1.0)  # more than the interval: everything answered so far has been sent
        os.killpg(web.process.pid, signal.SIGKILL)
        web.process.wait(timeout=10)
    finally:
        web.stop()
    assert counters.download_counts_flush() == 4


@pytest.fixture
def two_files(open_release):
    add_file(open_release, "config.json", b"{}")
    return open_release


@pytest.mark.django_db
def test_an_address_counts_once_a_day_however_many_files_it_fetches(two_files, buffered):
    counters.download_counts_flush()
    shared_redis().delete(*shared_redis().keys(redis_key(counters.VISITORS + "*")) or ["none"])
    api = APIClient(REMOTE_ADDR="198.51.100.7")
    for _ in range(3):
        assert api.get(FILE).status_code == 302
        assert api.get("/api/v1/models/facebook/opt-125m/files/config.json").status_code == 302
    assert api.head("/facebook/opt-125m/resolve/main/config.json").status_code in (200, 302)
    APIClient(REMOTE_ADDR="203.0.113.9").get(FILE)
    assert counters.download_counts_flush() >= 8  # the dashboard keeps every file
    assert counters.release_downloads(release=two_files) == 2
    # The addresses are not stored, only their number; flushing again changes nothing.
    visitors = DownloadVisitors.objects.get(release=two_files)
    assert visitors.addresses == 2 and not hasattr(visitors, "ip")
    assert counters.download_counts_flush() == 0
    assert counters.release_downloads(release=two_files) == 2
    page = APIClient().get("/models/facebook/opt-125m/").content.decode()
    assert "2 downloads in the last 30 days, one per person or address a day" in page


@pytest.mark.django_db
def test_the_addresses_go_with_the_counts_in_one_send(two_files, buffered, monkeypatch):
    """The redirect itself makes no Redis call: the address waits in the process with its count."""
    counters.download_counts_flush()
    calls = []
    original = redis.Redis.execute_command

    def watched(self, *args, **kwargs):
        calls.append(args[0])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "execute_command", watched)
    APIClient(REMOTE_ADDR="198.51.100.8").get(FILE)
    assert not {"HINCRBY", "PFADD"} & set(calls)
    monkeypatch.undo()
    assert counters._pending.addresses
    counters.send_pending()
    assert counters.download_counts_flush() == 1
    assert counters.release_downloads(release=two_files) == 1


@pytest.mark.django_db
def test_a_person_counts_once_a_day_whatever_the_channel(two_files, alice, buffered):
    counters.download_counts_flush()
    api = APIClient(REMOTE_ADDR="198.51.100.9")
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token_secret(alice)}")
    assert api.get("/api/v1/models/facebook/opt-125m/manifest?format=json").status_code == 200
    assert api.get(FILE).status_code == 302
    assert api.get("/api/v1/models/facebook/opt-125m/files/config.json").status_code == 302
    assert api.get("/facebook/opt-125m/resolve/main/config.json").status_code == 302
    assert DownloadEvent.objects.filter(user=alice).count() == 4
    counters.download_counts_flush()
    assert counters.release_downloads(release=two_files) == 1
    # A day earlier is another download; a month ago is outside the window.
    for days in (1, 31):
        DownloadEvent.objects.create(
            release=two_files, user=alice, via="api", created_at=timezone.now() - timedelta(days=days)
        )
    assert counters.release_downloads(release=two_files) == 2


@pytest.mark.django_db
def test_rows_logged_while_redis_is_away_count_one_per_address(two_files, buffered, monkeypatch):
    counters.download_counts_flush()
    monkeypatch.setattr(counters, "count_open_download", lambda *a: False)
    monkeypatch.setattr("access.gate.recorder.count_open_download", lambda *a: False)
    api = APIClient(REMOTE_ADDR="198.51.100.10")
    api.get(FILE)
    api.get("/api/v1/models/facebook/opt-125m/files/config.json")
    assert DownloadEvent.objects.filter(user=None).count() == 2
    assert counters.release_downloads(release=two_files) == 1
