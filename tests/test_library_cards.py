"""Signing officials and library cards, end to end through the Django test client and the API: staff appoint an
official of Test University; the official signs in through the university's provider (a real sign-in through the
test provider, tests/support/oidc_provider.py) and issues the student a card; a rule "valid library card →
approve" approves the student's request at once; revoking the card refuses the student's next download on every
channel with `card_revoked`, while another holder keeps downloading. Then the attacks: an official of another
institution, a researcher issuing themselves a card, a card for an account without a verified affiliation there,
an expired card, the card endpoints with a plain download token, and a stale sign-in."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone
from rest_framework.test import APIClient

from access import downloads, services
from access.gate import cache, loader
from access.models import AuditEvent, Grant, LibraryCard, SigningOfficial, User, WebhookDelivery, WebhookEndpoint
from tests.factories import ANSWERS as FORM_ANSWERS
from tests.factories import LicenseFactory, ReleaseFactory, UserFactory, add_file, grant_for, token_secret
from tests.support.auth import login_recently
from tests.support.oidc_provider import person, sign_in

pytestmark = pytest.mark.django_db

OLIVE, SAM = "olive.official@uni.example", "sam.student@uni.example"
ANSWERS = {**FORM_ANSWERS, "noncommercial_attested": True}
OPERATOR = services.command_actor("test")
REPO = "facebook/opt-175b"


def signed_in(client, idp, email, *, affiliations, name):
    """`email` signs in through Test University's provider with the client (a fresh provider sign-in)."""
    idp.person = person(email, affiliations=affiliations, name=name)
    response = sign_in(client, idp)
    assert response.status_code == 302, response.content[:300]
    return User.objects.get(email=email)


@pytest.fixture
def gated(local_storage):
    release = ReleaseFactory(repo_id=REPO, access="gated", license=LicenseFactory())
    add_file(release, "config.json", b"{}")
    services.release_rules_set(
        actor=OPERATOR, release=release, rules=[{"action": "approve", "conditions": {"library_card": True}}]
    )
    return release


@pytest.fixture
def staff(db):
    return UserFactory(email="root@portal.example", is_superuser=True, is_staff=True)


@pytest.fixture
def sam(idp, university):
    """The demo student: signed up through Test University's provider (student and member there)."""
    from django.test import Client

    client = Client()
    user = signed_in(client, idp, SAM, affiliations=("student@uni.example", "member@uni.example"), name="Sam Student")
    user.language = "zh-hans"
    user.save(update_fields=["language"])
    return user


@pytest.fixture
def olive(client, idp, university, staff, sam):
    """Olive signed up through Test University's provider, then staff appointed her (through the API) a signing
    official there; `client` is her session, after a fresh sign-in with the university."""
    user = signed_in(client, idp, OLIVE, affiliations=("staff@uni.example",), name="Olive Official")
    api = APIClient()
    login_recently(api, staff)
    response = post_json(api, "/api/v1/institutions/0testun01/officials", {"email": OLIVE})
    assert response.status_code == 201, response.content
    client.logout()
    signed_in(client, idp, OLIVE, affiliations=("staff@uni.example",), name="Olive Official")
    return user


def researchers(client):
    response = client.get("/api/v1/institutions/0testun01/researchers")
    assert response.status_code == 200, response.content
    return {row["name"]: row for row in response.json()}


def post_json(client, url, data):
    """POST a JSON body with the Django test client or DRF's (the official's session is the former)."""
    return client.post(url, json.dumps(data), content_type="application/json")


def issue(client, key, **more):
    return post_json(client, "/api/v1/institutions/0testun01/library-cards", {"researcher": key, **more})


def download_codes(secret) -> dict[str, tuple[int, str]]:
    """What each download channel answers the token's holder: (status, code)."""
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    found = {}
    for name, url in (
        ("file", f"/api/v1/models/{REPO}/files/config.json"),
        ("manifest", f"/api/v1/models/{REPO}/manifest?format=json"),
        ("hf", f"/{REPO}/resolve/main/config.json"),
    ):
        response = api.get(url)
        code = ""
        if response.status_code >= 400:
            code = response.headers.get("X-Error-Code", "")
            if response.get("Content-Type", "").startswith("application/json"):
                code = response.json().get("code", code)
        found[name] = (response.status_code, code)
    return found


