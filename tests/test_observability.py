"""/metrics (Prometheus, bearer-token protected, summed across gunicorn workers) and JSON logs whose request id
follows a request into the Celery tasks it enqueued — against live gunicorn and Celery processes."""

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from access import tasks
from access.models import AccessRequest, Grant
from tests.factories import AccessRequestFactory, ReleaseFactory, add_file, grant_for, token_secret
from tests.support.processes import CeleryWorker, WebServer, wait_until

TOKEN = "scrape-me-" + "x" * 20


def samples(text: str) -> dict:
    """{(name, frozenset(labels)): value} of an exposition."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict, name: str, **labels) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def scrape(client) -> dict:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return samples(response.content.decode())


@pytest.fixture
def metrics_on(settings):
    settings.METRICS_TOKEN = TOKEN


@pytest.mark.django_db
def test_without_the_setting_there_is_no_metrics_endpoint(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 404


@pytest.mark.django_db
def test_it_needs_the_bearer_token(client, metrics_on):
    for header in ({}, {"HTTP_AUTHORIZATION": "Bearer wrong"}, {"HTTP_AUTHORIZATION": TOKEN}):
        response = client.get("/metrics", **header)
        assert response.status_code == 401 and response.json()["code"] == "not_authenticated"
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert "portal_" not in response.content.decode()


@pytest.mark.django_db
def test_it_reports_requests_downloads_refusals_grants_and_queue_age(
    client, metrics_on, local_storage, alice, bob, reviewer
):
    gated = ReleaseFactory(repo_id="facebook/opt-175b", access="gated")
    add_file(gated, "config.json", b"{}")
    before = scrape(client)
    grant_for(alice, gated, reviewer)
    AccessRequestFactory(applicant=bob, release=gated)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token_secret(alice)}")
    assert api.get("/api/v1/models/facebook/opt-175b/files/config.json").status_code == 302
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token_secret(bob)}")
    assert api.get("/api/v1/models/facebook/opt-175b/manifest").status_code == 403
    after = scrape(client)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("portal_downloads_total", via="api", release="facebook/opt-175b") == 1
    assert delta("portal_download_refusals_total", code="pending", via="manifest") == 1
    route = {"route": "api-model-file", "method": "GET", "status": "302"}
    assert delta("portal_http_requests_total", **route) == 1
    assert delta("portal_http_request_duration_seconds_count", route="api-model-file", method="GET") == 1
    assert value(after, "portal_access_requests", status="pending") == 1
    assert value(after, "portal_access_requests", status="approved") == 1
    assert value(after, "portal_active_grants", release="facebook/opt-175b") == 1
    assert value(after, "portal_oldest_pending_request_age_seconds") > 0
    assert delta("portal_emails_total", template="grant_issued", outcome="sent") == 1


@pytest.mark.django_db
def test_celery_task_outcomes_and_durations_are_counted(client, metrics_on, gated_release_with_request):
    before = scrape(client)
    tasks.grants_expire.delay()  # eager here: run in this process, with Celery's signals
    after = scrape(client)
    name = "access.tasks.grants_expire"
    assert value(after, "portal_celery_tasks_total", task=name, outcome="success") == (
        value(before, "portal_celery_tasks_total", task=name, outcome="success") + 1
    )
    assert value(after, "portal_celery_task_duration_seconds_count", task=name) >= 1


@pytest.fixture
def gated_release_with_request(db):
    release = ReleaseFactory(access="gated")
    return AccessRequestFactory(release=release)


@pytest.mark.django_db
def test_every_response_names_its_request_id(client):
    given = client.get("/healthz", HTTP_X_REQUEST_ID="lb-1234.abc")
    assert given["X-Request-ID"] == "lb-1234.abc"
    made = client.get("/healthz", HTTP_X_REQUEST_ID="not a\nvalid id")
    assert re.fullmatch(r"[0-9a-f]{32}", made["X-Request-ID"])


# --- Live processes ---------------------------------------------------------------------------------------


def process_env(tmp_path, **extra) -> dict:
    db = connection.settings_dict
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        METRICS_TOKEN=TOKEN,
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"),
        LOG_FORMAT="json",
        PORTAL_VAR_DIR=str(tmp_path / "var"),
        EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
        **extra,
    )
    (tmp_path / "prometheus").mkdir(exist_ok=True)
    return env


def live_scrape(url) -> dict:
    response = requests.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert response.status_code == 200
    return samples(response.text)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_gunicorn_workers_report_the_same_sums(tmp_path):
    ReleaseFactory(repo_id="facebook/opt-125m", access="open")
    server = WebServer(process_env(tmp_path), workers=2).start()
    try:

        def pids():
            return {re.search(r"_(\d+)\.db$", p.name).group(1) for p in (tmp_path / "prometheus").glob("counter_*.db")}

        # Requests 8 at a time (a new connection each): while one sync worker is busy the other must answer, until
        # both have counted something (the kernel alone decides which worker accepts a connection).
        sent = 0
        with ThreadPoolExecutor(max_workers=8) as pool:
            while sent < 40 or (len(pids()) < 2 and sent < 400):
                statuses = list(pool.map(lambda _: requests.get(f"{server.url}/api/v1/models", timeout=10), range(8)))
                assert all(r.status_code == 200 for r in statuses)
                sent += 8
        scrapes = [live_scrape(server.url) for _ in range(6)]
    finally:
        server.stop()
    route = {"route": "api-models", "method": "GET", "status": "200"}
    assert [value(s, "portal_http_requests_total", **route) for s in scrapes] == [sent] * 6
    assert all(
        value(s, "portal_http_request_duration_seconds_count", route="api-models", method="GET") == sent
        for s in scrapes
    )
    assert len(pids()) == 2, pids()  # both workers counted, and each scrape summed them


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_json_logs_carry_the_request_id_into_the_tasks_it_enqueued(tmp_path, redis_server, reviewer, local_storage):
    from django.conf import settings

    gated = ReleaseFactory(repo_id="facebook/opt-175b", access="gated")
    add_file(gated, "config.json", b"{}")
    pending = AccessRequestFactory(release=gated)
    env = process_env(
        tmp_path,
        CELERY_BROKER_URL=redis_server.url,
        CELERY_TASK_ALWAYS_EAGER="0",
        STORAGE_BACKEND="local",
        LOCAL_STORAGE_DIR=str(settings.LOCAL_STORAGE_DIR),
    )
    web_log, worker_log = tmp_path / "web.log", tmp_path / "worker.log"
    server = WebServer(env, workers=2, log_path=web_log).start()
    worker = CeleryWorker(env, log_path=worker_log).start()
    try:
        secret = token_secret(reviewer, name="review", review=True)
        response = requests.post(
            f"{server.url}/api/models/facebook/opt-175b/user-access-request/handle",
            json={"requestId": pending.public_id, "status": "accepted"},
            headers={"Authorization": f"Bearer {secret}", "X-Request-ID": "approve-e2e-42"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        assert response.headers["X-Request-ID"] == "approve-e2e-42"
        wait_until(lambda: Grant.objects.filter(request=pending).exists(), timeout=30)
        task_lines = wait_until(
            lambda: [
                e for e in json_lines(worker_log) if e.get("logger") == "portal.task" and e.get("state") == "SUCCESS"
            ],
            timeout=20,
        )
        scraped = live_scrape(server.url)
    finally:
        worker.stop()
        server.stop()
    assert AccessRequest.objects.get(pk=pending.pk).status == "approved"
    finished = {e["task"]: e for e in task_lines}
    assert finished["access.tasks.grant_issue"]["request_id"] == "approve-e2e-42"
    # Work a task enqueues in turn (the grant email's webhook fan-out, notices) keeps the same id.
    assert all(e["request_id"] == "approve-e2e-42" for e in task_lines)
    web = json_lines(web_log)
    request_line = next(e for e in web if e.get("logger") == "portal.request" and e["request_id"] == "approve-e2e-42")
    assert (request_line["status"], request_line["route"]) == (200, "hf-access-request-handle")
    assert request_line["duration_ms"] > 0
    assert secret not in web_log.read_text() and secret not in worker_log.read_text()
    # The worker shares the multiprocess directory, so the web's /metrics counts its tasks too.
    assert value(scraped, "portal_celery_tasks_total", task="access.tasks.grant_issue", outcome="success") == 1


def json_lines(path: Path) -> list[dict]:
    """Every line the process wrote to its log that is JSON (gunicorn's own start-up lines are not)."""
    found = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            found.append(json.loads(line))
    return found
