"""Grant issuance through a real Celery worker and a real Redis broker (no eager mode), and its faults."""

import hashlib
import io

import psycopg
import pytest
import requests
from django.core.management import call_command
from django.db import connection

from access import services
from access.models import Grant, ModelRelease, OutboundEmail
from tests.factories import AccessRequestFactory
from tests.support.auth import login_recently
from tests.support.processes import CeleryWorker, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def opt_175b(settings):
    call_command("load_demo_catalog", "--size", "64", "--only", "facebook/opt-175b", stdout=io.StringIO())
    return ModelRelease.objects.get(repo_id="facebook/opt-175b")


@pytest.fixture
def gated(settings):
    """A small gated release of the demo catalog: the fault tests are about the worker, not the file count."""
    call_command("load_demo_catalog", "--size", "64", "--only", "facebook/opt-66b", stdout=io.StringIO())
    return ModelRelease.objects.get(repo_id="facebook/opt-66b")


def approve(request, reviewer):
    enqueued = services.Enqueued()
    services.request_approve(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True),
        access_request=request,
        enqueued=enqueued,
    )
    return enqueued


def grant_emails(grant):
    return OutboundEmail.objects.filter(dedupe_key=f"grant-issued:{grant.pk}").count()


def check_batch_downloads(grant, *, every: int = 1):
    """Fetch the batch's URLs (every `every`-th, first and last included) and check each body's SHA-256."""
    batch = grant.batches.get(status="ready")
    assert len(batch.urls) == 992
    assert sorted(e["path"] for e in batch.urls) == sorted(grant.release.files.values_list("path", flat=True))
    expected = dict(grant.release.files.values_list("path", "sha256"))
    fetched = batch.urls[::every] + ([batch.urls[-1]] if every > 1 else [])
    with requests.Session() as http:
        for entry in fetched:
            response = http.get(entry["url"], timeout=10)
            assert response.status_code == 200, entry["url"]
            assert hashlib.sha256(response.content).hexdigest() == expected[entry["path"]] == entry["sha256"]


@pytest.mark.parametrize("backend", ["local_storage", "s3_storage"])
def test_approval_issues_one_grant_with_992_working_urls_and_one_email(request, backend, worker_env, reviewer):
    request.getfixturevalue(backend)
    worker_env["STORAGE_BACKEND"] = "local" if backend == "local_storage" else "s3"
    if backend == "s3_storage":
        from django.conf import settings

        worker_env.update(
            S3_BUCKET=settings.S3_BUCKET,
            S3_ENDPOINT_URL=settings.S3_ENDPOINT_URL,
            S3_ACCESS_KEY_ID=settings.S3_ACCESS_KEY_ID,
            S3_SECRET_ACCESS_KEY=settings.S3_SECRET_ACCESS_KEY,
            S3_REGION=settings.S3_REGION,
            S3_ADDRESSING_STYLE="path",
        )
    release = request.getfixturevalue("opt_175b")
    worker = CeleryWorker(worker_env).start()
    try:
        access_request = AccessRequestFactory(release=release)
        assert approve(access_request, reviewer).ok is True
        grant = wait_until(lambda: Grant.objects.filter(request=access_request).first(), timeout=20)
        wait_until(lambda: grant_emails(grant) == 1, timeout=20)
    finally:
        worker.stop()
    # S3 URLs all go to the real S3 server, which checks each signature; the portal's own file view is the same
    # code for every file, so a spread of them (one in 31, the last included) stands for the batch there.
    check_batch_downloads(grant, every=1 if backend == "s3_storage" else 31)
    assert Grant.objects.filter(request=access_request).count() == 1
    mails = list((worker_env_path(worker_env) / "mail").glob("*.log"))
    body = "".join(p.read_text() for p in mails)
    assert f"/grants/{grant.public_id}/" in body
    assert "X-Amz-Signature" not in body and "/storage/" not in body


def worker_env_path(env):
    from pathlib import Path

    return Path(env["PORTAL_VAR_DIR"])


def test_running_grant_issue_twice_yields_one_grant_and_one_email(local_storage, gated, celery_worker, reviewer):
    from access import tasks

    access_request = AccessRequestFactory(release=gated)
    approve(access_request, reviewer)
    tasks.grant_issue.apply_async(args=(access_request.pk,))
    tasks.grant_issue.apply_async(args=(access_request.pk,))
    grant = wait_until(lambda: Grant.objects.filter(request=access_request).first())
    wait_until(lambda: celery_worker.output().count("succeeded") >= 3, timeout=30)
    assert Grant.objects.filter(request=access_request).count() == 1
    assert grant_emails(grant) == 1
    assert grant.batches.count() == 1


def test_an_approval_while_redis_is_down_is_kept_and_issued_when_it_returns(
    client, local_storage, gated, worker_env, celery_broker, reviewer
):
    access_request = AccessRequestFactory(release=gated)
    celery_broker.stop()
    login_recently(client, reviewer)
    response = client.post(f"/review/requests/{access_request.public_id}/", {"action": "approve"}, follow=True)
    assert "the grant will be issued as soon as it is back" in response.content.decode()
    access_request.refresh_from_db()
    assert access_request.status == "approved"
    assert not Grant.objects.exists()
    celery_broker.start()
    worker = CeleryWorker(
        {**worker_env, "GRANT_RECONCILE_SECONDS": "1", "GRANT_RECONCILE_AFTER_SECONDS": "0"}, beat=True
    ).start()
    try:
        grant = wait_until(lambda: Grant.objects.filter(request=access_request).first(), timeout=30)
        wait_until(lambda: grant_emails(grant) == 1, timeout=20)
        import time

        time.sleep(2.5)  # a few more reconcile rounds must not issue again
    finally:
        worker.stop()
    assert Grant.objects.count() == 1 and grant_emails(grant) == 1


def test_a_worker_killed_in_the_middle_of_grant_issue_leaves_one_grant_and_one_email(
    local_storage, gated, worker_env, reviewer
):
    access_request = AccessRequestFactory(release=gated)
    approve(access_request, reviewer)  # the message waits in Redis: no worker yet
    env = {**worker_env, "CELERY_VISIBILITY_TIMEOUT": "3"}
    db = connection.settings_dict
    # Hold the request's row lock so the worker's grant_issue blocks inside its transaction, then kill it there.
    with psycopg.connect(host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"]) as lock:
        lock.execute("SELECT id FROM access_accessrequest WHERE id = %s FOR UPDATE", (access_request.pk,))
        worker = CeleryWorker(env).start()
        wait_until(lambda: "access.tasks.grant_issue" in worker.output() and "received" in worker.output())
        worker.kill()
        lock.rollback()
    assert not Grant.objects.exists()
    worker = CeleryWorker(env).start()
    try:
        grant = wait_until(lambda: Grant.objects.filter(request=access_request).first(), timeout=30)
        wait_until(lambda: grant_emails(grant) == 1, timeout=20)
    finally:
        worker.stop()
    assert Grant.objects.count() == 1 and grant_emails(grant) == 1
