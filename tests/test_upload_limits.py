"""Uploads to access requests are capped: files per question and per request (413 `upload_too_large`) and bytes
per person per UTC day (429 `upload_limit`), on the API and the web form alike, and under concurrency. A draft
already over a cap is not submitted until files are removed, which the applicant does on the request's page or
with DELETE …/attachments/{id}."""

import threading
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from rest_framework.test import APIClient

from access import services
from access.models import AccessRequest, AuditEvent, RequestAttachment
from access.storage import LocalStorage
from tests.factories import ANSWERS, PDF, ReleaseFactory, UserFactory, add_question, token_secret

pytestmark = pytest.mark.django_db

BODY = {**ANSWERS, "repo_id": "facebook/opt-66b", "accept_license": True, "noncommercial_attested": True}
KIB = b"%PDF-1.4\n" + b"x" * 1015  # 1024 bytes


@pytest.fixture
def release(local_storage):
    """A gated release asking for an ethics letter and a data management plan (PDF, at most 4 KiB each)."""
    release = ReleaseFactory(repo_id="facebook/opt-66b", access="gated")
    add_question(release, "ethics_approval", kind="file", options={"max_size": 4096, "types": ["pdf"]})
    add_question(release, "data_plan", kind="file", required=False, options={"max_size": 4096, "types": ["pdf"]})
    return release


def api_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_secret(user)}")
    return client


