"""Advisories through the API and the pages: exactly the accounts that downloaded an affected revision are told
(emailed in their language, once), acknowledge once, are reminded once; every channel names the advisory on the
revision it serves; embargoes hide it from everyone else until their date; withdrawing a revision refuses it on
every channel with `revision_withdrawn`, moves main, and reissues grant batches. Numbers are unique per year even
when two managers publish at once."""

from __future__ import annotations

import io
import ipaddress
import threading
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone, translation
from rest_framework.test import APIClient

from access import services
from access.downloads import relay_url
from access.models import Advisory, AdvisoryRecipient, AuditEvent, ModelRelease, UrlBatch, WebhookDelivery
from access.services import advisories
from tests.factories import ReleaseFactory, UserFactory, grant_for, token_secret
from tests.support.auth import login_recently

pytestmark = pytest.mark.django_db

REPO = "facebook/opt-175b"


def register(release, src, content: bytes) -> None:
    (src / "weights.bin").write_bytes(content)
    call_command("register_release", release.repo_id, "--from-dir", str(src), stdout=io.StringIO())
    release.refresh_from_db()


def bearer(user) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token_secret(user)}")
    return api


def as_user(user) -> APIClient:
    return login_recently(APIClient(), user)


@pytest.fixture
def world(local_storage, tmp_path, reviewer, django_capture_on_commit_callbacks):
    """Three researchers fetch revision A (API file, manifest, Hub resolve); main moves to B; a fourth holder
    fetches only B; a fifth holds a grant and fetched nothing. Rita (release manager) writes advisories."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_bytes(b"{}")
    release = ReleaseFactory(repo_id=REPO, access="gated")
    register(release, src, b"revision A weights")
    a = release.main_revision
    people = {
        name: UserFactory(email=f"{name}@uni.example", language=lang)
        for name, lang in (("ann", "en"), ("bo", "zh-hans"), ("cy", "en"), ("dee", "en"), ("eve", "en"))
    }
    for user in people.values():
        grant_for(user, release, reviewer)
    assert bearer(people["ann"]).get(f"/api/v1/models/{REPO}/files/weights.bin").status_code == 302
    assert bearer(people["bo"]).get(f"/api/v1/models/{REPO}/manifest", {"format": "metalink"}).status_code == 200
    register(release, src, b"revision B weights, fixed")
    b = release.main_revision
    assert bearer(people["cy"]).get(f"/{REPO}/resolve/{a.sha}/weights.bin").status_code == 302
    assert bearer(people["dee"]).get(f"/api/v1/models/{REPO}/files/weights.bin").status_code == 302
    rita = UserFactory(email="rm-rita@portal.example")
    services.release_manager_add(actor=services.command_actor("tests"), user=rita)
    return {
        "release": release,
        "a": a,
        "b": b,
        "people": people,
        "rita": rita,
        "reviewer": reviewer,
        "commit": django_capture_on_commit_callbacks,
    }


def draft(world, **overrides):
    body = {
        "repo_id": REPO,
        "affected_revisions": [world["a"].sha],
        "fixed_revision": world["b"].sha,
        "severity": "high",
        "title": "Memorised personal data in revision A",
        "summary": "Revision A reproduces training-set addresses verbatim.",
        "mitigation": "Use revision B.",
        **overrides,
    }
    response = as_user(world["rita"]).post("/api/v1/review/advisories", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def publish(world, public_id):
    with world["commit"](execute=True):
        response = as_user(world["rita"]).post(f"/api/v1/review/advisories/{public_id}/publish")
    assert response.status_code == 200, response.content
    return response.json()


def test_publishing_tells_exactly_the_accounts_that_fetched_an_affected_revision(world, settings):
    mail.outbox.clear()
    created = draft(world)
    assert created["id"] is None and created["status"] == "draft"
    # A draft is edited; nobody but managers and reviewers sees it.
    edited = as_user(world["rita"]).patch(
        f"/api/v1/review/advisories/{created['public_id']}", {"credit": "A. Researcher"}, format="json"
    )
    assert edited.json()["credit"] == "A. Researcher"
    assert bearer(world["people"]["ann"]).get(f"/api/v1/advisories/{created['public_id']}").status_code == 404
    published = publish(world, created["public_id"])
    year = timezone.now().year
    assert published["id"] == f"ADV-{year}-0001"
    people = world["people"]
    told = set(AdvisoryRecipient.objects.values_list("user__email", flat=True))
    assert told == {people[n].email for n in ("ann", "bo", "cy")}
    assert sorted(m.to[0] for m in mail.outbox) == sorted(told)
    chinese = next(m for m in mail.outbox if m.to == [people["bo"].email])
    assert "公告" in chinese.subject or "ADV-" in chinese.subject
    assert AuditEvent.objects.filter(action="advisory.published", target_id=created["public_id"]).exists()
    # Published advisories are not edited; they get dated updates.
    refused = as_user(world["rita"]).patch(
        f"/api/v1/review/advisories/{created['public_id']}", {"title": "New"}, format="json"
    )
    assert (refused.status_code, refused.json()["code"]) == (409, "advisory_published")
    updated = as_user(world["rita"]).patch(
        f"/api/v1/review/advisories/{created['public_id']}", {"update": "Revision B verified clean."}, format="json"
    )
    assert updated.json()["updates"][0]["body"] == "Revision B verified clean."
    again = as_user(world["rita"]).post(f"/api/v1/review/advisories/{created['public_id']}/publish")
    assert (again.status_code, again.json()["code"]) == (409, "already_published")
    # Running the email task again sends nothing twice.
    assert advisories.advisory_notify(Advisory.objects.get().pk) == 0


def test_every_tool_names_the_advisory_and_holders_acknowledge_once(world):
    advisory = publish(world, draft(world)["public_id"])
    ann, a = world["people"]["ann"], world["a"]
    api = bearer(ann)
    manifest = api.get(f"/api/v1/models/{REPO}/manifest", {"revision": a.sha}).json()
    assert [(x["id"], x["severity"], x["acknowledged"]) for x in manifest["advisories"]] == [
        (advisory["id"], "high", False)
    ]
    for fmt in ("aria2", "sha256sum", "metalink"):
        text = api.get(f"/api/v1/models/{REPO}/manifest", {"format": fmt, "revision": a.sha}).content.decode()
        assert f"ADVISORY {advisory['id']} (high, not acknowledged)" in text
    wget = api.get(f"/api/v1/models/{REPO}/manifest", {"format": "wget", "revision": a.sha})
    assert wget["X-Advisories"] == advisory["id"]
    assert api.get(f"/api/v1/models/{REPO}/files/weights.bin?revision={a.sha}")["X-Advisories"] == advisory["id"]
    assert api.get(f"/{REPO}/resolve/{a.sha}/weights.bin")["X-Advisories"] == advisory["id"]
    file = a.files.get(path="weights.bin")
    relay = relay_url(file.pk, file.path, user_id=ann.pk, base_url="http://testserver")
    assert Client().get(urlsplit(relay).path)["X-Advisories"] == advisory["id"]
    # Main (revision B) carries none.
    assert "X-Advisories" not in api.get(f"/api/v1/models/{REPO}/files/weights.bin")
    assert api.get(f"/api/v1/models/{REPO}/manifest").json()["advisories"] == []
    # The release and grant pages show a banner until acknowledged, on the page or through the API.
    page = Client()
    page.force_login(ann)
    assert advisory["id"] in page.get(f"/models/{REPO}").content.decode()
    assert api.post(f"/api/v1/advisories/{advisory['public_id']}/acknowledge").json()["acknowledged"] is True
    assert api.post(f"/api/v1/advisories/{advisory['id']}/acknowledge").status_code == 200  # once: no change
    assert AuditEvent.objects.filter(action="advisory.acknowledged").count() == 1
    assert 'id="advisory-banners"' not in page.get(f"/models/{REPO}").content.decode()
    manifest = api.get(f"/api/v1/models/{REPO}/manifest", {"revision": a.sha}).json()
    assert manifest["advisories"][0]["acknowledged"] is True
    # Bo acknowledges on the web page; the counts show on the advisory page for managers.
    bo = Client()
    bo.force_login(world["people"]["bo"])
    assert bo.post(f"/advisories/{advisory['public_id']}/").status_code == 302
    rita = login_recently(Client(), world["rita"])
    counts = rita.get(f"/advisories/{advisory['public_id']}/").content.decode()
    assert "acknowledged: 2" in counts
    # A current holder who never fetched A is not emailed but sees the banner on the release and grant pages.
    eve = Client()
    eve.force_login(world["people"]["eve"])
    assert 'id="advisory-banners"' in eve.get(f"/models/{REPO}").content.decode()
    grant = world["people"]["eve"].grants.get()
    assert 'id="advisory-banners"' in eve.get(f"/grants/{grant.public_id}/").content.decode()


def test_advisories_on_the_revision_served_cost_a_manifest_one_query(world):
    """What keeps the 992-file manifest's p50 (bench/bench_manifest.py): the release's advisories come from the
    gate's cache; only whether the caller acknowledged them (or was told, under embargo) is asked, in one query."""
    api = bearer(world["people"]["ann"])
    a = world["a"].sha

    def queries(fmt: str) -> tuple[int, str | None]:
        api.get(f"/api/v1/models/{REPO}/manifest", {"revision": a, "format": fmt})  # the gate's cache is warm
        with CaptureQueriesContext(connection) as captured:
            response = api.get(f"/api/v1/models/{REPO}/manifest", {"revision": a, "format": fmt})
        assert response.status_code == 200
        return len(captured), response.get("X-Advisories")

    formats = ("json", "aria2", "wget", "sha256sum", "metalink")
    without = {fmt: queries(fmt) for fmt in formats}
    first = publish(world, draft(world)["public_id"])["id"]
    later = (timezone.now() + timedelta(days=3)).isoformat()
    second = publish(world, draft(world, title="Under embargo", embargo_until=later)["public_id"])["id"]
    for fmt in formats:
        count, named = queries(fmt)
        assert (count, named) == (without[fmt][0] + 1, f"{second}, {first}"), fmt


