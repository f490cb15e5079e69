"""Release documents and what it takes to run a release: the services (who may write, what is audited and told to
webhooks), reading through the gate (a holders-only document is refused to others on every page and API call),
acknowledging (a new version asks again), the release page and API detail signed out, and the release managers'
pages."""

from __future__ import annotations

import hashlib

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from access import services
from access.models import AuditEvent, DocumentAcknowledgement, DownloadEvent, ModelRelease, WebhookDelivery
from access.services import documents as document_services
from tests.factories import ReleaseFactory, UserFactory, add_file, grant_for, token_secret
from tests.support.auth import login_recently

pytestmark = pytest.mark.django_db

ADMIN = services.command_actor("tests")


@pytest.fixture
def manager(db):
    user = UserFactory(email="mia@portal.example")
    return services.release_manager_add(actor=services.command_actor("add_release_manager"), user=user)


def session(user):
    return services.Actor(user=user, credential="session", reauthenticated=True)


@pytest.fixture
def release(local_storage):
    release = ReleaseFactory(repo_id="facebook/opt-175b", access="gated", parameters=175_000_000_000)
    add_file(release, "config.json", b'{"model_type": "opt"}\n')
    add_file(release, "shard0.pt", b"\x00" * 4096)
    release.refresh_from_db()
    return release


@pytest.fixture
def downstream(release, manager):
    return services.document_create(
        actor=session(manager),
        release=release,
        kind="downstream",
        title="Information for downstream providers",
        body="# For downstream providers\nRead me first.",
        visibility="holders",
        acknowledge_required=True,
    )


@pytest.fixture
def logbook(release, manager):
    return services.document_create(
        actor=session(manager), release=release, kind="logbook", title="Training logbook", body="Day 1: it began."
    )


def api(user=None):
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_secret(user)}")
    return client


# --- Services ---------------------------------------------------------------------------------------------------


def test_only_release_managers_write_documents(release, alice, reviewer):
    for actor in (session(alice), session(reviewer)):
        with pytest.raises(services.Forbidden):
            services.document_create(actor=actor, release=release, kind="logbook", title="Logbook", body="x")
    assert not release.documents.exists()


def test_a_document_is_versioned_hashed_attached_to_main_and_audited(release, manager, downstream):
    version = downstream.versions.get()
    assert version.number == 1
    assert version.sha256 == hashlib.sha256(version.body.encode()).hexdigest()
    assert list(version.revisions.all()) == [release.main_revision]
    second = services.document_version_add(actor=session(manager), document=downstream, body="Version two.")
    assert second.number == 2 and second.body == "Version two.\n"
    with pytest.raises(services.ServiceError) as unchanged:
        services.document_version_add(actor=session(manager), document=downstream, body="Version two.")
    assert unchanged.value.code == "unchanged"
    actions = list(AuditEvent.objects.filter(target_type="ReleaseDocument").values_list("action", flat=True))
    assert actions == ["document.created", "document.version_added"]


def test_changes_are_told_to_webhooks(release, manager, settings):
    from access.models import WebhookEndpoint

    settings.WEBHOOK_ALLOW_PRIVATE = True
    WebhookEndpoint.objects.create(owner=manager, url="https://hooks.example/portal", events=[])
    document = services.document_create(
        actor=session(manager), release=release, kind="evaluation", title="Evaluation report", body="Scores."
    )
    services.document_update(actor=session(manager), document=document, visibility="holders")
    kinds = list(WebhookDelivery.objects.order_by("pk").values_list("event_type", flat=True))
    assert kinds == ["release_document.published", "release_document.changed"]
    payload = WebhookDelivery.objects.order_by("pk").first().payload["data"]["document"]
    assert payload["id"] == document.public_id and payload["version"] == 1 and len(payload["sha256"]) == 64


def test_the_stored_dtype_and_emissions_are_set_by_release_managers_only(release, manager, reviewer):
    changes = {"weights_dtype": "fp16", "co2_eq_emissions": "75000000", "co2_source": "OPT paper"}
    with pytest.raises(services.Forbidden):
        services.release_set_footprint(actor=session(reviewer), release=release, changes=changes)
    with pytest.raises(services.ServiceError):
        services.release_set_footprint(actor=session(manager), release=release, changes={"weights_dtype": "fp8"})
    done = services.release_set_footprint(actor=session(manager), release=release, changes=changes)
    assert done.weights_dtype == "fp16" and done.co2_eq_emissions == 75_000_000
    assert AuditEvent.objects.filter(action="release.footprint_updated").count() == 1


def test_the_training_content_template_has_the_ai_offices_three_parts():
    text = document_services.TRAINING_CONTENT_TEMPLATE
    assert "## 1. General information" in text and "## 2. List of data sources" in text
    assert "## 3. Data processing" in text and "opt-outs" in text and "illegal content" in text


# --- Reading through the gate, acknowledging ------------------------------------------------------------------


