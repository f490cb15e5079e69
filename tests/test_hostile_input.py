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
from tests.factories import ANSWERS, ReleaseFactory, add_file, token_secret
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
@pytest.mark.parametrize(("start", "end"), [("2024-02-29", "2024-03-01"), ("1900-01-01", "2999-12-31")])
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


# --------------------------------------------------------------------------------------- numbers and days at their ends
# Every numeric and date parameter the portal takes has bounds: a day must be from 1900-01-01 to 2999-12-31 (date
# arithmetic near year 1 or 9999 leaves the calendar), an integer must fit its parameter (2**64 fits no column).

BIG = str(2**64)
DAYS_PAST_THE_ENDS = [
    "to=0001-01-05",
    "from=9999-12-01&to=9999-12-31",
    "from=0001-01-01&to=0001-01-31",
    "to=9999-12-31",
    "from=1899-12-31&to=1900-01-05",
    "from=2999-12-31&to=3000-01-01",
]


@pytest.mark.django_db
@pytest.mark.parametrize("query", DAYS_PAST_THE_ENDS)
def test_stats_days_past_either_end_of_the_calendar_are_a_400_with_a_code(reviewer_client, query):
    response = reviewer_client.get(f"/api/v1/review/stats?{query}")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "date_out_of_range"
    assert "1900-01-01" in body["detail"] and "2999-12-31" in body["detail"]


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["from=1900-01-01&to=1900-03-31", "from=2999-10-01&to=2999-12-31"])
def test_stats_for_the_first_and_last_days_of_the_calendar(reviewer_client, query):
    response = reviewer_client.get(f"/api/v1/review/stats?{query}")
    assert response.status_code == 200
    assert response.json()["counts_by_status"]["pending"] == 0
    page = reviewer_client.get(f"/review/dashboard?{query}")
    assert page.status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("query", DAYS_PAST_THE_ENDS)
def test_dashboard_days_past_either_end_of_the_calendar_are_a_400_page_saying_so(reviewer_client, query):
    response = reviewer_client.get(f"/review/dashboard?{query}")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
    assert "from 1900-01-01 to 2999-12-31" in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("query", DAYS_PAST_THE_ENDS)
def test_export_days_past_either_end_of_the_calendar_are_a_400_page_saying_so(reviewer_client, query):
    response = reviewer_client.get(f"/review/export/requests.csv?{query}")
    assert response.status_code == 400
    assert "from 1900-01-01 to 2999-12-31" in response.content.decode()


@pytest.mark.django_db
def test_the_day_bound_message_is_translated(reviewer_client):
    response = reviewer_client.get("/api/v1/review/stats?to=0001-01-05", HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert response.status_code == 400
    assert "1900-01-01" in response.json()["detail"] and "日期" in response.json()["detail"]


@pytest.fixture
def manager(db, local_storage):
    from tests.factories import UserFactory

    user = UserFactory(email="mona@portal.example")
    services.release_manager_add(actor=services.command_actor("add_reviewer"), user=user)
    return user


@pytest.fixture
def gated_form(local_storage):
    from tests.factories import add_question

    release = ReleaseFactory(repo_id="facebook/opt-175b", access="gated")
    add_question(release, "approved_on", kind="date", label_en="Ethics approval date")
    return release


QUESTION = {"key": "notes", "kind": "long_text", "label_en": "Notes", "required": "on"}


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["position", "min_length", "max_length", "max_size_mib"])
@pytest.mark.parametrize("value", [BIG, "-" + BIG, "9" * 5000, "1e9"])
def test_question_numbers_past_their_bounds_are_a_form_error(client, manager, gated_form, field, value):
    login_recently(client, manager)
    kind = "file" if field == "max_size_mib" else "long_text"
    response = client.post("/manage/facebook/opt-175b/", {**QUESTION, "kind": kind, field: value})
    assert response.status_code == 400
    assert response.context["question_form"].errors[field]
    assert not gated_form.questions.filter(key="notes").exists()
    question = gated_form.questions.get(key="approved_on")
    response = client.post("/manage/facebook/opt-175b/questions/approved_on", {**QUESTION, "kind": kind, field: value})
    assert response.status_code == 400
    assert response.context["form"].errors[field]
    assert gated_form.questions.get(key="approved_on").pk == question.pk


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"position": 2**64}, "position"),
        ({"position": -(2**64)}, "position"),
        ({"position": "9" * 5000}, "position"),
        ({"kind": "long_text", "options": {"max_length": 2**64}}, "options"),
        ({"kind": "file", "options": {"max_size": 2**64}}, "options"),
    ],
)
def test_question_numbers_past_their_bounds_are_refused_by_the_service(manager, gated_form, fields, field):
    actor = services.Actor(user=manager, credential="session", reauthenticated=True)
    with pytest.raises(services.ServiceError) as refused:
        services.question_create(
            actor=actor, release=gated_form, key="notes", fields={"kind": "url", "label_en": "N", **fields}
        )
    assert refused.value.field == field and refused.value.status == 400
    assert not gated_form.questions.filter(key="notes").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("value", [BIG, "-" + BIG, "0", "366"])
