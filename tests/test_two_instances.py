"""Two portal instances (separate gunicorn masters) behind nginx, with one PostgreSQL, one Redis and two Celery
workers, behave as one: limits hold across both, a grant is issued once, a change made through one instance is
seen by the other on its next request (its cache of the gate's inputs notwithstanding), sessions work on either."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import requests
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connection

from access import services
from access.models import Grant, OutboundEmail
from access.tasks import grant_issue
from tests.factories import AccessRequestFactory, ReleaseFactory, UserFactory, add_file, token_secret
from tests.support.nanio import free_port
from tests.support.processes import CeleryWorker, WebServer, wait_for_port, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SHARD = "checkpoint_last-model_part-0-shard0.pt"
PASSWORD = "correct horse battery staple"  # tests.factories.UserFactory's


class Nginx:
    """nginx round-robin in front of the instances, appending the client to X-Forwarded-For as a balancer does."""

    def __init__(self, upstreams: list[str], tmp, port: int):
        self.port = port
        self.prefix = tmp / "nginx"
        (self.prefix / "logs").mkdir(parents=True)
        servers = "".join(f"server {u.removeprefix('http://')};" for u in upstreams)
        self.conf = self.prefix / "nginx.conf"
        self.conf.write_text(
            f"""
worker_processes 1;
pid {self.prefix}/nginx.pid;
error_log {self.prefix}/logs/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {self.prefix}/body;
    proxy_temp_path {self.prefix}/proxy;
    fastcgi_temp_path {self.prefix}/fastcgi;
    uwsgi_temp_path {self.prefix}/uwsgi;
    scgi_temp_path {self.prefix}/scgi;
    upstream portal {{ {servers} }}
    server {{
        listen 127.0.0.1:{self.port};
        location / {{
            proxy_pass http://portal;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto http;
        }}
    }}
}}
"""
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.process = subprocess.Popen(
            [nginx, "-p", str(self.prefix), "-c", str(self.conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def cluster(redis_server, tmp_path, local_storage, settings):
    db = connection.settings_dict
    port = free_port()  # nginx's, known before the instances start so that they sign URLs for it
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        CACHE_URL=f"redis://127.0.0.1:{redis_server.port}/1",
        THROTTLE_CACHE_URL=f"redis://127.0.0.1:{redis_server.port}/2",
        CELERY_BROKER_URL=f"redis://127.0.0.1:{redis_server.port}/0",
        CELERY_TASK_ALWAYS_EAGER="0",
        BEHIND_PROXY="1",
        THROTTLE_USER_RATE="6/minute",
        THROTTLE_IP_RATE="100000/hour",
        SITE_URL=f"http://127.0.0.1:{port}",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        STORAGE_BACKEND="local",
        LOCAL_STORAGE_DIR=str(settings.LOCAL_STORAGE_DIR),
        EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
        PORTAL_VAR_DIR=str(tmp_path / "var"),
    )
    webs = [WebServer(env, log_path=tmp_path / f"web{n}.log").start() for n in range(2)]
    workers = [CeleryWorker(env, log_path=tmp_path / f"worker{n}.log").start() for n in range(2)]
    balancer = Nginx([w.url for w in webs], tmp_path, port).start()
    # This process sends tasks to the cluster's broker too (to try issuing a grant twice).
    from portal.celery import app

    old = (app.conf.broker_url, app.conf.task_always_eager)
    app.conf.broker_url, app.conf.task_always_eager = env["CELERY_BROKER_URL"], False
    app._after_fork()
    yield {"a": webs[0].url, "b": webs[1].url, "lb": balancer.url}
    app.conf.broker_url, app.conf.task_always_eager = old
    app._after_fork()
    balancer.stop()
    for process in (*workers, *webs):
        process.stop()


@pytest.fixture
def gated(local_storage):
    release = ReleaseFactory(repo_id="facebook/opt-175b", access="gated")
    add_file(release, SHARD, b"secret weights")
    return release


def bearer(secret: str) -> dict:
    return {"Authorization": f"Bearer {secret}"}


def file_url(base: str) -> str:
    return f"{base}/api/v1/models/facebook/opt-175b/files/{SHARD}"


def signed_in(base: str, email: str) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{base}/accounts/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    response = session.post(
        f"{base}/accounts/login/",
        data={"csrfmiddlewaretoken": token, "login": email, "password": PASSWORD},
        headers={"Referer": f"{base}/accounts/login/"},
        allow_redirects=False,
    )
    assert response.status_code == 302, response.text[:500]
    return session


def test_two_instances_behave_as_one(cluster, gated, tmp_path):
    a, b, lb = cluster["a"], cluster["b"], cluster["lb"]
    rita = UserFactory(email="rita@portal.example")
    services.reviewer_add(actor=services.command_actor("add_reviewer"), user=rita)
    review = bearer(
        services.token_create(
            actor=services.Actor(user=rita, credential="session", reauthenticated=True), name="r", review=True
        )[1]
    )
    alice = UserFactory(email="alice@uni.example")
    alice_token = token_secret(alice)

    # A grant is issued once, whichever worker takes the message and however often it is sent.
    request = AccessRequestFactory(applicant=alice, release=gated)
    approved = requests.post(f"{a}/api/v1/review/access-requests/{request.public_id}/approve", headers=review)
    assert approved.status_code == 200, approved.text
    grant_issue.apply_async(args=(request.pk,))
    grant_issue.apply_async(args=(request.pk,))
    grant = wait_until(lambda: Grant.objects.filter(request=request).first(), timeout=30)
    wait_until(lambda: OutboundEmail.objects.filter(dedupe_key=f"grant-issued:{grant.pk}").exists(), timeout=30)
    assert Grant.objects.filter(request=request).count() == 1
    assert OutboundEmail.objects.filter(dedupe_key=f"grant-issued:{grant.pk}").count() == 1

    # Both instances serve the download (and keep the token, file and grant they read).
    for base in (a, b, a, b):
        assert requests.get(file_url(base), headers=bearer(alice_token), allow_redirects=False).status_code == 302
    # A revocation through one instance is refused by the other on its very next request.
    revoked = requests.post(
        f"{a}/api/v1/review/grants/{grant.public_id}/revoke", json={"reason": "Breach."}, headers=review
    )
    assert revoked.status_code == 200, revoked.text
    refused = requests.get(file_url(b), headers=bearer(alice_token), allow_redirects=False)
    assert (refused.status_code, refused.json()["code"]) == (403, "revoked")

    # Sessions work on either instance; a token revoked through one is refused by the other at once.
    bob = UserFactory(email="bob@lab.example")
    # The instances run the production hashers (this process hashes with a fast one).
    bob.password = PBKDF2PasswordHasher().encode(PASSWORD, "two-instances")
    bob.save(update_fields=["password"])
    bob_token = services.token_create(
        actor=services.Actor(user=bob, credential="session", reauthenticated=True), name="laptop"
    )
    assert requests.get(f"{b}/api/v1/grants", headers=bearer(bob_token[1])).status_code == 200
    session = signed_in(a, bob.email)
    page = session.get(f"{b}/tokens/")
    assert page.status_code == 200 and "laptop" in page.text
    csrf = session.cookies["csrftoken"]
    session.post(
        f"{b}/tokens/{bob_token[0].pk}/revoke",
        data={"csrfmiddlewaretoken": csrf},
        headers={"Referer": f"{b}/tokens/"},
    )
    refused = requests.get(f"{a}/api/v1/grants", headers=bearer(bob_token[1]))
    assert (refused.status_code, refused.json()["code"]) == (401, "token_revoked")

    # The API throttle (6 a minute per user here) counts calls to both instances together.
    carol = token_secret(UserFactory(email="carol@uni.example"))
    statuses = [requests.get(f"{lb}/api/v1/grants", headers=bearer(carol)).status_code for _ in range(8)]
    assert statuses == [200] * 6 + [429] * 2
    # Sign-in limits are shared: failed sign-ins, sent round-robin to both instances through the balancer (the
    # limit is per site and account, and the site is the host name), are counted together: 5 per account.
    outcomes = []
    for _ in range(7):
        base = lb
        session = requests.Session()
        page = session.get(f"{base}/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        response = session.post(
            f"{base}/accounts/login/",
            data={"csrfmiddlewaretoken": token, "login": bob.email, "password": "wrong"},
            headers={"Referer": f"{base}/accounts/login/"},
        )
        outcomes.append("Too many failed login attempts" in response.text)
    assert outcomes == [False] * 5 + [True] * 2, outcomes
