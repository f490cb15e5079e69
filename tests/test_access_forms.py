"""Per-release access forms: the questions a release manager adds, the one validator the web form and the API
share, headless apply from the JSON Schema, uploads that only reviewers read, and what reviewers see."""

import csv
import io
import json

import jsonschema
import pytest
import requests
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from rest_framework.test import APIClient

from access import services
from access.models import AccessQuestion, AccessRequest, AuditEvent, ModelRelease, RequestAnswer, RequestAttachment
from access.storage import get_storage
from tests.factories import (
    ANSWERS,
    PDF,
    PNG,
    AccessRequestFactory,
    ReleaseFactory,
    UserFactory,
    add_question,
    token_secret,
)
from tests.support.auth import login_recently

pytestmark = pytest.mark.django_db

FORM = {**ANSWERS, "accept_license": "on", "noncommercial_attested": "on"}
BODY = {**ANSWERS, "accept_license": True, "noncommercial_attested": True}


@pytest.fixture
def release(local_storage):
    """A gated release with a choice question and a required attestation, like opt-175b in the demo catalog."""
    release = ReleaseFactory(repo_id="facebook/opt-175b", access="gated")
    add_question(
        release,
        "compute",
        kind="choice",
        label_zh="您将在哪里运行该模型？",
        options={
            "choices": [
                {"value": "cluster", "label_en": "University cluster", "label_zh": "大学集群"},
                {"value": "cloud", "label_en": "Cloud", "label_zh": "云"},
            ]
        },
    )
    add_question(release, "no_redistribution", kind="attestation", label_en="I will not share the weights")
    return release


@pytest.fixture
def uploads(local_storage):
    """A gated release whose form asks for an ethics approval letter (PDF or PNG, at most 1 KiB)."""
    release = ReleaseFactory(repo_id="facebook/opt-66b", access="gated")
    add_question(release, "ethics_approval", kind="file", options={"max_size": 1024, "types": ["pdf", "png"]})
    return release


@pytest.fixture
def manager(db):
    user = UserFactory(email="mona@portal.example")
    services.release_manager_add(actor=services.command_actor("add_reviewer"), user=user)
    return user


def api_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_secret(user)}")
    return client


def session_actor(user, **kwargs):
    return services.Actor(user=user, credential="session", reauthenticated=kwargs.get("recent", True))


# --- The release manager's questions -----------------------------------------------------------------------


def test_only_release_managers_change_a_form_and_each_change_is_audited(release, manager, reviewer):
    with pytest.raises(services.Forbidden):
        services.question_create(
            actor=session_actor(reviewer), release=release, key="x", fields={"kind": "url", "label_en": "X"}
        )
    with pytest.raises(services.Forbidden) as stale:
        services.question_create(
            actor=session_actor(manager, recent=False),
            release=release,
            key="x",
            fields={"kind": "url", "label_en": "X"},
        )
    assert stale.value.code == "reauthentication_required"
    question = services.question_create(
        actor=session_actor(manager), release=release, key="lab_page", fields={"kind": "url", "label_en": "Lab page"}
    )
    event = AuditEvent.objects.get(action="question.created", actor=manager)
    assert event.actor == manager and event.data["key"] == "lab_page" and event.data["version"] == 1
    assert question.position > release.questions.get(key="no_redistribution").position


def test_a_question_is_edited_in_place_until_the_release_has_requests_then_versioned(release, manager, alice):
    compute = release.questions.get(key="compute")
    actor = session_actor(manager)
    same = services.question_update(actor=actor, question=compute, fields={"label_en": "Where will it run?"})
    assert same.pk == compute.pk and same.version == 1

    request = AccessRequestFactory(applicant=alice, release=release)
    RequestAnswer.objects.create(request=request, question=same, value="cloud")
    newer = services.question_update(actor=actor, question=same, fields={"label_en": "Which compute will you use?"})
    assert newer.pk != same.pk and newer.version == 2
    same.refresh_from_db()
    assert same.retired_at is not None and same.label_en == "Where will it run?"
    # The old answer keeps the question text it answered; the form shows the new one.
    assert request.answers.get().question.label_en == "Where will it run?"
    assert [q.key for q in AccessQuestion.objects.filter(release=release, retired_at__isnull=True)] == [
        "compute",
        "no_redistribution",
    ]
    event = AuditEvent.objects.filter(action="question.updated").last()
    assert event.data == {"key": "compute", "version": 2, "from_version": 1, "fields": ["label_en"]}