def test_a_review_deadline_past_its_bounds_is_a_form_error(client, manager, gated_form, value):
    login_recently(client, manager)
    response = client.post("/manage/facebook/opt-175b/review", {"review_deadline_days": value})
    assert response.status_code == 400
    gated_form.refresh_from_db()
    assert gated_form.review_deadline_days == 7


@pytest.mark.django_db
@pytest.mark.parametrize(
    "changes", [{"lab_member_cap": 2**64}, {"lab_member_cap": -1}, {"review_deadline_days": 2**64}]
)
def test_release_numbers_past_their_bounds_are_refused_by_the_service(manager, gated_form, changes):
    actor = services.Actor(user=manager, credential="session", reauthenticated=True)
    services.reviewer_add(actor=services.command_actor("add_reviewer"), user=manager)
    with pytest.raises(services.ServiceError) as refused:
        services.release_update(actor=actor, release=gated_form, changes=changes)
    assert refused.value.field == next(iter(changes)) and refused.value.status == 400
    gated_form.refresh_from_db()
    assert (gated_form.lab_member_cap, gated_form.review_deadline_days) == (25, 7)


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["9999-12-31", "3000-01-01", "0001-01-01", "2024-02-30"])
def test_a_token_expiry_off_the_calendar_is_a_form_error(client, alice, value):
    client.force_login(alice)
    response = client.post("/tokens/", {"name": "cluster", "expires_at": value})
    assert response.status_code == 400
    assert response.context["form"].errors["expires_at"]
    assert not alice.api_tokens.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["9999-12-31", "0001-01-01", "1899-12-31", "3000-01-01"])
def test_a_date_answer_off_the_calendar_is_refused_by_the_api_and_the_web_form(api, client, alice, gated_form, value):
    body = {
        **ANSWERS,
        "repo_id": "facebook/opt-175b",
        "accept_license": True,
        "noncommercial_attested": True,
        "answers": {"approved_on": value},
    }
    response = api.post("/api/v1/access-requests", body, format="json")
    assert response.status_code == 400
    assert "1900-01-01" in response.json()["fields"]["answers.approved_on"][0]
    client.force_login(alice)
    form = {**ANSWERS, "accept_license": "on", "noncommercial_attested": "on", "answers.approved_on": value}
    page = client.post("/models/facebook/opt-175b/apply", form)
    assert "1900-01-01" in page.context["form"].errors["answers.approved_on"][0]
    assert not AccessRequest.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "status", "code"),
    [
        (f"/api/v1/models?page={BIG}", 404, "not_found"),
        (f"/api/v1/models?page=-{BIG}", 404, "not_found"),
        (f"/api/v1/models?page_size={BIG}", 400, "number_out_of_range"),
        (f"/api/v1/models?page_size=-{BIG}", 400, "number_out_of_range"),
        (f"/api/models/facebook/opt-125m/tree/main?cursor={BIG}", 400, "number_out_of_range"),
        (f"/api/models/facebook/opt-125m/tree/main?cursor=-{BIG}", 400, "number_out_of_range"),
        (f"/api/v1/review/stats?period={BIG}", 400, "invalid_period"),
        (f"/api/v1/review/access-requests?page={BIG}", 404, "not_found"),
    ],
)
def test_integers_past_64_bits_in_api_queries_are_a_clean_4xx(reviewer_client, release, url, status, code):
    response = reviewer_client.get(url)
    assert response.status_code == status
    assert response.json()["code"] == code


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        f"/review/?page={BIG}",
        f"/review/?page=-{BIG}",
        f"/review/grants/?page={BIG}",
        f"/tokens/{BIG}/revoke",
        f"/storage/{BIG}/{'0' * 64}/{KEY}",
        f"/storage/-{BIG}/{'0' * 64}/{KEY}",
    ],
)
def test_integers_past_64_bits_in_page_queries_and_paths_are_a_clean_4xx(reviewer_client, release, url):
    response = reviewer_client.get(url)
    assert 400 <= response.status_code < 500


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
        ("GET", "/api/v1/review/stats?to=0001-01-05", {}, None),
        ("GET", "/api/v1/review/stats?from=9999-12-01&to=9999-12-31", {}, None),
        ("GET", "/review/dashboard?to=0001-01-05", {}, None),
        ("GET", "/review/dashboard?from=9999-12-01&to=9999-12-31", {}, None),
        ("GET", f"/api/models/facebook/opt-125m/tree/main?cursor={BIG}", {}, None),
    ]
    cookies = {"sessionid": login_recently(client, reviewer).cookies["sessionid"].value}
    for method, path, headers, body in attacks:
        response = requests.request(
            method, portal + path, headers=headers, data=body, cookies=cookies, timeout=30, allow_redirects=False
        )
        assert response.status_code < 500, (method, path, response.status_code)
        if path.startswith("/review/dashboard"):
            assert response.status_code == 400 and "1900-01-01" in response.text, path
        elif path.startswith("/review/"):
            assert response.status_code == 400 and "YYYY-MM-DD" in response.text, path
        elif response.status_code >= 400 and response.content:
            assert response.headers["Content-Type"] == "application/json", (method, path)
            assert response.json()["code"] and response.json()["detail"], (method, path)
