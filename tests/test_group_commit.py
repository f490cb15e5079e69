"""Group commit of download events: concurrent requests share commits, nobody is answered before their row is
committed, and a failed commit fails exactly the requests whose rows it held."""

import threading

import pytest
from django.db import IntegrityError, OperationalError, connection, connections, transaction
from django.utils import timezone

from access.gate import groupcommit
from access.gate.recorder import INSERT_EVENTS
from access.models import DownloadEvent
from tests.factories import ReleaseFactory, UserFactory, add_file, grant_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def shared_commits(settings, local_storage):
    settings.DOWNLOAD_EVENT_GROUP_COMMIT = True
    yield
    groupcommit.stop()


@pytest.fixture
def shard(local_storage):
    release = ReleaseFactory(repo_id="facebook/opt-125m")
    return add_file(release, "pytorch_model.bin", b"weights")


def params(shard, ip="192.0.2.1", file_id=None):
    return [
        timezone.now(),
        shard.release_id,
        file_id or shard.pk,
        shard.revision_id,
        None,
        None,
        None,
        "api",
        "",
        ip,
    ]


def committed_elsewhere(ip) -> bool:
    """Whether a row is visible to another connection: committed, not just written."""
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM access_downloadevent WHERE ip = %s", [ip])
            return cursor.fetchone()[0] == 1
    finally:
        other.close()


def write_at_once(rows) -> list[Exception]:
    """Each row written by its own thread, all released together; the errors they raised."""
    start, errors = threading.Barrier(len(rows)), []

    def one(row):
        start.wait()
        try:
            groupcommit.write(INSERT_EVENTS, row)
        except Exception as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=one, args=(row,)) for row in rows]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def transactions_of(release_id) -> int:
    """How many transactions wrote the release's events: rows written by one carry its id (xmin)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(DISTINCT xmin::text) FROM access_downloadevent WHERE release_id = %s", [release_id]
        )
        return cursor.fetchone()[0]


def test_every_write_returns_only_after_its_row_is_committed(shared_commits, shard):
    assert groupcommit.write(INSERT_EVENTS, params(shard, ip="192.0.2.10")) is True
    assert committed_elsewhere("192.0.2.10")


def test_concurrent_requests_share_commits_and_all_rows_land(shared_commits, shard):
    n = 48
    assert not write_at_once([params(shard, ip=f"198.51.100.{i}") for i in range(n)])
    assert DownloadEvent.objects.filter(ip__startswith="198.51.100.").count() == n
    assert transactions_of(shard.release_id) < n  # fewer transactions than rows: shared commits


def test_a_failed_commit_fails_its_request_and_the_writer_recovers(shared_commits, shard):
    with pytest.raises(IntegrityError):
        groupcommit.write(INSERT_EVENTS, params(shard, ip="192.0.2.20", file_id=10**9))  # no such file
    assert not DownloadEvent.objects.filter(ip="192.0.2.20").exists()
    assert groupcommit.write(INSERT_EVENTS, params(shard, ip="192.0.2.21"))
    assert committed_elsewhere("192.0.2.21")


def test_inside_a_transaction_the_caller_inserts_itself(shared_commits, shard):
    with transaction.atomic():
        assert groupcommit.write(INSERT_EVENTS, params(shard)) is False


def test_off_by_setting(settings, shard):
    settings.DOWNLOAD_EVENT_GROUP_COMMIT = False
    assert groupcommit.write(INSERT_EVENTS, params(shard)) is False


def test_a_request_that_waits_too_long_fails_as_a_database_error(shared_commits, shard, monkeypatch):
    blocker = connections.create_connection("default")
    try:
        with blocker.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("LOCK TABLE access_downloadevent IN ACCESS EXCLUSIVE MODE")
            monkeypatch.setattr(groupcommit, "WAIT_SECONDS", 0.5)
            with pytest.raises(OperationalError):
                groupcommit.write(INSERT_EVENTS, params(shard, ip="192.0.2.30"))
            cursor.execute("ROLLBACK")
    finally:
        blocker.close()


def test_one_batch_keeps_every_column_of_every_row(shared_commits, local_storage, reviewer):
    """Rows of one batch go in as one array per column: NULLs beside values, IPv4 beside IPv6, each row intact."""
    gated = ReleaseFactory(repo_id="facebook/opt-175b", access="gated")
    shard = add_file(gated, "checkpoint_last-model_part-0-shard0.pt", b"weights")
    user = UserFactory()
    grant = grant_for(user, gated, reviewer)
    rows = []
    for i in range(24):
        row = params(shard, ip=f"2001:db8::{i:x}" if i % 2 else f"203.0.113.{i}")
        if i % 3 == 0:
            row[4], row[6] = user.pk, grant.pk
        if i % 4 == 0:
            row[9] = None
        rows.append(row)
    assert not write_at_once(rows)
    assert transactions_of(gated.pk) < len(rows)  # the rows did share batches
    landed = {
        (e.created_at, e.user_id, e.grant_id, e.ip, e.via, e.file_id, e.revision_id)
        for e in DownloadEvent.objects.filter(release=shard.release)
    }
    assert landed == {(r[0], r[4], r[6], r[9], r[7], r[2], r[3]) for r in rows}