def test_a_holders_only_document_is_refused_to_others_on_every_channel(client, release, downstream, alice, bob):
    url = f"/api/v1/models/{release.repo_id}/documents/{downstream.public_id}"
    anonymous = api().get(url)
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "not_authenticated"
    refused = api(bob).get(url)
    assert refused.status_code == 403 and refused.json()["code"] == "gated"
    page = f"/models/{release.repo_id}/documents/{downstream.public_id}/"
    assert client.get(page).status_code == 401
    assert client.get(page + "v1.md").status_code == 401
    client.force_login(bob)
    assert client.get(page).status_code == 403
    # Named to everyone in the list, without its text.
    listed = api().get(f"/api/v1/models/{release.repo_id}/documents").json()
    assert [d["title"] for d in listed] == ["Information for downstream providers"]
    assert "body" not in listed[0]
    codes = AuditEvent.objects.filter(action="download.refused", data__via="document")
    assert codes.count() == 5


def test_a_public_document_is_for_everyone(client, release, logbook):
    response = client.get(f"/models/{release.repo_id}/documents/{logbook.public_id}/v1.md")
    assert response.status_code == 200 and response.content == b"Day 1: it began.\n"
    assert response["X-Checksum-Sha256"] == hashlib.sha256(b"Day 1: it began.\n").hexdigest()
    detail = api().get(f"/api/v1/models/{release.repo_id}/documents/{logbook.public_id}").json()
    assert detail["body"] == "Day 1: it began.\n" and detail["current"]["version"] == 1


def test_a_holder_reads_acknowledges_and_is_asked_again_after_a_new_version(
    release, downstream, manager, alice, reviewer
):
    grant_for(alice, release, reviewer)
    client = api(alice)
    file_url = f"/api/v1/models/{release.repo_id}/files/config.json"
    refused = client.get(file_url)
    assert refused.status_code == 403 and refused.json()["code"] == "acknowledge_documents"
    assert "Information for downstream providers" in refused.json()["detail"]
    document_url = f"/api/v1/models/{release.repo_id}/documents/{downstream.public_id}"
    assert client.get(document_url).json()["acknowledged"] is False
    assert DownloadEvent.objects.filter(via="document", user=alice).count() == 1
    stale = client.post(document_url + "/acknowledge", {"version": 2}, format="json")
    assert stale.status_code == 409 and stale.json()["code"] == "document_version"
    done = client.post(document_url + "/acknowledge", {"version": 1}, format="json")
    assert done.status_code == 200 and done.json()["version"] == 1
    assert client.post(document_url + "/acknowledge", {}, format="json").status_code == 200  # twice: nothing new
    assert DocumentAcknowledgement.objects.filter(user=alice).count() == 1
    assert client.get(file_url).status_code == 302
    services.document_version_add(actor=session(manager), document=downstream, body="Now with limits.")
    again = client.get(file_url)
    assert again.status_code == 403 and again.json()["code"] == "acknowledge_documents"
    client.post(document_url + "/acknowledge", {}, format="json")
    assert client.get(file_url).status_code == 302


def test_only_holders_acknowledge(release, downstream, bob):
    url = f"/api/v1/models/{release.repo_id}/documents/{downstream.public_id}/acknowledge"
    assert api().post(url, {}, format="json").status_code in (401, 403)
    assert api(bob).post(url, {}, format="json").status_code == 404  # holders-only: not there for Bob
    assert not DocumentAcknowledgement.objects.exists()


def test_documents_never_hold_back_an_open_release(local_storage, manager, alice):
    release = ReleaseFactory(repo_id="facebook/opt-125m", access="open")
    add_file(release, "config.json", b"{}\n")
    services.document_create(
        actor=session(manager),
        release=release,
        kind="acceptable_use",
        title="Acceptable use",
        body="Be kind.",
        acknowledge_required=True,
    )
    assert api().get(f"/api/v1/models/{release.repo_id}/files/config.json").status_code == 302


# --- Pages and the API detail ---------------------------------------------------------------------------------


