"""Hostile input, production settings, sessions and logs."""

import logging
import os
import secrets
import subprocess
import sys

import pytest
from rest_framework.test import APIClient

from access import services
from access.models import AccessRequest, AuditEvent, ModelFile
from tests.factories import ANSWERS, AccessRequestFactory, ReleaseFactory, UserFactory, add_file, token_secret
from tests.support.processes import ROOT

pytestmark = pytest.mark.django_db

VALID = {**ANSWERS, "repo_id": "facebook/opt-175b", "accept_license": True, "noncommercial_attested": True}


@pytest.fixture
def gated(local_storage):
    release = ReleaseFactory(repo_id="facebook/opt-175b", access="gated")
    add_file(release, "checkpoint_last-model_part-0-shard0.pt", b"w")
    return release


@pytest.fixture
def api(alice):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_secret(alice, 't')}")
    return client


def test_a_valid_application_through_the_api_is_stored(api, gated):
    response = api.post("/api/v1/access-requests", VALID, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["status"] == "pending"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("full_name", "A" * 10_000),
        ("intended_use", "x" * 100_000),
        ("full_name", "Alice\x07Example"),
        ("full_name", "Alice\u202eelpmaxE"),
        ("affiliation", "Uni\u2066versity"),
        ("full_name", "Alice 🦙 Example"),
        ("role", "\x1b[31mroot\x1b[0m"),
        ("intended_use", "short"),
        ("organization_type", "<script>"),
        ("country", "XX"),
        ("repo_id", "../../etc/passwd"),
        ("accept_license", False),
        ("noncommercial_attested", False),
    ],
)
def test_hostile_answers_get_a_clear_400_and_write_nothing(api, gated, field, value):
    response = api.post("/api/v1/access-requests", {**VALID, field: value}, format="json")
    assert response.status_code in (400, 404)
    body = response.json()
    assert body["code"] in ("invalid", "not_found")
    if response.status_code == 400:
        assert field in body["fields"], body
    assert not AccessRequest.objects.exists()
    assert not AuditEvent.objects.filter(action="request.submitted").exists()


def test_persian_names_with_a_zero_width_non_joiner_are_accepted(api, gated):
    response = api.post("/api/v1/access-requests", {**VALID, "full_name": "می\u200cخواهم"}, format="json")
    assert response.status_code == 201


def test_html_in_answers_is_stored_verbatim_and_escaped_on_output(api, gated, client, alice):
    evil = '<img src=x onerror="alert(1)">'
    response = api.post("/api/v1/access-requests", {**VALID, "intended_use": evil * 5}, format="json")
    assert response.status_code == 201
    client.force_login(alice)
    page = client.get(f"/requests/{response.json()['id']}/").content.decode()
    assert evil not in page and "&lt;img src=x" in page


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/models/facebook/opt-125m/files/..%2F..%2Fsecret",
        "/api/v1/models/facebook/opt-125m/files/%2e%2e/config.json",
        "/api/v1/models/facebook/opt-125m/files/a\\b",
        "/api/v1/models/facebook/opt-125m/files/config.json%00.txt",
        "/api/v1/models/..%2F..%2Fetc/passwd",
        "/api/v1/models/facebook/opt-125m?page_size=1000000000",
        "/api/v1/models?page=1e9",
        "/api/v1/models/face%20book/opt",
    ],
)
def test_hostile_paths_and_parameters_get_a_clear_4xx(client, local_storage, url):
    release = ReleaseFactory(repo_id="facebook/opt-125m", access="open")
    add_file(release, "config.json", b"{}")
    response = client.get(url)
    if response.status_code == 200:  # an ignored parameter; the answer is the normal one, capped
        assert "page_size" in url
        return
    assert 400 <= response.status_code < 500
    assert response.json()["code"] in ("not_found", "invalid")
    assert ModelFile.objects.count() == 1


def test_page_size_is_capped(client, local_storage):
    for i in range(3):
        ReleaseFactory(repo_id=f"lab/m{i}")
    data = client.get("/api/v1/models?page_size=1000000000").json()
    assert data["count"] == 3 and len(data["results"]) == 3


