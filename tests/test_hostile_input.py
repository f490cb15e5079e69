"""Input from outside that once reached a 500: each now gets a clear 4xx (or, for a Range the server may
ignore, an ordinary answer), on the test client and through a real HTTP server."""

import csv
import io
import json
import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
import requests
from rest_framework.test import APIClient

from access import services
from access.client import download
from access.models import AccessRequest
from access.storage import LocalStorage
from tests.factories import ReleaseFactory, add_file, token_secret
from tests.support.auth import login_recently
from tests.support.nanio import free_port
from tests.support.processes import ROOT, wait_for_port
from tests.test_download_client import backend, run_client  # noqa: F401 -- backend is a fixture used below

PAYLOAD = bytes(range(256)) * 40  # 10240 bytes
KEY = "facebook/opt-125m/config.json"
HUGE = "9" * 5000  # more digits than Python's int() accepts from a string
DEEP_JSON = "[" * 50_000 + "]" * 50_000
HF_PATHS = [
    ("HEAD", "/facebook/opt-125m/resolve/main/a%01b"),
    ("GET", "/facebook/opt-125m/resolve/a%01b/config.json"),
    ("GET", "/api/models/facebook/opt-125m/tree/main/a%1bb"),
    ("GET", "/api/models/facebook/opt-125m/revision/a%07"),
    ("GET", "/facebook/opt-125m/resolve/main/%C2%9B31m%E2%80%A8x"),
]


def controls(text: str) -> list[str]:
    return [ch for ch in text if unicodedata.category(ch) == "Cc"]


def error_message(response) -> str:
    """X-Error-Message as huggingface_hub reads it: the header's bytes decoded as UTF-8."""
    return response.headers["X-Error-Message"].encode("latin-1").decode("utf-8")


@pytest.fixture
def release(local_storage):
    release = ReleaseFactory(repo_id="facebook/opt-125m", access="open")
    add_file(release, "config.json", PAYLOAD)
    return release


@pytest.fixture(scope="module")
def storage_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("storage")


@pytest.fixture
def local_storage(settings, storage_dir):
    """One directory for the module, so the gunicorn below serves the files the tests store."""
    from access.storage import get_storage

    settings.STORAGE_BACKEND = "local"
    settings.LOCAL_STORAGE_DIR = storage_dir
    get_storage.cache_clear()
    return get_storage()


@pytest.fixture(scope="module")
def gunicorn(django_db_setup, storage_dir, tmp_path_factory):
    """The server `make run` starts: unlike the test live server, it refuses to send a header holding a
    control character, which the caller then sees as a 500."""
    from django.db import connection

    db, port = connection.settings_dict, free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "DB_CONN_MAX_AGE": "0",
        "STORAGE_BACKEND": "local",
        "LOCAL_STORAGE_DIR": str(storage_dir),
        "SITE_URL": f"http://127.0.0.1:{port}",
        "PORTAL_VAR_DIR": str(tmp_path_factory.mktemp("gunicorn-var")),
    }
    log = tmp_path_factory.mktemp("gunicorn-log") / "gunicorn.log"
    command = [str(Path(sys.executable).with_name("gunicorn")), "portal.wsgi", "--bind", f"127.0.0.1:{port}"]
    with log.open("w") as out:
        server = subprocess.Popen(
            [*command, "--workers", "1", "--threads", "4", "--graceful-timeout", "1"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def _no_persistent_db_connections(monkeypatch):
    """Live-server threads close their connection after each request, so the test database can be dropped."""
    from django.db import connections

    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)


@pytest.fixture(params=["live_server", "gunicorn"])
def portal(request, settings, local_storage, _no_persistent_db_connections):
    """The base URL of a real HTTP server running the portal on the test database."""
    server = request.getfixturevalue(request.param)
    url = server if request.param == "gunicorn" else server.url
    settings.SITE_URL = url
    return url


# ---------------------------------------------------------------------------------------------- signed storage URLs


@pytest.mark.parametrize("signature", ["é", "0" * 63, "0" * 65, "A" * 64, "g" * 64, "", "ａ" * 64])
def test_it_refuses_a_signature_that_is_not_64_lowercase_hex_digits(local_storage, signature):
    assert local_storage.verify(KEY, 99999999999, signature) is False


def test_a_genuine_signature_still_verifies(local_storage):
    assert local_storage.verify(KEY, 99999999999, LocalStorage.signature(KEY, 99999999999)) is True


@pytest.mark.django_db
def test_a_non_ascii_signature_in_the_url_is_a_403(client, release):
    response = client.get(f"/storage/99999999999/%C3%A9/{KEY}")
    assert response.status_code == 403
    assert response.json()["code"] == "invalid_signature"


def signed_path(storage) -> str:
    return "/storage/" + storage.signed_url(KEY, filename="config.json", ttl=600).split("/storage/", 1)[1]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "header", "status", "content_range"),
    [
        ("GET", f"bytes={HUGE}-", 416, f"bytes */{len(PAYLOAD)}"),  # starts past every file
        ("HEAD", f"bytes={HUGE}-", 416, f"bytes */{len(PAYLOAD)}"),
        ("GET", f"bytes=-{HUGE}", 206, f"bytes 0-{len(PAYLOAD) - 1}/{len(PAYLOAD)}"),  # a suffix longer than the file
        ("HEAD", f"bytes=-{HUGE}", 206, f"bytes 0-{len(PAYLOAD) - 1}/{len(PAYLOAD)}"),
        ("GET", f"bytes=10-{HUGE}", 206, f"bytes 10-{len(PAYLOAD) - 1}/{len(PAYLOAD)}"),  # clamped to the end
        ("GET", f"bytes={'0' * 5000}7-{'0' * 5000}9", 206, f"bytes 7-9/{len(PAYLOAD)}"),  # leading zeros are legal
    ],
)
def test_an_overlong_range_number_is_read_by_its_value(
    client, release, local_storage, method, header, status, content_range
):
    response = client.generic(method, signed_path(local_storage), HTTP_RANGE=header)
    assert response.status_code == status
    assert response["Content-Range"] == content_range
    if method == "GET" and status == 206:
        start, end = (int(n) for n in content_range.split()[1].split("/")[0].split("-"))
        assert b"".join(response.streaming_content) == PAYLOAD[start : end + 1]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("header", [f"bytes={HUGE}-", f"bytes=-{HUGE}", f"bytes=0-{HUGE}"])