def test_an_official_vouches_and_a_rule_approves_then_revoking_the_card_stops_the_student_on_every_channel(
    client, olive, sam, gated, staff, reviewer, django_capture_on_commit_callbacks
):
    WebhookEndpoint.objects.create(owner=staff, url="https://hooks.example/portal", events=[])
    # The official sees the student (not herself), with what is verified and nothing else.
    rows = researchers(client)
    assert set(rows) == {"Sam Student"}
    assert {a["value"] for a in rows["Sam Student"]["affiliations"]} == {
        "student@uni.example",
        "member@uni.example",
        SAM,  # his address, asserted verified by the university
    }
    assert set(rows["Sam Student"]) == {"id", "name", "affiliations", "cards", "grants"}
    page = client.get("/official/0testun01/")
    assert page.status_code == 200 and "Sam Student" in page.content.decode()
    # She issues the card on her page, signed in with the university minutes ago (no password asked).
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/official/0testun01/cards", {"researcher": rows["Sam Student"]["id"], "scope": "all", "days": "365"}
        )
    assert response.status_code == 302
    card = LibraryCard.objects.get(user=sam)
    assert (card.issued_by, card.institution.ror_id, card.all_releases) == (olive, "0testun01", True)
    assert card.issuer and card.subject and card.affiliation in ("student@uni.example", "member@uni.example")
    assert card.expires_at - card.issued_at == timedelta(days=365)
    assert AuditEvent.objects.filter(action="library_card.issued", target_id=card.public_id).exists()
    assert WebhookDelivery.objects.filter(event_type="library_card.issued").get().payload["data"]["library_card"][
        "id"
    ] == (card.public_id)
    issued = [m for m in mail.outbox if m.to == [SAM]][-1]
    assert "Test University" in issued.subject and "借阅卡" in issued.subject  # in the language he chose
    # The student sees the card and who issued it.
    mine = APIClient()
    mine.force_authenticate(sam)
    assert mine.get("/api/v1/library-cards").json()[0]["issued_by"] == "Olive Official"

    # The rule approves the student's request at once, and the grant remembers the card.
    with django_capture_on_commit_callbacks(execute=True):
        request = services.request_submit(
            actor=services.Actor(user=sam, credential="session"), release=gated, data=ANSWERS, license_accepted=True
        )
    request.refresh_from_db()
    assert request.status == "approved" and request.decided_by_rule is not None
    assert "library card from Test University" in request.decision_reason
    grant = Grant.objects.get(user=sam)
    assert grant.card == card
    other = UserFactory(email="bob@lab.example")
    grant_for(other, gated, reviewer)
    sam_token, bob_token = token_secret(sam), token_secret(other)
    assert {v[0] for v in download_codes(sam_token).values()} <= {200, 302}

    # Revoking the card (by API) refuses the student's next download everywhere; Bob keeps downloading.
    with django_capture_on_commit_callbacks(execute=True):
        response = post_json(
            client,
            f"/api/v1/institutions/0testun01/library-cards/{card.public_id}/revoke",
            {"reason": "Left the programme."},
        )
    assert response.status_code == 200 and response.json()["valid"] is False
    assert download_codes(sam_token) == {
        "file": (403, "card_revoked"),
        "manifest": (403, "card_revoked"),
        "hf": (403, "card_revoked"),
    }
    assert {v[0] for v in download_codes(bob_token).values()} <= {200, 302}
    refused = downloads.access_state(user=sam, release=gated)
    assert refused.code == "card_revoked"
    assert "Left the programme." in refused.detail and OLIVE in refused.detail  # whom to ask
    assert WebhookDelivery.objects.filter(event_type="library_card.revoked").exists()
    assert [m for m in mail.outbox if m.to == [SAM]][-1].subject != issued.subject
    # The grant's page (the web channel) says the same, and asks no new URL batch.
    sam_client = APIClient()
    sam_client.force_login(sam)
    grant_page = sam_client.get(f"/grants/{grant.public_id}/").content.decode()
    assert "Left the programme." in grant_page
    with pytest.raises(services.ServiceError):
        services.grant_refresh_links(
            actor=services.Actor(user=sam, credential="session"), grant=Grant.objects.get(pk=grant.pk)
        )
    # The student's page shows the card and who issued it.
    cards_page = sam_client.get("/account/cards/").content.decode()
    assert "Olive Official" in cards_page


def test_the_card_is_lost_when_the_provider_no_longer_asserts_the_affiliation(
    client, olive, sam, gated, idp, django_capture_on_commit_callbacks
):
    key = researchers(client)["Sam Student"]["id"]
    assert issue(client, key).status_code == 201
    with django_capture_on_commit_callbacks(execute=True):
        services.request_submit(
            actor=services.Actor(user=sam, credential="session"), release=gated, data=ANSWERS, license_accepted=True
        )
    assert downloads.access_state(user=sam, release=gated).allowed
    from django.test import Client

    with django_capture_on_commit_callbacks(execute=True):
        signed_in(Client(), idp, SAM, affiliations=(), name="Sam Student")
    card = LibraryCard.objects.get(user=sam)
    assert card.revoked_at is not None and card.ending == LibraryCard.Ending.LEFT
    assert downloads.access_state(user=sam, release=gated).code == "card_revoked"
    event = AuditEvent.objects.get(action="library_card.revoked", target_id=card.public_id)
    assert event.actor == sam and event.data["ending"] == "left"


