"""The WSGI application's two middleware stacks (portal.handlers): per-file downloads without a session cookie
go through the short download stack, everything else through the full one, and both give the same answers."""

from __future__ import annotations

import json
from contextlib import contextmanager

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from access import services
from access.models import DownloadEvent
from portal import handlers
from tests.factories import ReleaseFactory, UserFactory, add_file, grant_for, token_secret
from tests.support.wsgi import wsgi_call

pytestmark = pytest.mark.django_db

SHARD = "checkpoint_last-model_part-0-shard0.pt"
GATED = f"/api/v1/models/facebook/opt-175b/files/{SHARD}"
OPEN = "/api/v1/models/facebook/opt-125m/files/pytorch_model.bin"
HF_OPEN = "/facebook/opt-125m/resolve/main/pytorch_model.bin"


@pytest.fixture
def releases(local_storage):
    gated = ReleaseFactory(repo_id="facebook/opt-175b", access="gated")
    add_file(gated, SHARD, b"secret weights")
    public = ReleaseFactory(repo_id="facebook/opt-125m", access="open")
    add_file(public, "pytorch_model.bin", b"open weights")
    return gated, public


@pytest.fixture
def holder(releases):
    gated, _ = releases
    reviewer = UserFactory(email="rita@portal.example")
    services.reviewer_add(actor=services.command_actor("add_reviewer"), user=reviewer)
    user = UserFactory(email="hana@lab.example")
    grant = grant_for(user, gated, reviewer)
    return user, grant, token_secret(user), reviewer


@contextmanager
def _keep_test_connection():
    # As Django's test client does: a request's start and end must not close the test's transaction.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def wsgi(path: str, *, method: str = "GET", **headers) -> tuple[int, dict, bytes]:
    """One request through portal.wsgi's application inside the test's transaction."""
    with _keep_test_connection():
        return wsgi_call(path, method=method, headers={name.replace("_", "-"): v for name, v in headers.items()})


def test_only_cookieless_downloads_take_the_download_stack(settings):
    def env(path, method="GET", cookie=""):
        return {"REQUEST_METHOD": method, "PATH_INFO": path, "HTTP_COOKIE": cookie}

    assert handlers.is_download(env(GATED))
    assert handlers.is_download(env(HF_OPEN, "HEAD"))
    assert handlers.is_download(env(GATED, cookie="django_language=zh-hans"))
    assert not handlers.is_download(env(GATED, cookie=f"a=b; {settings.SESSION_COOKIE_NAME}=x"))
    assert not handlers.is_download(env(GATED, "POST"))
    assert not handlers.is_download(env(GATED, "OPTIONS"))
    for path in (
        "/api/v1/models/facebook/opt-175b",
        "/api/v1/models/facebook/opt-175b/files/",
        "/api/v1/models/facebook/opt-175b/manifest",
        "/dl/ticket/file.pt",
        "/static/css/portal.css",
        "/facebook/opt-125m/resolve/main/",
        "/review/",
    ):
        assert not handlers.is_download(env(path)), path


def test_the_download_stack_is_a_subsequence_of_the_full_one(settings):
    settings.DOWNLOAD_MIDDLEWARE = [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "access.gate.cache.RequestScope",
    ]
    with pytest.raises(ImproperlyConfigured, match="order"):
        handlers.DownloadHandler()
    settings.DOWNLOAD_MIDDLEWARE = ["access.gate.cache.RequestScope", "tests.elsewhere.Middleware"]
    with pytest.raises(ImproperlyConfigured, match="does not"):
        handlers.DownloadHandler()
    settings.DOWNLOAD_MIDDLEWARE = []
    assert handlers.PortalApplication().download is None


def test_a_token_download_through_the_download_stack(holder):
    user, grant, secret, _ = holder
    status, headers, _ = wsgi(GATED, authorization=f"Bearer {secret}", x_request_id="abc-123")
    assert status == 302
    assert headers["location"].startswith("http://testserver/storage/")
    assert headers["content-security-policy"] == handlers.DOWNLOAD_CSP  # only the download stack sets this one
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-request-id"] == "abc-123"
    assert "set-cookie" not in headers
    assert "cookie" not in headers.get("vary", "").lower()
    event = DownloadEvent.objects.get()
    assert (event.user_id, event.grant_id, event.via) == (user.pk, grant.pk, "api")


def test_a_browser_session_takes_the_full_stack(holder, client):
    user, *_ = holder
    client.force_login(user)
    cookie = f"{client.cookies.output(header='', sep=';').strip()}"
    status, headers, _ = wsgi(GATED, cookie=cookie)
    assert status == 302
    assert headers.get("content-security-policy") != handlers.DOWNLOAD_CSP  # the download stack always sets it
    assert DownloadEvent.objects.get().user_id == user.pk