def test_bad_options_are_refused_with_the_field(release, manager):
    with pytest.raises(services.ServiceError) as one_choice:
        services.question_create(
            actor=session_actor(manager),
            release=release,
            key="tier",
            fields={"kind": "choice", "label_en": "Tier", "options": {"choices": [{"value": "a"}]}},
        )
    assert one_choice.value.field == "options"
    with pytest.raises(services.ServiceError) as huge:
        services.question_create(
            actor=session_actor(manager),
            release=release,
            key="letter",
            fields={"kind": "file", "label_en": "Letter", "options": {"max_size": 10**9}},
        )
    assert huge.value.field == "options"


def test_the_manager_edits_in_the_portal_and_previews_the_form(client, release, manager):
    login_recently(client, manager)
    page = client.get("/manage/facebook/opt-175b/")
    assert page.status_code == 200 and "no_redistribution" in page.content.decode()
    response = client.post(
        "/manage/facebook/opt-175b/",
        {"key": "orcid", "kind": "url", "label_en": "ORCID profile", "label_zh": "ORCID 主页", "required": ""},
    )
    assert response.status_code == 302
    assert release.questions.get(key="orcid").required is False
    preview = client.get("/manage/facebook/opt-175b/preview", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "ORCID 主页" in preview and "您将在哪里运行该模型？" in preview
    assert 'type="submit"' not in preview.split('id="preview-form"')[1]
    response = client.post("/manage/facebook/opt-175b/questions/orcid/retire")
    assert response.status_code == 302
    assert not release.questions.filter(key="orcid").exists()  # never answered: gone, not kept


def test_the_manage_pages_do_not_exist_for_reviewers(client, release, reviewer):
    login_recently(client, reviewer)
    assert client.get("/manage/facebook/opt-175b/").status_code == 404
    assert client.get("/manage/facebook/opt-175b/preview").status_code == 404


# --- One validator, two channels -----------------------------------------------------------------------------


INVALID = {
    "answers.compute": "mainframe",  # not a choice
    "intended_use": "Too short.",
    "full_name": "Alice\x1b[31mExample",
}


def test_the_web_form_and_the_api_refuse_the_same_answers_with_the_same_errors(client, release, alice):
    client.force_login(alice)
    web = client.post("/models/facebook/opt-175b/apply", {**FORM, **INVALID})  # attestation left unticked
    assert web.status_code == 200
    web_errors = {name: list(errors) for name, errors in web.context["form"].errors.items()}
    body = web.content.decode()
    for name in web_errors:
        assert f'id="errors-{name}"' in body  # each error next to its field
    assert 'value="University of Examples"' in body  # answers kept

    api_body = dict(BODY)
    api_body.update(intended_use=INVALID["intended_use"], full_name=INVALID["full_name"])
    api_body.update(repo_id="facebook/opt-175b", answers={"compute": "mainframe", "no_redistribution": False})
    api = api_for(alice).post("/api/v1/access-requests", api_body, format="json")
    assert api.status_code == 400
    assert api.json()["code"] == "invalid"
    assert api.json()["fields"] == web_errors
    assert set(web_errors) == {"answers.compute", "answers.no_redistribution", "intended_use", "full_name"}
    assert not AccessRequest.objects.exists()


def test_the_api_names_wrong_types_and_unknown_questions(release, alice):
    add_question(release, "start", kind="date", required=False)
    body = {
        **BODY,
        "full_name": True,
        "repo_id": "facebook/opt-175b",
        "answers": {"compute": ["cloud"], "no_redistribution": "yes", "start": 20250101, "shoe_size": "44"},
    }
    response = api_for(alice).post("/api/v1/access-requests", body, format="json")
    assert response.status_code == 400
    assert response.json()["fields"] == {
        "full_name": ["Expected a string."],
        "answers.compute": ["Expected a string."],
        "answers.no_redistribution": ["Expected true or false."],
        "answers.start": ["Expected a string."],
        "answers.shoe_size": ["Unknown question."],
    }
    body["full_name"], body["answers"] = (
        "Alice Example",
        {"compute": "cloud", "no_redistribution": True, "start": "2025-13-01"},
    )
    assert api_for(alice).post("/api/v1/access-requests", body, format="json").json()["fields"] == {
        "answers.start": ["Enter a real day as YYYY-MM-DD, e.g. 2024-02-29."]
    }


def test_the_web_form_shows_and_stores_the_release_questions(client, release, alice):
    client.force_login(alice)
    page = client.get("/models/facebook/opt-175b/apply", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "您将在哪里运行该模型？" in page and "大学集群" in page
    response = client.post(
        "/models/facebook/opt-175b/apply",
        {**FORM, "answers.compute": "cloud", "answers.no_redistribution": "on"},
    )
    assert response.status_code == 302
    request = AccessRequest.objects.get()
    assert {a.question.key: a.value for a in request.answers.all()} == {"compute": "cloud", "no_redistribution": True}


# --- Headless apply --------------------------------------------------------------------------------------------


def fill(schema: dict) -> dict:
    """A body built from the schema alone, as a script would: the standard answers, the first choice of each
    choice question, every attestation ticked."""
    body = {"repo_id": schema["properties"]["repo_id"]["const"], **BODY}
    answers = {}
    for key, prop in schema["properties"]["answers"]["properties"].items():
        if "oneOf" in prop:
            answers[key] = prop["oneOf"][0]["const"]
        elif prop.get("type") == "boolean":
            answers[key] = True
    body["answers"] = answers
    return body


@pytest.mark.django_db(transaction=True)
def test_a_researcher_applies_to_opt_175b_with_the_api_alone(live_server, settings, local_storage, alice):
    """The demo catalog's opt-175b, over HTTP only: read the form, answer it as JSON, follow the request."""
    settings.SITE_URL = live_server.url
    call_command("load_demo_catalog", "--size", "16", "--only", "facebook/opt-175b", stdout=io.StringIO())
    token = token_secret(alice)
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{live_server.url}/api/v1/models/facebook/opt-175b/access-form"

    schema = requests.get(url, headers=headers, timeout=30).json()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["x-license"]["slug"] == "opt-175b-noncommercial" and schema["x-license"]["version"] == "1.0"
    assert "NON-COMMERCIAL" in schema["x-license"]["text"]
    answers = schema["properties"]["answers"]
    assert answers["properties"]["compute"]["oneOf"][0] == {
        "const": "university_cluster",
        "title": "University or institute cluster",
    }
    assert answers["properties"]["no_redistribution"]["const"] is True
    assert set(answers["required"]) == {"compute", "no_redistribution"}

    body = fill(schema)
    jsonschema.validate(body, schema, cls=jsonschema.Draft202012Validator)
    unticked = {**body, "answers": {**body["answers"], "no_redistribution": False}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(unticked, schema, cls=jsonschema.Draft202012Validator)
    refused = requests.post(f"{live_server.url}/api/v1/access-requests", json=unticked, headers=headers, timeout=30)
    assert refused.status_code == 400 and list(refused.json()["fields"]) == ["answers.no_redistribution"]

    created = requests.post(f"{live_server.url}/api/v1/access-requests", json=body, headers=headers, timeout=30)
    assert created.status_code == 201, created.text
    request = created.json()
    assert request["status"] == "pending" and request["license_version"] == "1.0"
    assert request["answers"] == {"compute": "university_cluster", "no_redistribution": True}
    assert request["questions"]["compute"] == {"label": "Where will you run the model?", "version": 1}

    chinese = requests.get(url, headers={"Accept-Language": "zh-CN"}, timeout=30).json()
    assert chinese["properties"]["answers"]["properties"]["compute"]["title"] == "您将在哪里运行该模型？"
    assert chinese["properties"]["full_name"]["title"] != schema["properties"]["full_name"]["title"]


def test_the_access_form_of_an_open_or_unknown_release_is_not_found(client, local_storage):
    ReleaseFactory(repo_id="facebook/opt-125m", access="open")
    open_form = client.get("/api/v1/models/facebook/opt-125m/access-form")
    assert open_form.status_code == 404 and "no request is needed" in open_form.json()["detail"]
    assert client.get("/api/v1/models/facebook/nope/access-form").status_code == 404


@pytest.mark.slow  # loads the whole 992-file demo release
def test_the_demo_catalog_asks_its_own_questions(local_storage):
    call_command("load_demo_catalog", "--size", "16", "--only", "facebook/opt-66b", stdout=io.StringIO())
    call_command("load_demo_catalog", "--size", "16", "--only", "facebook/opt-175b", stdout=io.StringIO())
    big = ModelRelease.objects.get(repo_id="facebook/opt-175b")
    assert [(q.key, q.kind, q.required) for q in big.questions.all()] == [
        ("compute", "choice", True),
        ("no_redistribution", "attestation", True),
    ]
    assert all(q.label_zh for q in big.questions.all())
    [upload] = ModelRelease.objects.get(repo_id="facebook/opt-66b").questions.all()
    assert (upload.key, upload.kind, upload.options["types"]) == ("ethics_approval", "file", ["pdf", "png", "jpeg"])
    call_command("load_demo_catalog", "--size", "16", "--only", "facebook/opt-175b", stdout=io.StringIO())
    assert big.questions.count() == 2  # loading again adds nothing


# --- Uploads -------------------------------------------------------------------------------------------------


def test_an_upload_question_through_the_api_draft_attach_submit(uploads, alice, reviewer, client):
    api = api_for(alice)
    body = {**BODY, "repo_id": "facebook/opt-66b"}
    direct = api.post("/api/v1/access-requests", body, format="json")
    assert direct.status_code == 400 and direct.json()["code"] == "upload_required"
    assert "attachments" in direct.json()["fields"]["answers.ethics_approval"][0]

    draft = api.post("/api/v1/access-requests", {**body, "draft": True}, format="json").json()
    assert draft["status"] == "draft"
    url = f"/api/v1/access-requests/{draft['id']}"
    assert api.post(f"{url}/submit").json()["code"] == "upload_required"
    wrong = api.post(f"{url}/attachments", {"question": "ethics_approval", "file": SimpleUploadedFile("a.pdf", b"MZ")})
    assert wrong.status_code == 400 and wrong.json()["fields"] == {
        "answers.ethics_approval": ["Upload a PDF or PNG file."]
    }
    big = SimpleUploadedFile("big.pdf", PDF + b"x" * 2000)
    assert "limit" in api.post(f"{url}/attachments", {"question": "ethics_approval", "file": big}).json()["detail"]

    ok = api.post(f"{url}/attachments", {"question": "ethics_approval", "file": SimpleUploadedFile("../irb.pdf", PDF)})
    assert ok.status_code == 201, ok.json()
    attachment = RequestAttachment.objects.get(public_id=ok.json()["id"])
    assert attachment.filename == "irb.pdf" and attachment.content_type == "application/pdf"
    assert attachment.storage_key.startswith("_attachments/")
    with get_storage().open(attachment.storage_key) as f:
        assert f.read() == PDF
    submitted = api.post(f"{url}/submit").json()
    assert submitted["status"] == "pending"
    assert submitted["answers"] == {"ethics_approval": attachment.public_id}
    assert (
        api.post(
            f"{url}/attachments", {"question": "ethics_approval", "file": SimpleUploadedFile("b.pdf", PDF)}
        ).status_code
        == 409
    )

    # Only reviewers read it, and each read is audited.
    assert api.get(f"/api/v1/review/attachments/{attachment.public_id}").status_code == 403
    client.force_login(alice)
    assert client.get(f"/review/attachments/{attachment.public_id}").status_code == 404
    client.force_login(reviewer)
    page = client.get(f"/review/requests/{draft['id']}/").content.decode()
    assert f"/review/attachments/{attachment.public_id}" in page
    response = client.get(f"/review/attachments/{attachment.public_id}")
    assert response.status_code == 200 and b"".join(response.streaming_content) == PDF
    assert response["Content-Disposition"].startswith("attachment;")
    review_token = services.token_create(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True), name="r", review=True
    )[1]
    reviewer_api = APIClient()
    reviewer_api.credentials(HTTP_AUTHORIZATION=f"Bearer {review_token}")
    assert b"".join(reviewer_api.get(f"/api/v1/review/attachments/{attachment.public_id}").streaming_content) == PDF
    assert AuditEvent.objects.filter(action="attachment.read", actor=reviewer).count() == 2


def test_the_web_form_takes_the_upload_with_the_application(client, uploads, alice):
    client.force_login(alice)
    page = client.get("/models/facebook/opt-66b/apply").content.decode()
    assert 'enctype="multipart/form-data"' in page and 'accept="application/pdf,image/png"' in page
    refused = client.post(
        "/models/facebook/opt-66b/apply",
        {**FORM, "answers.ethics_approval": SimpleUploadedFile("x.jpg", b"\xff\xd8\xff")},
    )
    assert refused.context["form"].errors["answers.ethics_approval"] == ["Upload a PDF or PNG file."]
    response = client.post(
        "/models/facebook/opt-66b/apply", {**FORM, "answers.ethics_approval": SimpleUploadedFile("scan.png", PNG)}
    )
    assert response.status_code == 302
    request = AccessRequest.objects.get()
    assert request.status == "pending"
    assert request.attachments.get().filename == "scan.png"


def test_while_more_information_is_asked_for_the_applicant_adds_a_file(client, uploads, alice, reviewer):
    request = AccessRequestFactory(applicant=alice, release=uploads)
    services.request_ask_info(
        actor=session_actor(reviewer), access_request=request, question="Please attach your IRB letter."
    )
    client.force_login(alice)
    assert 'id="attachments-upload"' in client.get(f"/requests/{request.public_id}/").content.decode()
    client.post(
        f"/requests/{request.public_id}/attachments",
        {"question": "ethics_approval", "file": SimpleUploadedFile("irb.pdf", PDF)},
    )
    assert request.attachments.get().filename == "irb.pdf"
    assert AuditEvent.objects.filter(action="request.attachment_added", request=request).exists()


# --- What reviewers see -----------------------------------------------------------------------------------------


def test_reviewers_see_answers_on_the_page_in_search_in_the_export_and_the_api(client, release, alice, reviewer):
    api_for(alice).post(
        "/api/v1/access-requests",
        {**BODY, "repo_id": "facebook/opt-175b", "answers": {"compute": "cloud", "no_redistribution": True}},
        format="json",
    )
    request = AccessRequest.objects.get()
    login_recently(client, reviewer)
    page = client.get(f"/review/requests/{request.public_id}/").content.decode()
    assert 'id="answer-compute">Cloud<' in page and "I will not share the weights" in page

    found = client.get("/review/", {"search": "Cloud"}).content.decode()
    assert request.public_id in found
    assert request.public_id not in client.get("/review/", {"search": "mainframe"}).content.decode()

    export = client.get("/review/export/requests.csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert [row["id"] for row in rows] == [request.public_id]
    assert json.loads(rows[0]["answers"]) == {"compute": "Cloud", "no_redistribution": "Yes"}
    assert rows[0]["license_version"] == "1.0"

    token = services.token_create(actor=session_actor(reviewer), name="r", review=True)[1]
    reviewer_api = APIClient()
    reviewer_api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    listed = reviewer_api.get("/api/v1/review/access-requests", {"search": "cloud"}).json()["results"]
    assert [(r["id"], r["answers"]) for r in listed] == [
        (request.public_id, {"compute": "cloud", "no_redistribution": True})
    ]