def test_an_overlong_range_through_a_real_server(portal, release, local_storage, method, header):
    response = requests.request(method, portal + signed_path(local_storage), headers={"Range": header}, timeout=10)
    assert response.status_code in (206, 416)
    if method == "GET" and response.status_code == 206:
        assert response.content == PAYLOAD


# ---------------------------------------------------------------------------------------------- Hugging Face headers


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path"), HF_PATHS)
def test_control_characters_never_reach_the_hub_error_header(client, release, method, path):
    response = client.generic(method, path)
    assert response.status_code == 404
    assert response["X-Error-Code"] in ("EntryNotFound", "RevisionNotFound")
    assert error_message(response) and controls(error_message(response)) == []
    if method == "GET":
        body = response.json()
        assert body["code"] == "not_found" and body["error"] == body["detail"]


@pytest.mark.django_db
def test_an_error_the_view_did_not_raise_itself_gets_a_clean_hub_header_too(client, release):
    response = client.generic("GE\x1bT", "/facebook/opt-125m/resolve/main/config.json")
    assert response.status_code == 405
    assert error_message(response) == 'Method "GET" not allowed.'


@pytest.mark.django_db
def test_the_hub_error_header_keeps_non_ascii_text_readable(client, release):
    response = client.head("/facebook/opt-125m/resolve/main/%E6%9D%83%E9%87%8D.bin")
    assert "权重.bin" in error_message(response)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("method", "path"), HF_PATHS)
def test_control_characters_in_hub_paths_through_a_real_server(portal, release, method, path):
    response = requests.request(method, portal + path, timeout=10, allow_redirects=False)
    assert response.status_code == 404
    assert controls(error_message(response)) == []
    if method == "GET":
        assert response.json()["code"] == "not_found"


# ---------------------------------------------------------------------------------------------- JSON bodies