def test_reminders_go_once_after_the_configured_days(world, settings):
    publish(world, draft(world)["public_id"])
    mail.outbox.clear()
    assert advisories.advisory_reminders() == 0
    AdvisoryRecipient.objects.update(emailed_at=timezone.now() - timedelta(days=settings.ADVISORY_REMINDER_DAYS + 1))
    bearer(world["people"]["ann"]).post(f"/api/v1/advisories/{Advisory.objects.get().public_id}/acknowledge")
    assert advisories.advisory_reminders() == 2
    assert advisories.advisory_reminders() == 0
    assert sorted(m.to[0] for m in mail.outbox) == ["bo@uni.example", "cy@uni.example"]
    assert "advisory-reminders" in settings.CELERY_BEAT_SCHEDULE


def test_an_embargoed_advisory_is_seen_only_by_those_told_holders_and_reviewers_until_its_date(world, client):
    later = timezone.now() + timedelta(days=3)
    advisory = publish(world, draft(world, embargo_until=later.isoformat())["public_id"])
    stranger = UserFactory(email="stranger@else.example")
    path = f"/api/v1/advisories/{advisory['public_id']}"
    assert bearer(world["people"]["ann"]).get(path).status_code == 200
    assert as_user(world["reviewer"]).get(path).status_code == 200
    assert bearer(stranger).get(path).status_code == 404
    assert APIClient().get(path).status_code == 404
    assert APIClient().get(f"/api/v1/models/{REPO}/advisories").json() == []
    assert advisory["id"] not in client.get(f"/models/{REPO}/advisories.atom").content.decode()
    Advisory.objects.update(embargo_until=timezone.now() - timedelta(seconds=1))
    assert bearer(stranger).get(path).status_code == 200
    assert [a["id"] for a in APIClient().get(f"/api/v1/models/{REPO}/advisories").json()] == [advisory["id"]]
    feed = client.get(f"/models/{REPO}/advisories.atom")
    assert feed["Content-Type"].startswith("application/atom+xml") and advisory["id"] in feed.content.decode()
    # Acknowledging for someone else is not possible: the stranger was not told.
    refused = bearer(stranger).post(f"{path}/acknowledge")
    assert (refused.status_code, refused.json()["code"]) == (403, "not_told")