def test_production_settings_pass_the_deploy_check(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SECURE_", "DEBUG", "PORTAL_DEV"))}
    env.update(
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="portal.example.org",
        DEBUG="0",
        PORTAL_VAR_DIR=str(tmp_path),
        CONTACT_EMAIL="access@portal.example.org",
    )

    def check(env):
        return subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), "check", "--deploy", "--fail-level", "WARNING"],
            env=env,
            capture_output=True,
            text=True,
            cwd=ROOT,
        )

    result = check(env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
    # Without an address for "Contact the reviewers", the portal's own warning.
    result = check({k: v for k, v in env.items() if k != "CONTACT_EMAIL"})
    assert result.returncode == 1 and "(access.W001) CONTACT_EMAIL is not set" in result.stderr


def test_production_responses_carry_the_security_headers(client, settings):
    response = client.get("/")
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_signing_in_changes_the_session_key(client, alice):
    client.get("/accounts/login/")
    before = client.cookies.get("sessionid")
    client.post("/accounts/login/", {"login": alice.email, "password": "correct horse battery staple"})
    after = client.cookies["sessionid"].value
    assert after and (before is None or before.value != after)
    assert client.get("/requests/").status_code == 200


def test_signing_out_ends_the_session_everywhere_it_counts(client, alice):
    client.post("/accounts/login/", {"login": alice.email, "password": "correct horse battery staple"})
    old_session = client.cookies["sessionid"].value
    client.post("/accounts/logout/")
    assert client.get("/requests/").status_code == 302
    replay = APIClient()
    replay.cookies["sessionid"] = old_session
    assert replay.get("/api/v1/access-requests").status_code == 401


def test_repeated_failed_logins_are_rate_limited(client, alice):
    pages = [
        client.post("/accounts/login/", {"login": alice.email, "password": "wrong"}).content.decode() for _ in range(7)
    ]
    assert "Too many failed login attempts" not in pages[0]
    assert "Too many failed login attempts" in pages[-1]
    # Even the right password is refused while the limit holds.
    page = client.post("/accounts/login/", {"login": alice.email, "password": "correct horse battery staple"})
    assert "Too many failed login attempts" in page.content.decode()


def test_no_token_secret_is_ever_logged(caplog, gated, alice, client):
    caplog.set_level(logging.DEBUG)
    reviewer = UserFactory()
    services.reviewer_add(actor=services.command_actor("add_reviewer"), user=reviewer)
    request = AccessRequestFactory(applicant=alice, release=gated)
    services.request_approve(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True), access_request=request
    )
    services.grant_issue(request_id=request.pk)
    token, secret = services.token_create(
        actor=services.Actor(user=alice, credential="session", reauthenticated=True), name="t"
    )
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    api.get("/api/v1/models/facebook/opt-175b/manifest")
    api.get("/api/v1/models/facebook/opt-175b/files/checkpoint_last-model_part-0-shard0.pt")
    services.token_revoke(actor=services.Actor(user=alice, credential="session", reauthenticated=True), token=token)
    api.get("/api/v1/models/facebook/opt-175b/manifest")  # refused: logged as a 401 warning
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Bearer mp_guessed-secret-value")
    bad.get("/api/v1/models/facebook/opt-175b/manifest")
    logged = "\n".join(r.getMessage() + repr(r.args) for r in caplog.records)
    assert caplog.records
    assert secret not in logged and "mp_guessed-secret-value" not in logged
    assert secret not in str(list(AuditEvent.objects.values_list("data", flat=True)))


@pytest.mark.parametrize(
    ("behind_proxy", "forwarded", "recorded"),
    [(False, "203.0.113.9", "127.0.0.1"), (True, "10.0.0.1, 203.0.113.9", "203.0.113.9"), (True, "junk", "127.0.0.1")],
)
def test_the_recorded_address_honours_a_trusted_proxy_only(
    client, local_storage, settings, behind_proxy, forwarded, recorded
):
    from access.models import DownloadEvent

    settings.BEHIND_PROXY = behind_proxy
    release = ReleaseFactory(repo_id="facebook/opt-125m", access="open")
    add_file(release, "config.json", b"{}")
    secret = token_secret(UserFactory())  # a signed-in download is logged with its address
    client.get(
        "/api/v1/models/facebook/opt-125m/files/config.json",
        HTTP_X_FORWARDED_FOR=forwarded,
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )
    assert DownloadEvent.objects.get().ip == recorded


def test_every_admin_page_renders_for_an_admin(client, gated, alice):
    from django.contrib import admin

    from tests.support.auth import login_recently

    admin_user = UserFactory(is_staff=True, is_superuser=True)
    AccessRequestFactory(applicant=alice, release=gated)
    login_recently(client, admin_user)
    for model in admin.site._registry:
        meta = model._meta
        changelist = client.get(f"/admin/{meta.app_label}/{meta.model_name}/")
        assert changelist.status_code == 200, meta.model_name
        obj = model.objects.first()
        if obj is not None:
            assert client.get(f"/admin/{meta.app_label}/{meta.model_name}/{obj.pk}/change/").status_code == 200


def test_an_admin_change_needs_a_recent_password(client, gated):
    admin_user = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(admin_user)  # a session with no recent password entry
    assert client.get("/admin/access/modelrelease/").status_code == 200
    response = client.post(f"/admin/access/modelrelease/{gated.pk}/change/", {"display_name": "renamed"})
    assert response.status_code == 302 and "/accounts/reauthenticate/" in response["Location"]
    gated.refresh_from_db()
    assert gated.display_name != "renamed"