# --- attacks ----------------------------------------------------------------------------------------------------


@pytest.fixture
def other_official(staff):
    """Otto, an official of Other University (confirmed), signed in with a recent password."""
    other = services.institution_create(
        actor=OPERATOR, ror_id="0otheru01", name="Other University", email_domains=["other.example"]
    )
    services.institution_confirm(actor=OPERATOR, institution=other)
    otto = UserFactory(email="otto@other.example")
    services.official_appoint(actor=OPERATOR, institution=other, user=otto)
    api = APIClient()
    login_recently(api, otto)
    return api


def test_an_official_of_another_institution_sees_and_issues_nothing_here(client, olive, sam, other_official):
    key = researchers(client)["Sam Student"]["id"]
    assert other_official.get("/api/v1/institutions/0testun01/researchers").status_code == 404
    assert issue(other_official, key).status_code == 404
    # Nor at their own institution for someone who is not affiliated there.
    response = post_json(other_official, "/api/v1/institutions/0otheru01/library-cards", {"researcher": key})
    assert response.status_code == 404
    assert other_official.get("/official/0testun01/").status_code == 404
    card = LibraryCard.objects.none()
    assert not card.exists() and not LibraryCard.objects.exists()


def test_a_researcher_cannot_issue_themselves_a_card_nor_can_an_official(client, olive, sam, university):
    key = researchers(client)["Sam Student"]["id"]
    api = APIClient()
    login_recently(api, sam)
    assert issue(api, key).status_code == 404
    assert api.get("/official/").status_code in (302, 404)
    actor = services.Actor(user=olive, credential="session", reauthenticated=True)
    with pytest.raises(services.ServiceError) as refused:
        services.card_issue(actor=actor, institution=university, researcher=olive)
    assert refused.value.code == "own_card"
    assert not LibraryCard.objects.exists()


def test_no_card_for_an_account_without_a_verified_affiliation_there(olive, university):
    bob = UserFactory(email="bob@lab.example")
    actor = services.Actor(user=olive, credential="session", reauthenticated=True)
    with pytest.raises(services.NotFound):
        services.card_issue(actor=actor, institution=university, researcher=bob)
    # An address on the domain confirmed by the portal's link verifies the affiliation but binds no identity.
    carol = UserFactory(email="carol@uni.example")
    with pytest.raises(services.NotFound):
        services.card_issue(actor=actor, institution=university, researcher=carol)
    assert not LibraryCard.objects.exists()


def test_an_expired_card_approves_nothing_and_ends_the_access_that_rested_on_it(
    client, olive, sam, gated, monkeypatch, rf, django_assert_num_queries, django_capture_on_commit_callbacks
):
    key = researchers(client)["Sam Student"]["id"]
    assert issue(client, key, days=30).status_code == 201
    with django_capture_on_commit_callbacks(execute=True):
        services.request_submit(
            actor=services.Actor(user=sam, credential="session"), release=gated, data=ANSWERS, license_accepted=True
        )
    assert downloads.access_state(user=sam, release=gated).allowed
    decisions = []

    def download(request):
        decisions.append(downloads.decide(loader.inputs(user=sam, release=gated), timezone.now()))

    cache.RequestScope(download)(rf.get("/"))  # the web process reads the card's date with the grant, and keeps it
    later = timezone.now() + timedelta(days=31)
    monkeypatch.setattr(timezone, "now", lambda: later)
    with django_assert_num_queries(0):
        cache.RequestScope(download)(rf.get("/"))
    assert [d.code for d in decisions] == ["granted", "card_expired"]
    refused = downloads.access_state(user=sam, release=gated)
    assert refused.code == "card_expired" and "Test University" in refused.detail and OLIVE in refused.detail
    # A new request is no longer approved by the rule: it waits for a reviewer.
    release = ReleaseFactory(repo_id="facebook/opt-66b", access="gated", license=LicenseFactory())
    services.release_rules_set(
        actor=OPERATOR, release=release, rules=[{"action": "approve", "conditions": {"library_card": True}}]
    )
    request = services.request_submit(
        actor=services.Actor(user=sam, credential="session"), release=release, data=ANSWERS, license_accepted=True
    )
    assert request.status == "pending"


