"""Rate limits key on the address the portal can trust, are shared by every web process, and sign-up answers an
existing address exactly as it answers a new one."""

from __future__ import annotations

import os
import re
import shutil
import socket
import statistics
import subprocess
import time
from pathlib import Path
from unittest import mock

import pytest
import requests
from django.conf import global_settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.core import mail
from django.test import Client

from tests.factories import UserFactory
from tests.support.processes import ROOT, WebServer, wait_until

API = "/api/v1/models/"
LOAD_BALANCER = "10.0.0.1"


@pytest.fixture
def ip_rate(settings):
    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "ip": "3/hour"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}


def api_get(client, *, peer="203.0.113.9", forwarded=None):
    headers = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {}
    return client.get(API, REMOTE_ADDR=peer, **headers).status_code


# --- The API's per-IP throttle -------------------------------------------------------------------------


def test_it_throttles_a_caller_that_rotates_x_forwarded_for(db, client, ip_rate, settings):
    settings.BEHIND_PROXY = False
    statuses = [api_get(client, forwarded=f"198.51.100.{n}") for n in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_a_forged_x_forwarded_for_does_not_spend_another_callers_quota(db, client, ip_rate, settings):
    settings.BEHIND_PROXY = False
    victim = "192.0.2.77"
    statuses = [api_get(client, forwarded=victim) for _ in range(4)]
    assert statuses == [200, 200, 200, 429]  # the attacker's own address ran out ...
    assert api_get(client, peer=victim) == 200  # ... not the victim's


def test_behind_a_proxy_only_the_address_it_appended_counts(db, client, ip_rate, settings):
    settings.BEHIND_PROXY = True
    # The caller controls everything before the load balancer's entry.
    statuses = [api_get(client, peer=LOAD_BALANCER, forwarded=f"198.51.100.{n}, 203.0.113.5") for n in range(4)]
    assert statuses == [200, 200, 200, 429]
    # Another client behind the same load balancer has its own quota.
    assert api_get(client, peer=LOAD_BALANCER, forwarded="203.0.113.5, 203.0.113.6") == 200


# --- allauth's rate limits -----------------------------------------------------------------------------

TOO_MANY = "Too many failed login attempts"


@pytest.fixture
def login_rate(settings):
    # Per IP only: every attempt below uses another email, so the per-address limit never applies.
    settings.ACCOUNT_RATE_LIMITS = {**settings.ACCOUNT_RATE_LIMITS, "login_failed": "3/m/ip"}


def failed_login(n, *, peer="203.0.113.9", forwarded=None):
    headers = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {}
    response = Client().post(
        "/accounts/login/",
        {"login": f"nobody{n}@uni.example", "password": "wrong password"},
        REMOTE_ADDR=peer,
        **headers,
    )
    assert response.status_code == 200
    return TOO_MANY in response.content.decode()


def test_failed_sign_ins_that_rotate_x_forwarded_for_are_still_limited(db, login_rate, settings):
    settings.BEHIND_PROXY = False
    assert [failed_login(n, forwarded=f"198.51.100.{n}") for n in range(4)] == [False, False, False, True]


def test_behind_a_proxy_the_sign_in_limit_counts_the_address_it_appended(db, login_rate, settings):
    settings.BEHIND_PROXY = True
    limited = [failed_login(n, peer=LOAD_BALANCER, forwarded=f"198.51.100.{n}, 203.0.113.5") for n in range(4)]
    assert limited == [False, False, False, True]
    # Everyone behind the load balancer shares its address: they must not share one limit.
    assert not failed_login(9, peer=LOAD_BALANCER, forwarded="203.0.113.6")


# --- Sign-up timing --------------------------------------------------------------------------------------


def sign_up(email):
    client = Client()
    sent = len(mail.outbox)
    started = time.perf_counter()
    response = client.post(
        "/accounts/signup/",
        {"email": email, "password1": "a long unusual passphrase", "password2": "a long unusual passphrase"},
    )
    elapsed = time.perf_counter() - started
    assert [m.to for m in mail.outbox[sent:]] == [[email]]
    page = client.get(response["Location"]).content.decode().replace(email, "EMAIL")
    page = re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", page)  # differs on every page
    return elapsed, (response.status_code, response["Location"], page)


def test_sign_up_answers_an_existing_address_as_fast_and_alike_as_a_new_one(db, settings):
    rounds = 4
    existing = [UserFactory(email=f"member{n}@uni.example").email for n in range(rounds)]
    settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS
    times = {"existing": [], "new": []}
    answers, hashes = set(), {"existing": 0, "new": 0}
    real_encode = PBKDF2PasswordHasher.encode
    sign_up("warm-up@uni.example")  # the first request of a process is slower whichever path it takes
    for n in range(rounds):
        for kind, email in (("existing", existing[n]), ("new", f"newcomer{n}@uni.example")):
            with mock.patch.object(PBKDF2PasswordHasher, "encode", autospec=True, side_effect=real_encode) as encode:
                elapsed, answer = sign_up(email)
            times[kind].append(elapsed)
            hashes[kind] += encode.call_count
            answers.add(answer)
    assert hashes == {"existing": rounds, "new": rounds}
    assert len(answers) == 1, answers  # the same redirect and the same page
    status, location, _ = answers.pop()
    assert status == 302 and location == "/accounts/confirm-email/"
    ratio = statistics.median(times["existing"]) / statistics.median(times["new"])
    assert 0.5 < ratio < 2, times


# --- Limits shared by every web process --------------------------------------------------------------------


def redis_location(settings, alias):
    config = settings.CACHES.get(alias, settings.CACHES["default"])
    if not config["BACKEND"].endswith("RedisCache"):
        pytest.fail("this test needs THROTTLE_CACHE_URL (or CACHE_URL) to be Redis, as `make test` sets it")
    return config["LOCATION"]


@pytest.mark.slow
def test_the_api_ip_limit_holds_across_two_web_processes(transactional_db, settings, tmp_path):
    from django.db import connection

    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CACHE_URL": redis_location(settings, "default"),
        "THROTTLE_CACHE_URL": redis_location(settings, "throttle"),
        "THROTTLE_IP_RATE": "5/hour",
        "BEHIND_PROXY": "0",
        "PORTAL_VAR_DIR": str(tmp_path),
    }
    if time.time() % 3600 > 3540:
        time.sleep(3600 - time.time() % 3600)  # the six calls must fall in one fixed hourly window
    servers = [WebServer(env, log_path=tmp_path / f"web{n}.log").start() for n in range(2)]
    try:
        statuses = [requests.get(servers[n % 2].url + API, timeout=30).status_code for n in range(6)]
        throttled = requests.get(servers[0].url + API, timeout=30)
    finally:
        for server in servers:
            server.stop()
    assert statuses == [200] * 5 + [429], statuses
    assert throttled.status_code == 429 and throttled.json()["code"] == "throttled"


