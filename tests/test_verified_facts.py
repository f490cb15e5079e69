"""Verified facts where people read them: reviewers see them apart from what the applicant typed (review page and
the reviewers' API, in both languages), the application form is filled in from them and marked, a lab's members
verified at its institution are shown so, an ORCID-only account gives an address to apply, and the demo catalog
brings the demo institution. Identities come from real sign-ins through the test provider."""

from __future__ import annotations

import re

import pytest
from allauth.account.models import EmailAddress
from django.core.management import call_command
from rest_framework.test import APIClient

from access import services
from access.identities import has_orcid, verified_facts
from access.models import Institution, User, VerifiedIdentity
from tests.factories import AccessRequestFactory, LicenseFactory, ReleaseFactory, UserFactory, add_file, token_secret
from tests.support.auth import login_recently
from tests.support.oidc_provider import configure, sign_in

ADA = "ada.lovelace@uni.example"


@pytest.fixture
def gated(local_storage):
    release = ReleaseFactory(repo_id="facebook/opt-175b", access="gated", license=LicenseFactory())
    add_file(release, "config.json", b"{}")
    return release


@pytest.fixture
def ada(client, idp, university):
    """Ada signed up through Test University's sign-in: faculty and member there, her address verified by it."""
    assert sign_in(client, idp).status_code == 302
    client.logout()
    return User.objects.get(email=ADA)


def review_page(client, reviewer, request, language="en"):
    login_recently(client, reviewer)
    return client.get(f"/review/requests/{request.public_id}/", HTTP_ACCEPT_LANGUAGE=language).content.decode()


def section(page: str, id_: str) -> str:
    return page.split(f'id="{id_}"', 1)[1].split("</section>", 1)[0]


@pytest.mark.parametrize(
    ("language", "sentence", "differs"),
    [
        ("en", "Verified by Test University today: faculty@uni.example", "differs from what is verified"),
        ("zh-hans", "今天由 Test University 验证：faculty@uni.example", "与已验证的信息不符"),
    ],
)
def test_reviewers_see_the_verified_facts_apart_from_what_was_typed(
    client, ada, reviewer, gated, language, sentence, differs
):
    request = AccessRequestFactory(applicant=ada, release=gated, full_name="Ada Lovelace", affiliation="MIT")
    page = review_page(client, reviewer, request, language)
    facts = section(page, "verified-facts")
    assert sentence in facts
    answers = page.split('id="answers"', 1)[1].split("</dl>", 1)[0]
    affiliation = answers.split("MIT", 1)[1].split("</dd>", 1)[0]
    assert differs in affiliation  # she typed MIT; Test University verified her
    assert 'data-match="verified"' in answers.split(ADA, 1)[1].split("</dd>", 1)[0]


def test_an_applicant_with_nothing_verified_is_shown_so(client, reviewer, gated):
    request = AccessRequestFactory(applicant=UserFactory(email="bob@lab.example"), release=gated)
    page = review_page(client, reviewer, request)
    assert "Nothing is verified about this applicant" in section(page, "verified-facts")
    assert "data-match" not in page


def test_the_reviewers_api_gives_the_verified_facts(ada, reviewer, gated):
    request = AccessRequestFactory(
        applicant=ada, release=gated, full_name="Ada Lovelace", affiliation="Test University"
    )
    AccessRequestFactory(applicant=UserFactory(email="bob@lab.example"), release=ReleaseFactory(access="gated"))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token_secret(reviewer, review=True)}")
    listed = {r["id"]: r for r in api.get("/api/v1/review/access-requests").json()["results"]}
    verified = listed[request.public_id]["verified"]
    assert verified["matches"] == {"full_name": "verified", "affiliation": "verified", "email": "verified"}
    assert verified["emails"] == [ADA] and verified["name"] == "Ada Lovelace" and verified["orcid"] == ""
    faculty = next(a for a in verified["affiliations"] if a["kind"] == "faculty")
    assert faculty["institution"] == {"ror_id": "0testun01", "name": "Test University"}
    assert faculty["method"] == "affiliation" and faculty["provider"] == "test-university"
    assert faculty["text"] == "Verified by Test University today: faculty@uni.example"
    others = [r for r in listed.values() if r["id"] != request.public_id]
    assert others[0]["verified"] == {
        "affiliations": [],
        "orcid": "",
        "name": "",
        "emails": [],
        "matches": {"full_name": None, "affiliation": None, "email": None},
    }
    # The block is the reviewers': an applicant's own listing of their requests has none.
    own = APIClient()
    own.credentials(HTTP_AUTHORIZATION=f"Bearer {token_secret(ada)}")
    assert "verified" not in own.get("/api/v1/access-requests").json()["results"][0]


def test_a_page_of_the_reviewers_queue_costs_the_same_queries_for_more_applicants(
    client, ada, reviewer, gated, django_assert_max_num_queries
):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token_secret(reviewer, review=True)}")
    AccessRequestFactory(applicant=ada, release=gated)
    with django_assert_max_num_queries(40) as few:
        api.get("/api/v1/review/access-requests")
    for n in range(10):
        AccessRequestFactory(applicant=UserFactory(email=f"r{n}@uni.example"), release=ReleaseFactory(access="gated"))
    with django_assert_max_num_queries(len(few.captured_queries) + 10 * 8):
        response = api.get("/api/v1/review/access-requests")
    assert len(response.json()["results"]) == 11


def test_the_schema_documents_the_verified_facts(client):
    schema = client.get("/api/schema").content.decode()
    assert "VerifiedFacts" in schema and "VerifiedAffiliation" in schema