def test_card_endpoints_refuse_a_plain_download_token(client, olive, sam):
    key = researchers(client)["Sam Student"]["id"]
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token_secret(olive)}")
    listed = api.get("/api/v1/institutions/0testun01/researchers")
    assert listed.status_code == 403 and listed.json()["code"] == "token_scope"
    issued = issue(api, key)
    assert issued.status_code == 403 and issued.json()["code"] == "token_scope"
    card = services.card_issue(
        actor=services.Actor(user=olive, credential="session", reauthenticated=True),
        institution=olive.official_roles.get().institution,
        researcher=sam,
    )
    revoked = post_json(api, f"/api/v1/institutions/0testun01/library-cards/{card.public_id}/revoke", {})
    assert revoked.status_code == 403 and LibraryCard.objects.get().revoked_at is None
    # Appointing officials is not for tokens either, whoever holds them.
    appoint = post_json(api, "/api/v1/institutions/0testun01/officials", {"email": SAM})
    assert appoint.status_code == 403 and SigningOfficial.objects.count() == 1


def test_an_official_without_a_recent_sign_in_reads_but_does_not_decide(olive, sam):
    api = APIClient()
    api.force_login(olive)  # neither a password nor a provider sign-in recorded recently
    rows = researchers(api)
    response = issue(api, rows["Sam Student"]["id"])
    assert response.status_code == 403 and response.json()["code"] == "reauthentication_required"


def test_only_staff_appoint_officials(sam, university):
    api = APIClient()
    login_recently(api, sam)
    assert post_json(api, "/api/v1/institutions/0testun01/officials", {"email": SAM}).status_code == 403
    with pytest.raises(services.Forbidden):
        services.official_appoint(
            actor=services.Actor(user=sam, credential="session", reauthenticated=True), institution=university, user=sam
        )
    assert not SigningOfficial.objects.exists()


def test_the_card_endpoints_are_in_the_openapi_schema(client):
    schema = client.get("/api/schema", HTTP_ACCEPT="application/json").json()
    paths = schema["paths"]
    for path in (
        "/api/v1/library-cards",
        "/api/v1/institutions/{ror_id}/researchers",
        "/api/v1/institutions/{ror_id}/library-cards",
        "/api/v1/institutions/{ror_id}/library-cards/{public_id}/revoke",
        "/api/v1/institutions/{ror_id}/officials",
    ):
        assert any(p.rstrip("/") == path for p in paths), path
    rules = schema["components"]["schemas"]["Conditions"]["properties"]
    assert "library_card" in rules


def test_staff_appoint_and_end_through_the_admin_site(client, university, sam, staff):
    login_recently(client, staff)
    response = client.post("/admin/access/signingofficial/add/", {"institution": university.pk, "user": sam.pk})
    assert response.status_code == 302, response.content.decode()[:2000]
    official = SigningOfficial.objects.get()
    assert (official.user, official.appointed_by) == (sam, staff)
    assert AuditEvent.objects.get(action="official.appointed").credential == f"admin:{staff.email}"
    response = client.post(
        "/admin/access/signingofficial/",
        {"action": "end_appointments", "_selected_action": [official.pk]},
    )
    assert response.status_code == 302
    official.refresh_from_db()
    assert official.ended_at is not None and AuditEvent.objects.filter(action="official.ended").exists()


def test_make_run_appoints_the_demo_official_once_she_has_signed_in(client, idp, settings, tmp_path):
    from io import StringIO

    from django.core.management import call_command

    settings.DEV_MODE, settings.VAR_DIR = True, tmp_path
    demo = services.institution_create(
        actor=OPERATOR, ror_id="0demoun01", name="Demo University", email_domains=["uni.example"], issuers=[idp.issuer]
    )
    services.institution_confirm(actor=OPERATOR, institution=demo)
    out = StringIO()
    call_command("dev_bootstrap", stdout=out)
    assert f"sign in as {OLIVE}" in out.getvalue() and not SigningOfficial.objects.exists()
    signed_in(client, idp, OLIVE, affiliations=("staff@uni.example",), name="Olive Official")
    call_command("dev_bootstrap", stdout=StringIO())
    call_command("dev_bootstrap", stdout=StringIO())
    assert SigningOfficial.objects.get().user.email == OLIVE


def test_unlinking_the_identity_a_card_is_bound_to_ends_the_card(client, olive, sam):
    card = services.card_issue(
        actor=services.Actor(user=olive, credential="session", reauthenticated=True),
        institution=olive.official_roles.get().institution,
        researcher=sam,
    )
    sam.set_password("a long enough password 1")
    sam.save()
    identity = sam.verified_identities.get()
    services.identity_unlink(actor=services.Actor(user=sam, credential="session"), identity=identity)
    card.refresh_from_db()
    assert card.revoked_at is not None and card.ending == LibraryCard.Ending.UNLINKED