def run_dev_run(tmp_path, env):
    """scripts/dev-run in a copy of the tree whose .venv only reports the environment gunicorn would get (the
    demo institution's gunicorn reports into var/demo-idp.log)."""
    (tmp_path / "scripts").mkdir()
    for script in ("dev-run", "demo-idp"):
        shutil.copy(ROOT / "scripts" / script, tmp_path / "scripts" / script)
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    stubs = {
        "python": "exit 0",
        # The worker sends an email as access.devmail does: dev-run prints it on its console.
        "celery": 'echo "Subject: sent by the worker $$" >>"$DEV_MAIL_LOG"; echo "celery $*"; exec sleep 30',
        # The portal's is started last: give the workers and the demo institution a moment to write their command
        # lines before everything stops.
        "gunicorn": 'if [ "$1" = demo_idp.wsgi ]; then echo "gunicorn $*"; env | grep -E "^(DEMO_IDP|OIDC)_" | sort; '
        "echo $$ >var/demo-idp.pid; exec sleep 30; fi; "
        # The demo institution's pid file is written after its lines: waiting for it waits for them all.
        'env | grep -E "(CACHE_URL|^OIDC_.*|^DEMO_IDP_.*|^CONTACT_EMAIL|^EMAIL_BACKEND)=" | sort; '
        "for i in $(seq 300); do "
        '[ "$(cat var/celery*.log 2>/dev/null | grep -c "^celery ")" -ge 2 ] && [ -s var/demo-idp.pid ] '
        '&& [ "$(grep -c Subject "$DEV_MAIL_LOG")" -ge 2 ] '
        "&& break; sleep 0.1; done; exit 0",
    }
    for name, body in stubs.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    result = subprocess.run(
        ["bash", str(tmp_path / "scripts" / "dev-run")],
        env={**keep, "SECRET_KEY": "x", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def redis_port_6379():
    """dev-run looks for Redis at 127.0.0.1:6379; something must answer there."""
    try:
        listener = socket.create_server(("127.0.0.1", 6379))
    except OSError:
        yield  # taken: the machine's Redis answers
        return
    yield
    listener.close()


def test_make_run_counts_limits_in_redis_when_it_answers(tmp_path, redis_port_6379):
    out = run_dev_run(tmp_path, {})
    assert "CACHE_URL=redis://127.0.0.1:6379/1\n" in out
    assert "THROTTLE_CACHE_URL=redis://127.0.0.1:6379/2\n" in out
    assert "Cache (rate limits): redis://127.0.0.1:6379/1" in out


def test_make_run_prints_every_email_on_its_console_and_gives_a_contact_address(tmp_path, redis_port_6379):
    out = run_dev_run(tmp_path, {})
    assert "CONTACT_EMAIL=reviewers@demo.localhost\n" in out
    assert "EMAIL_BACKEND=access.devmail.EmailBackend\n" in out
    # Both workers' emails (their stdout is their log file) come out on the console.
    assert out.count("Subject: sent by the worker") == 2, out
    assert "sent by the worker" not in "".join(p.read_text() for p in (tmp_path / "var").glob("celery*.log"))


def test_make_run_keeps_a_cache_given_to_it(tmp_path: Path, redis_port_6379):
    out = run_dev_run(tmp_path, {"CACHE_URL": "redis://cache.example:6379/3"})
    assert "CACHE_URL=redis://cache.example:6379/3\n" in out
    assert "THROTTLE_CACHE_URL" not in out  # the API counters fall back to that same cache


def test_make_run_starts_a_worker_for_the_webhooks_queue(tmp_path, redis_port_6379):
    out = run_dev_run(tmp_path, {})
    logs = "".join(p.read_text() for p in (tmp_path / "var").glob("celery*.log"))
    workers = [line for line in logs.splitlines() if line.startswith("celery -A portal worker")]
    assert len(workers) == 2, logs
    (default,) = [w for w in workers if "--beat" in w]
    (webhooks,) = [w for w in workers if w is not default]
    assert "--queues webhooks" in webhooks and "--queues celery" in default
    assert "webhooks" in out and "celery-webhooks.log" in out


DEMO_UNIVERSITY = {
    "OIDC_PROVIDERS": "demo-university",
    "OIDC_DEMO_UNIVERSITY_NAME": "Demo University",
    "OIDC_DEMO_UNIVERSITY_KIND": "institution",
    "OIDC_DEMO_UNIVERSITY_ISSUER": "http://127.0.0.1:8001/o",
    "OIDC_DEMO_UNIVERSITY_CLIENT_ID": "portal-demo",
}


def env_lines(text, pattern):
    return dict(line.split("=", 1) for line in text.splitlines() if re.match(pattern, line))


def test_make_run_starts_the_demo_institution_and_offers_it_to_the_portal(tmp_path, redis_port_6379):
    out = run_dev_run(tmp_path, {})
    portal = env_lines(out, r"(OIDC|DEMO_IDP)_[A-Z_]+=")
    assert portal == {
        **DEMO_UNIVERSITY,
        "OIDC_DEMO_UNIVERSITY_CLIENT_SECRET_FILE": f"{tmp_path}/var/demo-idp/client_secret",
    }
    log = (tmp_path / "var" / "demo-idp.log").read_text()
    assert "gunicorn demo_idp.wsgi --bind 127.0.0.1:8001 " in log
    # Only the demo institution runs in its dev mode; it sends people back to the portal's URL.
    assert env_lines(log, r"(OIDC|DEMO_IDP)_[A-Z_]+=") == {
        "DEMO_IDP_DEV": "1",
        "DEMO_IDP_PORT": "8001",
        "DEMO_IDP_PORTAL_URL": "http://127.0.0.1:8000",
    }
    assert "Demo University" in out and "var/demo-idp.log" in out
    # Stopped with everything else.
    pid = int((tmp_path / "var" / "demo-idp.pid").read_text())
    wait_until(lambda: not Path(f"/proc/{pid}").exists(), timeout=30)


def test_make_run_leaves_sign_in_providers_set_by_the_user_alone(tmp_path, redis_port_6379):
    out = run_dev_run(tmp_path, {"OIDC_PROVIDERS": "orcid", "DEMO_IDP_PORT": "8011", "PORT": "8010"})
    assert env_lines(out, r"(OIDC|DEMO_IDP)_[A-Z_]+=") == {"OIDC_PROVIDERS": "orcid", "DEMO_IDP_PORT": "8011"}
    log = (tmp_path / "var" / "demo-idp.log").read_text()
    assert "--bind 127.0.0.1:8011 " in log and "DEMO_IDP_PORTAL_URL=http://127.0.0.1:8010" in log