def draft(api) -> str:
    response = api.post("/api/v1/access-requests", {**BODY, "draft": True}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def upload(api, request_id, question="ethics_approval", content=PDF, name="letter.pdf"):
    return api.post(
        f"/api/v1/access-requests/{request_id}/attachments",
        {"question": question, "file": SimpleUploadedFile(name, content)},
    )


def test_a_question_takes_at_most_three_files_through_the_api(release, alice):
    api = api_for(alice)
    request_id = draft(api)
    for i in range(3):
        assert upload(api, request_id, name=f"letter-{i}.pdf").status_code == 201
    refused = upload(api, request_id, name="letter-3.pdf")
    assert refused.status_code == 413
    assert refused.json()["code"] == "upload_too_large"
    assert "3 files" in refused.json()["detail"]
    assert RequestAttachment.objects.filter(request__public_id=request_id).count() == 3
    assert upload(api, request_id, question="data_plan").status_code == 201


def test_a_request_takes_at_most_its_cap_of_files_through_the_api_and_the_web_form(release, alice, client, settings):
    settings.UPLOAD_MAX_FILES_PER_REQUEST = 4
    api = api_for(alice)
    request_id = draft(api)
    for question in ("ethics_approval", "ethics_approval", "ethics_approval", "data_plan"):
        assert upload(api, request_id, question=question).status_code == 201
    refused = upload(api, request_id, question="data_plan")
    assert refused.status_code == 413 and refused.json()["code"] == "upload_too_large"
    assert "4 files" in refused.json()["detail"]
    client.force_login(alice)
    page = client.post(
        f"/requests/{request_id}/attachments",
        {"question": "data_plan", "file": SimpleUploadedFile("plan.pdf", PDF)},
        follow=True,
    ).content.decode()
    assert "4 files" in page
    assert RequestAttachment.objects.filter(request__public_id=request_id).count() == 4


def test_a_person_uploads_at_most_the_daily_bytes_across_requests(release, alice, bob, settings):
    settings.UPLOAD_MAX_BYTES_PER_USER_DAY = 3 * 1024
    api = api_for(alice)
    first = draft(api)
    other = ReleaseFactory(repo_id="facebook/opt-30b", access="gated")
    add_question(other, "ethics_approval", kind="file", options={"max_size": 4096, "types": ["pdf"]})
    second = api.post(
        "/api/v1/access-requests", {**BODY, "repo_id": "facebook/opt-30b", "draft": True}, format="json"
    ).json()["id"]
    assert upload(api, first, content=KIB).status_code == 201
    assert upload(api, second, content=KIB).status_code == 201
    assert upload(api, first, question="data_plan", content=KIB).status_code == 201
    refused = upload(api, second, content=KIB)
    assert refused.status_code == 429
    assert refused.json()["code"] == "upload_limit"
    assert "3 KiB" in refused.json()["detail"] and "1 KiB" in refused.json()["detail"]
    assert 0 < int(refused["Retry-After"]) <= 86400
    # A removed file still counts: removing and uploading again does not reset the day.
    attachment = RequestAttachment.objects.filter(request__public_id=first).first()
    assert api.delete(f"/api/v1/access-requests/{first}/attachments/{attachment.public_id}").status_code == 204
    assert upload(api, first, content=KIB).status_code == 429
    # Another person has a day of their own.
    assert upload(api_for(bob), draft(api_for(bob)), content=KIB).status_code == 201


def test_a_draft_over_the_cap_is_submitted_only_once_files_are_removed(release, alice, settings):
    """A draft that took more files than the cap allows (uploaded while the cap was higher) is refused at
    submission, naming the numbers; the applicant removes files through the API, then submits."""
    api = api_for(alice)
    request_id = draft(api)
    access_request = AccessRequest.objects.get(public_id=request_id)
    settings.UPLOAD_MAX_FILES_PER_QUESTION = 10
    for i in range(5):
        assert upload(api, request_id, name=f"l{i}.pdf").status_code == 201
    settings.UPLOAD_MAX_FILES_PER_QUESTION = 3
    refused = api.post(f"/api/v1/access-requests/{request_id}/submit")
    assert refused.status_code == 413 and refused.json()["code"] == "upload_too_large"
    assert "5" in refused.json()["detail"] and "3" in refused.json()["detail"]
    assert AccessRequest.objects.get(public_id=request_id).status == "draft"
    files = api.get(f"/api/v1/access-requests/{request_id}").json()["attachments"]
    assert len(files) == 5
    for attachment in files[:2]:
        response = api.delete(f"/api/v1/access-requests/{request_id}/attachments/{attachment['id']}")
        assert response.status_code == 204
    kept = api.get(f"/api/v1/access-requests/{request_id}").json()
    assert [a["id"] for a in kept["attachments"]] == [a["id"] for a in files[2:]]
    assert kept["answers"]["ethics_approval"] == files[-1]["id"]
    submitted = api.post(f"/api/v1/access-requests/{request_id}/submit")
    assert submitted.status_code == 200 and submitted.json()["status"] == "pending"
    removed = AuditEvent.objects.filter(action="request.attachment_removed", request=access_request)
    assert removed.count() == 2 and removed.first().actor == alice


def test_the_applicant_removes_a_file_on_the_request_page(release, alice, client, reviewer):
    api = api_for(alice)
    request_id = draft(api)
    first = upload(api, request_id, name="first.pdf").json()["id"]
    second = upload(api, request_id, name="second.pdf").json()["id"]
    client.force_login(alice)
    page = client.get(f"/requests/{request_id}/").content.decode()
    assert "first.pdf" in page and "second.pdf" in page
    assert f"/requests/{request_id}/attachments/{second}/remove" in page
    response = client.post(f"/requests/{request_id}/attachments/{second}/remove", follow=True)
    assert response.status_code == 200
    page = response.content.decode()
    assert f'data-attachment="{second}"' not in page and f'data-attachment="{first}"' in page
    access_request = AccessRequest.objects.get(public_id=request_id)
    assert access_request.answers.get().value == first  # the newest file left answers the question
    event = AuditEvent.objects.get(action="request.attachment_removed")
    assert event.actor == alice and event.data["attachment"] == second and event.data["filename"] == "second.pdf"
    # Reviewers never see a removed file.
    services.request_submit_draft(actor=services.Actor(user=alice), access_request=access_request)
    client.force_login(reviewer)
    review_page = client.get(f"/review/requests/{request_id}/").content.decode()
    listed = review_page.split('<ul id="attachments">', 1)[1].split("</ul>", 1)[0]
    assert "first.pdf" in listed and "second.pdf" not in listed
    assert client.get(f"/review/attachments/{second}").status_code == 404


def test_only_the_applicant_removes_files_and_only_before_review(release, alice, bob):
    api = api_for(alice)
    request_id = draft(api)
    attachment = upload(api, request_id).json()["id"]
    url = f"/api/v1/access-requests/{request_id}/attachments/{attachment}"
    assert api_for(bob).delete(url).status_code == 404
    assert api.delete(f"/api/v1/access-requests/{request_id}/attachments/{'0' * 32}").status_code == 404
    assert api.post(f"/api/v1/access-requests/{request_id}/submit").status_code == 200
    refused = api.delete(url)
    assert refused.status_code == 409 and refused.json()["code"] == "invalid_transition"
    assert RequestAttachment.objects.filter(public_id=attachment).exists()
    assert not AuditEvent.objects.filter(action="request.attachment_removed").exists()


def test_the_removal_is_in_the_openapi_schema(client):
    schema = client.get("/api/schema", HTTP_ACCEPT="application/json").json()
    path = schema["paths"]["/api/v1/access-requests/{public_id}/attachments/{attachment_id}/"]
    assert path["delete"]["operationId"] == "access_requests_attachments_destroy"
    uploads = schema["paths"]["/api/v1/access-requests/{public_id}/attachments/"]["post"]["responses"]
    assert "413" in uploads and "429" in uploads


@pytest.fixture
def slow_storage(monkeypatch):
    """Storage that takes a while to keep each file, so two uploads started together overlap."""
    save = LocalStorage.save

    def slow_save(self, key, fileobj, **kwargs):
        time.sleep(0.3)
        return save(self, key, fileobj, **kwargs)

    monkeypatch.setattr(LocalStorage, "save", slow_save)


def at_once(*calls) -> list[int]:
    """Run the calls in threads started together; their HTTP statuses."""
    barrier, statuses = threading.Barrier(len(calls)), []

    def go(call):
        barrier.wait()
        try:
            statuses.append(call().status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=go, args=(call,)) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(statuses)


@pytest.mark.django_db(transaction=True)
def test_two_uploads_at_once_to_one_request_cannot_both_slip_under_the_cap(release, slow_storage):
    alice = UserFactory()
    api = api_for(alice)
    request_id = draft(api)
    for i in range(2):
        assert upload(api, request_id, name=f"l{i}.pdf").status_code == 201
    assert at_once(lambda: upload(api_for(alice), request_id), lambda: upload(api_for(alice), request_id)) == [
        201,
        413,
    ]
    assert RequestAttachment.objects.filter(request__public_id=request_id).count() == 3


@pytest.mark.django_db(transaction=True)
def test_two_uploads_at_once_to_two_requests_cannot_both_slip_under_the_daily_bytes(release, slow_storage, settings):
    settings.UPLOAD_MAX_BYTES_PER_USER_DAY = 2 * 1024
    alice = UserFactory()
    api = api_for(alice)
    first = draft(api)
    other = ReleaseFactory(repo_id="facebook/opt-30b", access="gated")
    add_question(other, "ethics_approval", kind="file", options={"max_size": 4096, "types": ["pdf"]})
    second = api.post(
        "/api/v1/access-requests", {**BODY, "repo_id": "facebook/opt-30b", "draft": True}, format="json"
    ).json()["id"]
    assert upload(api, first, content=KIB).status_code == 201
    statuses = at_once(
        lambda: upload(api_for(alice), first, question="data_plan", content=KIB),
        lambda: upload(api_for(alice), second, content=KIB),
    )
    assert statuses == [201, 429]
    assert RequestAttachment.objects.filter(request__applicant=alice).count() == 2


def test_on_a_needs_information_request_the_question_and_answer_come_before_the_upload_panel(
    client, release, alice, reviewer
):
    api = api_for(alice)
    request_id = draft(api)
    assert upload(api, request_id).status_code == 201
    assert api.post(f"/api/v1/access-requests/{request_id}/submit").status_code == 200
    access_request = AccessRequest.objects.get(public_id=request_id)
    services.request_ask_info(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True),
        access_request=access_request,
        question="Which committee approved the study?",
    )
    client.force_login(alice)
    page = client.get(f"/requests/{request_id}/").content.decode()
    question, answer = page.index('id="info-request"'), page.index("Send answer")
    panel = page.index('id="attachments-upload"')
    assert question < answer < panel
    assert page.count('id="attachments-upload"') == 1
    assert '<h2 id="attachments-title">Files for the questions of the request form</h2>' in page