def test_withdrawing_revision_a_refuses_it_on_every_channel_and_moves_main(world):
    ann, a, b = world["people"]["ann"], world["a"], world["b"]
    grant = ann.grants.get()
    signed_a = grant.batches.get()
    assert signed_a.revision == a.sha
    advisory = publish(world, draft(world)["public_id"])
    with world["commit"](execute=True):
        response = as_user(world["rita"]).post(f"/api/v1/review/advisories/{advisory['public_id']}/withdraw-revision")
    assert response.json() == {"withdrawn": [a.sha], "main": b.sha}
    api = bearer(ann)
    file = a.files.get(path="weights.bin")
    calls = {
        "file": api.get(f"/api/v1/models/{REPO}/files/weights.bin?revision={a.sha}"),
        "manifest": api.get(f"/api/v1/models/{REPO}/manifest", {"revision": a.sha}),
        "hf-resolve": api.get(f"/{REPO}/resolve/{a.sha}/weights.bin"),
        "hf-tree": api.get(f"/api/models/{REPO}/tree/{a.sha}"),
        "relay": Client().get(
            urlsplit(relay_url(file.pk, file.path, user_id=ann.pk, base_url="http://testserver")).path
        ),
    }
    for name, got in calls.items():
        assert got.status_code == 403, name
        body = got.json()
        code = body.get("code") or got.get("X-Error-Code")
        assert code == "revision_withdrawn" or "revision_withdrawn" in str(body), (name, body)
        assert b.sha in str(body), name
    assert api.get(f"/api/v1/models/{REPO}/files/weights.bin").status_code == 302  # main is B
    # The Hub's code for it is RevisionNotFound, not GatedRepo (whose CLI wording is "requires approval"), also
    # on the HEAD huggingface_hub sends first.
    head = api.head(f"/{REPO}/resolve/{a.sha}/weights.bin")
    assert (head.status_code, head["X-Error-Code"]) == (403, "RevisionNotFound") and b.sha in head["X-Error-Message"]
    assert calls["hf-tree"]["X-Error-Code"] == calls["hf-resolve"]["X-Error-Code"] == "RevisionNotFound"
    # The grant's batch that signed A was reissued (signed again on B).
    newest = grant.batches.order_by("-created_at").first()
    assert newest.pk != signed_a.pk and newest.status == UrlBatch.Status.READY and newest.revision == b.sha
    # Withdrawing the only revision left leaves nothing to serve, said on the page.
    second = publish(world, draft(world, affected_revisions=[b.sha], fixed_revision=None)["public_id"])
    as_user(world["rita"]).post(f"/api/v1/review/advisories/{second['public_id']}/withdraw-revision")
    world["release"].refresh_from_db()
    assert world["release"].main_revision_id is None
    page = Client()
    page.force_login(ann)
    assert 'id="nothing-to-serve"' in page.get(f"/models/{REPO}").content.decode()