def test_the_release_page_says_what_it_takes_to_run_it_to_a_visitor(client, release, manager, logbook, downstream):
    services.release_set_footprint(
        actor=session(manager),
        release=release,
        changes={"weights_dtype": "fp16", "co2_eq_emissions": 75_000_000, "co2_hardware_used": "992 × A100"},
    )
    page = client.get(f"/models/{release.repo_id}", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'id="requirements"' in page
    assert "≈ 700 GB" in page and "651.9 GiB" in page and "≈ 350 GB" in page
    assert 'data-dtype="bf16"' in page and "stored as fp16" in page
    assert "activations and the KV cache" in page
    assert "At 100 Mbit/s" in page and "75 t CO2eq" in page and "992 × A100" in page
    assert "Training logbook" in page and "Information for downstream providers" in page and "Holders only" in page
    assert f"/models/{release.repo_id}/license" in page
    assert client.get(f"/models/{release.repo_id}/license").status_code == 200
    chinese = client.get(f"/models/{release.repo_id}", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "运行它需要什么" in chinese


def test_the_api_detail_gives_the_figures_and_emissions(release, manager):
    services.release_set_footprint(
        actor=session(manager), release=release, changes={"co2_eq_emissions": 75_000_000, "co2_source": "paper"}
    )
    body = api().get(f"/api/v1/models/{release.repo_id}").json()
    weights = {w["dtype"]: w for w in body["requirements"]["weights"]}
    assert weights["fp32"]["gb"] == 700.0 and weights["fp32"]["accelerators_80gb"] == 9
    assert weights["bf16"]["consumer_cards_24gb"] == 15
    size = sum(f["size"] for f in body["files"])
    assert body["requirements"]["download_bytes"] == size
    assert body["requirements"]["download_times"][0]["seconds"] == size * 8 / 10**8
    assert body["co2_eq_emissions"]["emissions"] == 75_000_000 and body["co2_eq_emissions"]["source"] == "paper"


def test_the_openapi_schema_describes_the_documents_endpoints(client):
    schema = client.get("/api/schema", HTTP_ACCEPT="application/json").content.decode()
    for path in ("/documents", "/documents/{public_id}", "/documents/{public_id}/acknowledge"):
        assert "/api/v1/models/{namespace}/{name}" + path in schema
    assert "acknowledge_documents" in schema and "Requirements" in schema and "consumer_cards_24gb" in schema


def test_a_release_manager_previews_adds_versions_and_attaches_a_document(client, release, manager):
    login_recently(client, manager)
    base = f"/manage/{release.repo_id}/documents/"
    template = client.get(base + "?kind=training_content").content.decode()
    assert "3. Data processing" in template
    fields = {"kind": "logbook", "title": "Training logbook", "visibility": "public", "body": "**Day 1**"}
    preview = client.post(base, {**fields, "preview": "1"})
    assert "<strong>Day 1</strong>" in preview.content.decode() and not release.documents.exists()
    created = client.post(base, fields)
    document = release.documents.get()
    assert created.status_code == 302 and created["Location"].endswith(f"{document.public_id}/")
    page = base + f"{document.public_id}/"
    client.post(page, {"action": "version", "body": "**Day 2**", "notes": "Another day"})
    assert document.versions.count() == 2
    client.post(page, {"action": "attach", "version": "1", "revisions": []})
    assert not document.versions.get(number=1).revisions.exists()
    client.post(page, {"action": "settings", "title": "Logbook", "visibility": "holders"})
    document.refresh_from_db()
    assert document.title == "Logbook" and document.holders_only
    footprint = client.post(f"/manage/{release.repo_id}/footprint", {"weights_dtype": "bf16", "co2_source": "x"})
    assert footprint.status_code == 302
    assert ModelRelease.objects.get(pk=release.pk).weights_dtype == "bf16"


def test_others_do_not_see_the_release_managers_pages(client, release, alice):
    login_recently(client, alice)
    assert client.get(f"/manage/{release.repo_id}/documents/").status_code == 404


def test_the_demo_gives_opt_175b_its_documents(local_storage):
    call_command("load_demo_catalog", "--size", "16", "--only", "facebook/opt-175b", stdout=__import__("io").StringIO())
    release = ModelRelease.objects.get(repo_id="facebook/opt-175b")
    documents = {d.title: d for d in release.documents.all()}
    assert set(documents) == {
        "Public summary of training content",
        "Training logbook",
        "Information for downstream providers",
    }
    assert documents["Information for downstream providers"].holders_only
    assert documents["Information for downstream providers"].acknowledge_required
    assert not documents["Training logbook"].holders_only
    assert release.weights_dtype == "fp16" and release.co2_eq_emissions == 75_000_000


def test_a_batch_waits_for_the_documents_and_is_signed_once_they_are_acknowledged(
    release, downstream, alice, reviewer, django_capture_on_commit_callbacks
):
    from access.models import UrlBatch

    grant = grant_for(alice, release, reviewer)
    with pytest.raises(services.ServiceError) as refused:
        services.grant_refresh_links(actor=session(alice), grant=grant)
    assert refused.value.code == "acknowledge_documents"
    batch = UrlBatch.objects.create(grant=grant)
    assert services.batch_fill(batch_id=batch.pk).status == "pending"
    with django_capture_on_commit_callbacks(execute=True):
        services.document_acknowledge(actor=session(alice), document=downstream)
    batch.refresh_from_db()
    assert batch.status == "ready" and len(batch.urls) == 2


def test_holders_are_emailed_once_in_their_language_when_a_new_version_asks_them_again(
    release, downstream, manager, alice, bob, reviewer, mailoutbox, django_capture_on_commit_callbacks
):
    alice.language = "zh-hans"
    alice.save(update_fields=["language"])
    grant_for(alice, release, reviewer)
    grant_for(bob, release, reviewer)
    for holder in (alice, bob):
        services.document_acknowledge(actor=session(holder), document=downstream)
    mailoutbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.document_version_add(actor=session(manager), document=downstream, body="New limits.", notes="Limits")
    assert sorted(m.to[0] for m in mailoutbox) == sorted([alice.email, bob.email])
    chinese = next(m for m in mailoutbox if m.to == [alice.email])
    english = next(m for m in mailoutbox if m.to == [bob.email])
    assert "确认" in chinese.subject and "acknowledge" in english.subject
    assert f"/documents/{downstream.public_id}/" in english.body and "Limits" in english.body
    assert services.documents.document_acknowledge_notify(downstream.pk) == 0  # once per version