def test_the_application_form_is_filled_in_from_the_facts_and_marked(client, ada, gated):
    client.force_login(ada)
    page = client.get(f"/models/{gated.repo_id}/apply").content.decode()
    assert re.search(r'name="full_name" value="Ada Lovelace"', page)
    assert re.search(r'name="affiliation" value="Test University"', page)
    for field in ("full_name", "affiliation"):
        marked = page.split(f'id="field-{field}"', 1)[1].split('<div class="field', 1)[0]
        assert "Filled in from what Test University verified" in marked
    assert "verified" in page.split('id="apply-email"', 1)[1].split("</p>", 1)[0]
    assert 'id="field-role"' in page and "Filled in from" not in page.split('id="field-role"', 1)[1].split("</div>")[0]


def test_a_lab_member_verified_at_the_labs_institution_is_shown_so(client, ada, university):
    owner = UserFactory(email="pi@uni.example")
    actor = services.Actor(user=owner, credential="session", reauthenticated=True)
    lab = services.lab_create(actor=actor, name="Language Lab", email_domains=["lab.example"], institution="0testun01")
    _invitation, secret = services.lab_invite(actor=actor, lab=lab, email=ADA)
    services.lab_invitation_accept(actor=services.Actor(user=ada, credential="session"), token=secret)
    declared = UserFactory(email="max@lab.example")
    _invitation, secret = services.lab_invite(actor=actor, lab=lab, email=declared.email)
    services.lab_invitation_accept(actor=services.Actor(user=declared, credential="session"), token=secret)
    client.force_login(owner)
    page = client.get(f"/labs/{lab.public_id}/").content.decode()
    rows = dict(re.findall(r'<tr data-member="([^"]+)">(.*?)</tr>', page, re.S))
    assert "Verified at Test University" in rows[ADA]
    assert "Verified at Test University" in rows[owner.email]  # a confirmed address on uni.example
    assert "Declared domain" in rows[declared.email] and "Verified" not in rows[declared.email]
    members = APIClient()
    members.force_authenticate(owner)
    shown = {m["email"]: m for m in members.get(f"/api/v1/labs/{lab.public_id}/members").json()}
    assert shown[ADA]["verified_at_institution"] is True and shown[declared.email]["verified_at_institution"] is False


def test_only_the_owner_chooses_the_labs_institution_among_confirmed_ones(client, university):
    owner, admin = UserFactory(email="pi@lab.example"), UserFactory(email="admin@lab.example")
    actor = services.Actor(user=owner, credential="session", reauthenticated=True)
    lab = services.lab_create(actor=actor, name="Language Lab")
    _invitation, secret = services.lab_invite(actor=actor, lab=lab, email=admin.email, role="admin")
    services.lab_invitation_accept(actor=services.Actor(user=admin, credential="session"), token=secret)
    with pytest.raises(services.Forbidden):
        services.lab_set_institution(
            actor=services.Actor(user=admin, credential="session"), lab=lab, institution="0testun01"
        )
    unconfirmed = services.institution_create(actor=services.command_actor("t"), ror_id="0otheru02", name="Other")
    with pytest.raises(services.ServiceError) as refused:
        services.lab_set_institution(actor=actor, lab=lab, institution=unconfirmed.ror_id)
    assert refused.value.code == "unknown_institution"
    client.force_login(owner)
    client.post(f"/labs/{lab.public_id}/institution", {"institution": "0testun01"})
    lab.refresh_from_db()
    assert lab.institution == university


def test_an_orcid_account_gives_an_address_and_reviewers_see_the_orcid_id(client, settings, idp, reviewer, gated):
    configure(settings, idp, name="ORCID", kind="orcid")
    idp.person = {"sub": "0000-0002-1825-0097", "name": "Ada Lovelace", "given_name": "Ada", "family_name": "Lovelace"}
    response = sign_in(client, idp)
    assert response.status_code == 302 and response["Location"] == "/accounts/3rdparty/signup/"
    assert "gives no email address" in client.get("/accounts/3rdparty/signup/").content.decode()
    response = client.post("/accounts/3rdparty/signup/", {"email": "ada@somewhere.example"})
    assert response.status_code == 302
    user = User.objects.get(email="ada@somewhere.example")
    assert not EmailAddress.objects.get(user=user).verified  # a link was sent; applying waits for it
    assert has_orcid(user) and verified_facts(user).orcid == "0000-0002-1825-0097"
    assert VerifiedIdentity.objects.get(user=user).verified_email == ""
    request = AccessRequestFactory(applicant=user, release=gated)
    facts = section(review_page(client, reviewer, request), "verified-facts")
    assert "ORCID iD linked" in facts and "0000-0002-1825-0097" in facts


def test_the_demo_catalog_brings_the_demo_institution(db, local_storage, monkeypatch):
    monkeypatch.setenv("OIDC_DEMO_UNIVERSITY_ISSUER", "http://127.0.0.1:8001/o")
    call_command("load_demo_catalog", "--only", "facebook/opt-125m", "--size", "1024")
    call_command("load_demo_catalog", "--only", "facebook/opt-125m", "--size", "1024")  # again: nothing new
    demo = Institution.objects.get()
    assert demo.name == "Demo University" and demo.is_confirmed
    assert re.fullmatch(r"0[a-z0-9]{6}[0-9]{2}", demo.ror_id)
    assert demo.identifiers_of("email_domain") == ["uni.example"]
    assert demo.identifiers_of("oidc_issuer") == ["http://127.0.0.1:8001/o"]