@pytest.fixture
def api(alice, release):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_secret(alice)}")
    return client


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [DEEP_JSON.encode(), b'{"full_name": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", b"\xff\xfe{", b'{"a": '],
)
def test_a_body_that_is_not_usable_json_is_a_400_parse_error(api, body):
    response = api.generic("POST", "/api/v1/access-requests", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"
    assert response.json()["detail"]
    assert not AccessRequest.objects.exists()


@pytest.mark.django_db
def test_nesting_just_inside_the_parser_limit_is_a_validation_error(api):
    body = '{"full_name": ' + "[" * 500 + "]" * 500 + "}"
    response = api.generic("POST", "/api/v1/access-requests", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


# ---------------------------------------------------------------------------------------------- reviewer CSV exports


@pytest.fixture
def reviewer_client(client, reviewer):
    return login_recently(client, reviewer)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query",
    ["from=2024-02-30", "to=2024-13-01", "from=2023-02-29", "to=2024-04-31", "from=yesterday", "to=2024-1-1x"],
)
@pytest.mark.parametrize("kind", ["audit", "downloads"])
def test_an_impossible_export_date_is_a_400_page_saying_so(reviewer_client, kind, query):
    response = reviewer_client.get(f"/review/export/{kind}.csv?{query}")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
    assert "YYYY-MM-DD" in response.content.decode()


@pytest.mark.django_db
def test_the_export_date_message_is_translated(reviewer_client):
    response = reviewer_client.get("/review/export/audit.csv?from=2024-02-30", HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert response.status_code == 400
    assert "“from”日期不是真实存在的日期" in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(("start", "end"), [("2024-02-29", "2024-03-01"), ("0001-01-01", "9999-12-31")])
def test_real_dates_export_those_days(reviewer_client, start, end):
    response = reviewer_client.get(f"/review/export/audit.csv?from={start}&to={end}")
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="audit-{start}-{end}.csv"'
    assert b"".join(response.streaming_content).startswith(b"time,action,")


def export_rows(client, kind) -> list[list[str]]:
    response = client.get(f"/review/export/{kind}.csv")
    assert response.status_code == 200
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.mark.django_db
def test_export_cells_are_empty_when_empty_and_data_is_json(reviewer_client, reviewer):
    services.audit(
        actor=services.Actor(user=None, credential="system"),
        action="test.event",
        data={"zeta": "=1+1", "alpha": ["é", None]},
    )
    rows = export_rows(reviewer_client, "audit")
    header, row = rows[0], next(r for r in rows if r[1] == "test.event")
    assert header[-1] == "data"
    cells = dict(zip(header, row, strict=True))
    assert cells["actor"] == "" and cells["ip"] == "" and cells["target_type"] == ""
    assert cells["data"] == '{"alpha": ["é", null], "zeta": "=1+1"}'
    assert json.loads(cells["data"]) == {"alpha": ["é", None], "zeta": "=1+1"}


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["=HYPERLINK(1)", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1"])
def test_export_cells_that_a_spreadsheet_would_run_are_quoted(reviewer_client, value):
    services.audit(actor=services.Actor(user=None, credential=value), action="test.event")
    row = next(r for r in export_rows(reviewer_client, "audit") if r[1] == "test.event")
    assert row[3] == "'" + value


# ---------------------------------------------------------------------------------------------- the download client


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain text, é and 权重", "plain text, é and 权重"),
        ("\x1b[2J\x1b[31mred", "[2J[31mred"),
        ("csi\x9b31m and osc\x1b]0;title\x07", "csi31m and osc]0;title"),
        ("line\r\nforged\tline\x00\x7f", "lineforgedline"),
    ],
)
def test_the_client_shows_remote_text_without_control_characters(text, shown):
    assert download.shown(text) == shown


def test_the_client_prints_no_terminal_escapes_from_a_portal_refusal(backend, tmp_path):  # noqa: F811
    backend.portal_error = (403, "gated\x1b[2J", "You need\x1b[2J\x1b[31m access.\r\nAll files verified.\x9b0m")
    result = run_client(backend, tmp_path / "opt")
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert controls(output.replace("\n", "")) == []
    assert "You need[2J[31m access.All files verified.0m" in result.stderr
    assert not any(line.startswith("All files verified") for line in output.splitlines())


def test_the_client_keeps_its_own_hint_on_a_line_of_its_own(backend, tmp_path):  # noqa: F811
    backend.portal_error = (403, "gated", "You need\x1b[31m access.")
    result = run_client(backend, tmp_path / "opt")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == download.REFUSAL_HINTS["gated"]


def test_the_client_prints_no_terminal_escapes_from_file_names(backend, tmp_path):  # noqa: F811
    good = backend.manifest(1)["files"][0]
    evil = "weights\x9b2J\x9b31m.bin"  # C1 controls: not refused as a path, but never printed raw
    backend.raw_manifest_files = [dict(good, path=evil, url=good["url"].replace(good["path"], "missing"))]
    result = run_client(backend, tmp_path / "opt")
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "weights2J31m.bin" in result.stderr
    assert controls(output.replace("\n", "")) == []


# ---------------------------------------------------------------------------------------------- all of it, live


@pytest.mark.django_db(transaction=True)
def test_no_hostile_input_gets_a_500_from_a_real_server(portal, release, local_storage, alice, reviewer, client):
    token = {"Authorization": f"Bearer {token_secret(alice)}", "Content-Type": "application/json"}
    signed = signed_path(local_storage)
    attacks = [
        ("GET", f"/storage/99999999999/%C3%A9/{KEY}", {}, None),
        ("GET", signed, {"Range": f"bytes={HUGE}-"}, None),
        ("HEAD", signed, {"Range": f"bytes=-{HUGE}"}, None),
        *((method, path, {}, None) for method, path in HF_PATHS),
        ("POST", "/api/v1/access-requests", token, DEEP_JSON),
        ("GET", "/review/export/audit.csv?from=2024-02-30", {}, None),
        ("GET", "/review/export/downloads.csv?to=2024-13-01", {}, None),
    ]
    cookies = {"sessionid": login_recently(client, reviewer).cookies["sessionid"].value}
    for method, path, headers, body in attacks:
        response = requests.request(
            method, portal + path, headers=headers, data=body, cookies=cookies, timeout=30, allow_redirects=False
        )
        assert response.status_code < 500, (method, path, response.status_code)
        if path.startswith("/review/"):
            assert response.status_code == 400 and "YYYY-MM-DD" in response.text, path
        elif response.status_code >= 400 and response.content:
            assert response.headers["Content-Type"] == "application/json", (method, path)
            assert response.json()["code"] and response.json()["detail"], (method, path)