def _full(path, *, method="get", **headers):
    response = getattr(APIClient(), method)(path, **{"HTTP_" + k.upper(): v for k, v in headers.items()})
    return response.status_code, response.content


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_both_stacks_give_the_same_refusals(holder, language):
    _, grant, secret, reviewer = holder
    stranger = token_secret(UserFactory(email="sam@elsewhere.example"))
    cases = {
        "anonymous": (GATED, {}),
        "no grant": (GATED, {"authorization": f"Bearer {stranger}"}),
        "bad token": (GATED, {"authorization": "Bearer pt_not-a-token"}),
        "no such file": (GATED.replace("shard0", "shard9"), {"authorization": f"Bearer {secret}"}),
        "no such release": ("/api/v1/models/nobody/nothing/files/x.pt", {}),
        "traversal": ("/api/v1/models/facebook/opt-175b/files/../../etc/passwd", {"authorization": f"Bearer {secret}"}),
        "nul": ("/api/v1/models/facebook/opt-175b/files/a\x00b", {}),
    }
    seen = {}
    for name, (path, headers) in cases.items():
        headers = {**headers, "accept_language": language}
        status, response_headers, body = wsgi(path, **headers)
        assert response_headers["content-security-policy"] == handlers.DOWNLOAD_CSP
        assert (status, json.loads(body)) == ((s := _full(path, **headers))[0], json.loads(s[1])), name
        seen[name] = (status, json.loads(body)["code"])
    assert seen["anonymous"] == (401, "not_authenticated")
    assert seen["no grant"][0] == 403
    assert seen["no such file"] == (404, "not_found")
    assert seen["nul"] == (404, "not_found")
    services.grant_revoke(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True),
        grant=grant,
        reason="Shared the weights.",
    )
    status, _, body = wsgi(GATED, authorization=f"Bearer {secret}")
    assert status == 403
    assert json.loads(body)["code"] == "revoked"
    assert DownloadEvent.objects.count() == 0


def test_anonymous_open_downloads_are_counted_through_the_download_stack(releases):
    from access.counts import download_counts_flush

    download_counts_flush()
    status, headers, _ = wsgi(HF_OPEN, method="HEAD")
    assert status == 302
    assert headers["x-linked-size"] == str(len(b"open weights"))
    assert headers["content-security-policy"] == handlers.DOWNLOAD_CSP
    status, headers, _ = wsgi(OPEN)
    assert status == 302
    assert download_counts_flush() == 2
    assert DownloadEvent.objects.count() == 0


def _file_queries(queries) -> int:
    return sum('FROM "access_modelfile"' in q["sql"] for q in queries)


def test_a_releases_files_enter_the_cache_together(holder, releases):
    gated, _ = releases
    for n in range(1, 4):
        add_file(gated, f"checkpoint_last-model_part-0-shard{n}.pt", b"more weights %d" % n)
    _, _, secret, _ = holder
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    with CaptureQueriesContext(connection) as first:
        assert api.get(GATED).status_code == 302
    assert _file_queries(first.captured_queries) == 2  # the file, then all of the release's main revision
    for n in range(1, 4):
        with CaptureQueriesContext(connection) as later:
            assert api.get(GATED.replace("shard0", f"shard{n}")).status_code == 302
        assert _file_queries(later.captured_queries) == 0
    assert DownloadEvent.objects.count() == 4


def test_without_a_shared_cache_each_download_reads_only_its_file(holder, settings):
    from access.gate import loader as decision_cache

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    decision_cache.forget()
    _, _, secret, _ = holder
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    for _ in range(2):
        with CaptureQueriesContext(connection) as ctx:
            assert api.get(GATED).status_code == 302
        assert _file_queries(ctx.captured_queries) == 1


# Django's private attributes the download handler builds its chain with (portal.handlers.DownloadHandler).
PRIVATE = ("_middleware_chain", "_view_middleware", "_template_response_middleware", "_exception_middleware")


def test_the_download_handler_sets_exactly_what_djangos_own_handler_sets():
    """The second stack is built with Django's private attributes: an upgrade that renames, adds or drops one
    fails here instead of silently serving downloads through a half-built chain."""
    import inspect
    import re

    from django.core.handlers.base import BaseHandler
    from django.core.handlers.wsgi import WSGIHandler

    set_by = {
        cls: set(re.findall(r"self\.(_\w+)\s*=", inspect.getsource(cls.load_middleware)))
        for cls in (BaseHandler, handlers.DownloadHandler)
    }
    assert set_by[BaseHandler] == set_by[handlers.DownloadHandler] == set(PRIVATE)
    assert list(inspect.signature(BaseHandler.load_middleware).parameters) == ["self", "is_async"]
    # The chain is what get_response runs, and its innermost handler is _get_response, which runs view middleware.
    assert "self._middleware_chain(request)" in inspect.getsource(BaseHandler.get_response)
    assert "self._view_middleware" in inspect.getsource(BaseHandler._get_response)
    django_handler, download_handler = WSGIHandler(), handlers.DownloadHandler()
    for name in PRIVATE:
        assert type(getattr(django_handler, name)) is type(getattr(download_handler, name)), name