def test_only_release_managers_write_publish_and_withdraw(world):
    body = {"repo_id": REPO, "affected_revisions": [world["a"].sha], "severity": "low", "title": "T", "summary": "S"}
    ann = world["people"]["ann"]
    for client in (bearer(ann), as_user(ann), as_user(world["reviewer"]), APIClient()):
        response = client.post("/api/v1/review/advisories", body, format="json")
        assert response.status_code in (401, 403), response.content
    created = draft(world)
    for client in (as_user(ann), as_user(world["reviewer"])):
        assert client.post(f"/api/v1/review/advisories/{created['public_id']}/publish").status_code == 403
    stale = APIClient()
    stale.force_login(world["rita"])  # no fresh password
    assert stale.post(f"/api/v1/review/advisories/{created['public_id']}/publish").json()["code"] == (
        "reauthentication_required"
    )
    assert Advisory.objects.get().status == "draft"
    assert not WebhookDelivery.objects.filter(event_type="advisory.published").exists()


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"affected_revisions": []}, "revisions_required"),
        ({"affected_revisions": ["0" * 40]}, "unknown_revision"),
        ({"affected_revisions": "nope"}, "revisions_required"),
        ({"severity": "apocalyptic"}, "invalid_choice"),
        ({"title": ""}, "required"),
        ({"title": 5}, "invalid"),
        ({"embargo_until": "tomorrow"}, "invalid_date"),
        ({"embargo_until": "2027-01-01T00:00:00"}, "invalid_date"),
        ({"reports": ["f" * 32]}, "unknown_report"),
        ({"fixed_revision": "main"}, "unknown_revision"),
        ({"surprise": 1}, "unknown_field"),
    ],
)
def test_hostile_advisories_are_clean_400s(world, overrides, code):
    body = {
        "repo_id": REPO,
        "affected_revisions": [world["a"].sha],
        "severity": "low",
        "title": "T",
        "summary": "S",
        **overrides,
    }
    response = as_user(world["rita"]).post("/api/v1/review/advisories", body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["code"] == code


def test_hostile_ids_and_bodies_are_clean_4xx(world):
    rita = as_user(world["rita"])
    assert rita.post("/api/v1/review/advisories", "[1]", content_type="application/json").status_code == 400
    assert rita.post("/api/v1/review/advisories", {"repo_id": "no/such"}, format="json").status_code == 404
    assert APIClient().get("/api/v1/advisories/ADV-2026-9999").status_code == 404
    assert APIClient().get("/api/v1/advisories/" + "0" * 32).status_code == 404
    assert APIClient().get("/api/v1/advisories/../../etc").status_code == 404
    created = draft(world)
    withdraw = rita.post(f"/api/v1/review/advisories/{created['public_id']}/withdraw-revision")
    assert (withdraw.status_code, withdraw.json()["code"]) == (409, "draft")


def test_the_webhook_receives_advisory_published(world, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
    admin = UserFactory(email="ada@portal.example", is_staff=True, is_superuser=True)
    endpoint = services.webhook_endpoint_create(
        actor=services.Actor(user=admin, credential="session", reauthenticated=True),
        url="https://127.0.0.1:9/portal",
        events=["advisory.published"],
    )[0]
    advisory = publish(world, draft(world)["public_id"])
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert delivery.event_type == "advisory.published"
    assert delivery.payload["data"]["advisory"]["id"] == advisory["id"]
    assert delivery.payload["data"]["advisory"]["affected_revisions"] == [world["a"].sha]


@pytest.mark.django_db(transaction=True)
def test_concurrent_publications_get_distinct_numbers(local_storage, tmp_path, reviewer):
    release = ReleaseFactory(repo_id=REPO, access="gated")
    src = tmp_path / "src"
    src.mkdir()
    register(release, src, b"weights")
    rita = UserFactory(email="rm-rita@portal.example")
    services.release_manager_add(actor=services.command_actor("tests"), user=rita)
    actor = services.Actor(user=rita, credential="session", reauthenticated=True)
    drafts = [
        services.advisory_create(
            actor=actor,
            release=release,
            data={"affected_revisions": [release.revision], "severity": "low", "title": f"T{i}", "summary": "S"},
        )
        for i in range(6)
    ]
    barrier = threading.Barrier(len(drafts))
    errors = []

    def run(advisory):
        try:
            barrier.wait()
            services.advisory_publish(actor=actor, advisory=advisory)
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(d,)) for d in drafts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    numbers = sorted(Advisory.objects.values_list("number", flat=True))
    assert numbers == [1, 2, 3, 4, 5, 6]
    assert len(set(Advisory.objects.values_list("identifier", flat=True))) == 6


def test_download_py_prints_unacknowledged_advisories_acknowledges_and_stops_on_a_withdrawn_revision(
    capsys, monkeypatch
):
    from access.client import download

    manifest = download.parse_manifest(
        {
            "repo_id": REPO,
            "revision": "a" * 40,
            "files": [],
            "advisories": [
                {
                    "id": "ADV-2026-0001",
                    "severity": "high",
                    "title": "Leaks\x1b[2J",
                    "url": "https://p/a",
                    "acknowledged": False,
                },
                {"id": "ADV-2026-0002", "severity": "low", "title": "Old", "url": "https://p/b", "acknowledged": True},
                {"id": "nonsense", "title": "skipped"},
            ],
        },
        REPO,
    )
    assert [a["id"] for a in manifest.advisories] == ["ADV-2026-0001", "ADV-2026-0002"]

    class Portal:
        acknowledged: list = []

        def acknowledge(self, advisory_id):
            self.acknowledged.append(advisory_id)

    portal = Portal()
    download.show_advisories(portal, manifest, acknowledge=False)
    out = capsys.readouterr().out
    assert "ADVISORY ADV-2026-0001 (high): Leaks" in out and "--acknowledge" in out and "ADV-2026-0002" not in out
    assert "\x1b" not in out
    download.show_advisories(portal, manifest, acknowledge=True)
    assert portal.acknowledged == ["ADV-2026-0001"] and "acknowledged." in capsys.readouterr().out

    def withdrawn(args):
        raise download.Withdrawn("the portal refused (HTTP 403, revision_withdrawn): use revision " + "b" * 40)

    monkeypatch.setattr(download, "run", withdrawn)
    assert download.main([REPO]) == download.EXIT_WITHDRAWN == 3
    assert "b" * 40 in capsys.readouterr().err


def test_release_managers_draft_edit_publish_update_and_withdraw_on_the_web(world):
    rita = login_recently(Client(), world["rita"])
    form = {
        "affected_revisions": [world["a"].sha],
        "fixed_revision": world["b"].sha,
        "severity": "critical",
        "title": "Leaks addresses",
        "summary": "Revision A leaks addresses.",
    }
    created = rita.post(f"/manage/{REPO}/advisories", form)
    advisory = Advisory.objects.get()
    assert created.status_code == 302 and advisory.status == "draft" and advisory.fixed_revision == world["b"]
    page = f"/manage/{REPO}/advisories/{advisory.public_id}"
    bad = rita.post(page, {**form, "do": "save", "fixed_revision": world["a"].sha})
    assert bad.status_code == 200 and "cannot be one of the affected" in bad.content.decode()
    with world["commit"](execute=True):
        assert rita.post(page, {"do": "publish"}).status_code == 302
    advisory.refresh_from_db()
    assert advisory.identifier.startswith("ADV-") and advisory.recipients.count() == 3
    rita.post(page, {"do": "update", "body": "Verified fixed in B."})
    assert advisory.updates.get().body == "Verified fixed in B."
    with world["commit"](execute=True):
        rita.post(page, {"do": "withdraw"})
    assert world["a"].withdrawal.use_instead == world["b"]
    # Nobody else has these pages.
    ann = Client()
    ann.force_login(world["people"]["ann"])
    assert ann.get(f"/manage/{REPO}/advisories").status_code == 404
    assert ann.post(page, {"do": "publish"}).status_code == 404


def test_the_attack_matrix_of_advisories(world):
    """Every role against every advisory endpoint, on an embargoed published advisory and a draft: who may read,
    acknowledge (only for themselves), write, publish and withdraw."""
    later = (timezone.now() + timedelta(days=5)).isoformat()
    embargoed = publish(world, draft(world, embargo_until=later)["public_id"])["public_id"]
    drafted = draft(world, title="Second")["public_id"]
    stranger = UserFactory(email="mallory@else.example")
    roles = {
        "anonymous": APIClient(),
        "stranger": bearer(stranger),
        "told": bearer(world["people"]["ann"]),
        "holder_not_told": bearer(world["people"]["eve"]),
        "reviewer": as_user(world["reviewer"]),
        "manager": as_user(world["rita"]),
    }
    body = {"affected_revisions": [world["a"].sha], "severity": "low", "title": "T", "summary": "S"}
    cases = [
        # (method, url, body, {role: status})
        ("get", f"/api/v1/advisories/{embargoed}", None, {
            "anonymous": 404, "stranger": 404, "told": 200, "holder_not_told": 200, "reviewer": 200, "manager": 200,
        }),
        ("get", f"/api/v1/advisories/{drafted}", None, {
            "anonymous": 404, "stranger": 404, "told": 404, "holder_not_told": 404, "reviewer": 200, "manager": 200,
        }),
        ("post", f"/api/v1/advisories/{embargoed}/acknowledge", None, {
            "anonymous": 401, "stranger": 404, "told": 200, "holder_not_told": 200, "reviewer": 403, "manager": 403,
        }),
        ("patch", f"/api/v1/review/advisories/{drafted}", {"title": "Changed"}, {
            "anonymous": 401, "stranger": 403, "told": 403, "holder_not_told": 403, "reviewer": 403, "manager": 200,
        }),
        ("post", "/api/v1/review/advisories", {"repo_id": REPO, **body}, {
            "anonymous": 401, "stranger": 403, "told": 403, "holder_not_told": 403, "reviewer": 403, "manager": 201,
        }),
        ("post", f"/api/v1/review/advisories/{embargoed}/withdraw-revision", {"revision": world["b"].sha}, {
            "anonymous": 401, "stranger": 403, "told": 403, "holder_not_told": 403, "reviewer": 403, "manager": 400,
        }),
    ]  # fmt: skip
    failures = []
    for method, url, data, expected in cases:
        for role, status in expected.items():
            response = (
                getattr(roles[role], method)(url, data, format="json") if data else getattr(roles[role], method)(url)
            )
            if response.status_code != status:
                failures.append(f"{role} {method} {url}: {response.status_code}, expected {status}")
    assert not failures, "\n".join(failures)
    # Publishing needs manage_release: nobody else published the draft.
    for role in ("told", "reviewer", "stranger"):
        assert roles[role].post(f"/api/v1/review/advisories/{drafted}/publish").status_code in (403, 404)
    assert Advisory.objects.get(public_id=drafted).status == "draft"
    # Acknowledging is always for oneself: the told holder's acknowledgement is theirs alone.
    assert set(
        AdvisoryRecipient.objects.filter(acknowledged_at__isnull=False).values_list("user__email", flat=True)
    ) == {
        "ann@uni.example",
        "eve@uni.example",
    }


def test_the_transparency_page_counts_the_advisories_the_public_may_read(world):
    release = world["release"]
    ModelRelease.objects.filter(pk=release.pk).update(transparency_public=True)
    numbers = lambda: APIClient().get(f"/api/v1/models/{REPO}/transparency").json()  # noqa: E731
    assert numbers()["advisories_published"] == 0
    publish(world, draft(world)["public_id"])
    later = (timezone.now() + timedelta(days=30)).isoformat()
    publish(world, draft(world, title="Under embargo", embargo_until=later)["public_id"])
    draft(world, title="Still a draft")
    assert numbers()["advisories_published"] == 1
    with translation.override("zh-hans"):
        page = APIClient().get(f"/models/{REPO}/transparency", HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert page.status_code == 200 and 'id="transparency-advisories"' in page.content.decode()
