"""Every channel records the revision it actually served on the `DownloadEvent`, not `main`'s: the API's file
redirect and manifests, the Hub's resolve, relay URLs of a wget list, and a grant page's batch signed before main
moved on. Advisories reach holders by these rows, so a wrong revision would tell the wrong people."""

import io
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from access import services
from access.downloads import relay_url
from access.models import DownloadEvent
from access.services.grants import batch_fill
from tests.factories import ReleaseFactory, grant_for, token_secret

pytestmark = pytest.mark.django_db

REPO = "facebook/opt-175b"


def register(release, src, content: bytes) -> None:
    (src / "weights.bin").write_bytes(content)
    call_command("register_release", release.repo_id, "--from-dir", str(src), stdout=io.StringIO())
    release.refresh_from_db()


@pytest.fixture
def setup(local_storage, tmp_path, alice, reviewer):
    """Alice's grant issued (with its batch) while revision one was main; then revision two became main."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_bytes(b"{}")
    release = ReleaseFactory(repo_id=REPO, access="gated")
    register(release, src, b"revision one weights")
    grant = grant_for(alice, release, reviewer)
    register(release, src, b"revision two weights, fixed")
    one, two = release.revisions.get(number=1), release.revisions.get(number=2)
    assert release.main_revision == two
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token_secret(alice)}")
    return {"release": release, "grant": grant, "one": one, "two": two, "api": api, "alice": alice}


def last_event() -> DownloadEvent:
    return DownloadEvent.objects.order_by("-id").first()


def test_the_api_file_redirect_records_main_or_the_revision_named(setup):
    api, one, two = setup["api"], setup["one"], setup["two"]
    assert api.get(f"/api/v1/models/{REPO}/files/weights.bin").status_code == 302
    assert last_event().revision_id == two.pk
    assert api.get(f"/api/v1/models/{REPO}/files/weights.bin?revision={one.sha}").status_code == 302
    assert last_event().revision_id == one.pk


@pytest.mark.parametrize("fmt", ["json", "aria2", "wget", "sha256sum", "metalink"])
def test_every_manifest_format_records_the_revision_it_lists(setup, fmt):
    api, one, two = setup["api"], setup["one"], setup["two"]
    assert api.get(f"/api/v1/models/{REPO}/manifest", {"format": fmt}).status_code == 200
    assert (last_event().via, last_event().revision_id) == ("manifest", two.pk)
    assert api.get(f"/api/v1/models/{REPO}/manifest", {"format": fmt, "revision": one.sha}).status_code == 200
    assert last_event().revision_id == one.pk


def test_the_hub_resolve_records_the_revision_in_its_path(setup):
    api, one, two = setup["api"], setup["one"], setup["two"]
    for rev, expected in (("main", two), (one.sha, one), (two.sha, two)):
        assert api.get(f"/{REPO}/resolve/{rev}/weights.bin").status_code == 302
        assert (last_event().via, last_event().revision_id) == ("hf", expected.pk)


def test_a_relay_url_records_the_revision_of_its_file(setup):
    one, alice = setup["one"], setup["alice"]
    file = one.files.get(path="weights.bin")
    relay = relay_url(file.pk, file.path, user_id=alice.pk, base_url="http://testserver")
    assert Client().get(urlsplit(relay).path).status_code == 302
    assert (last_event().via, last_event().revision_id) == ("relay", one.pk)


def test_a_grant_page_batch_records_the_revision_it_signed_not_main(setup, client):
    client.force_login(setup["alice"])
    grant, one, two = setup["grant"], setup["one"], setup["two"]
    batch = grant.batches.get()
    assert batch.revision == one.sha
    for fmt in ("json", "wget", "aria2"):
        assert client.get(f"/grants/{grant.public_id}/batch.{fmt}").status_code == 200
        assert (last_event().via, last_event().revision_id) == ("web", one.pk)
    # A refreshed batch signs main as it is now, and records it.
    services.grant_refresh_links(
        actor=services.Actor(user=setup["alice"], credential="session", reauthenticated=True), grant=grant
    )
    batch_fill(batch_id=grant.batches.order_by("-created_at").first().pk)
    newest = grant.batches.order_by("-created_at").first()
    assert newest.revision == two.sha
    assert client.get(f"/grants/{grant.public_id}/batch.json").status_code == 200
    assert last_event().revision_id == two.pk
