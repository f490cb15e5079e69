"""Decision rules: each condition and action, first match, who may edit them; restricted countries at submission
and at the gate; re-verification of a grant that rested on a verified affiliation (a moved clock), its suspension
by a sign-in that no longer asserts it, and its lifting. Identities come from real sign-ins through the test
provider (tests/support/oidc_provider.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail
from django.utils import timezone
from rest_framework.test import APIClient

from access import downloads, services
from access import rules as decision_rules
from access.gate import cache, loader
from access.identities import AFFILIATION, EMAIL, VerifiedAffiliation
from access.models import AccessRequest, AuditEvent, DecisionRule, Grant, Institution, User
from access.services.reverification import reverify_sweep
from tests.factories import ANSWERS as FORM_ANSWERS
from tests.factories import AccessRequestFactory, LicenseFactory, ReleaseFactory, UserFactory, add_file, token_secret
from tests.support.auth import login_recently
from tests.support.oidc_provider import person, sign_in

pytestmark = pytest.mark.django_db

ADA = "ada.lovelace@uni.example"
ANSWERS = {**FORM_ANSWERS, "noncommercial_attested": True}
FACULTY_AT_TEST_UNIVERSITY = {"affiliation_kinds": ["faculty"], "institutions": ["0testun01"]}


def actor(user):
    return services.Actor(user=user, credential="session", ip="127.0.0.1", reauthenticated=True)


OPERATOR = services.command_actor("test")


@pytest.fixture
def gated(local_storage):
    release = ReleaseFactory(repo_id="facebook/opt-175b", access="gated", license=LicenseFactory())
    add_file(release, "config.json", b"{}")
    return release


@pytest.fixture
def manager(db):
    user = UserFactory(email="mona@portal.example")
    services.release_manager_add(actor=OPERATOR, user=user)
    return user


@pytest.fixture
def ada(client, idp, university):
    """Ada signed up through Test University's sign-in: faculty and member there, her address verified by it."""
    assert sign_in(client, idp).status_code == 302
    client.logout()
    return User.objects.get(email=ADA)


def set_rules(release, *rules, countries=None):
    return services.release_rules_set(
        actor=OPERATOR, release=release, rules=list(rules), restricted_countries=countries
    )


def submit(user, release, **overrides):
    return services.request_submit(
        actor=actor(user), release=release, data={**ANSWERS, **overrides}, license_accepted=True
    )


def sign_in_again(client, idp, **claims):
    idp.person = person(ADA, **claims)
    assert sign_in(client, idp).status_code == 302
    client.logout()


# --- each condition, in memory ------------------------------------------------------------------------------

UNI = Institution(pk=1, ror_id="0testun01", name="Test University")
OTHER = Institution(pk=2, ror_id="0otheru01", name="Other University")
SEEN = datetime(2026, 6, 1, tzinfo=UTC)


def affiliation(kind="faculty", institution=UNI, provider="test-university", method=AFFILIATION):
    value = f"{kind}@uni.example" if method == AFFILIATION else "ada@uni.example"
    return VerifiedAffiliation(institution, kind, value, method, provider, "Test University", SEEN)


FACTS = decision_rules.ApplicantFacts(
    affiliations=(affiliation("member"), affiliation("faculty")),
    verified_emails=("ada@uni.example",),
    orcid="0000-0002-1825-0097",
    organization_type="academic",
    country="NL",
)
NOTHING = decision_rules.ApplicantFacts(organization_type="industry_research", country="US")


@pytest.mark.parametrize(
    ("conditions", "holds_for_ada", "used"),
    [
        ({"providers": ["test-university"]}, True, "member@uni.example"),
        ({"providers": ["orcid"]}, False, None),
        ({"affiliation_kinds": ["faculty"]}, True, "faculty@uni.example"),
        ({"affiliation_kinds": ["student"]}, False, None),
        ({"institutions": "any"}, True, "member@uni.example"),
        ({"institutions": ["0testun01"]}, True, "member@uni.example"),
        ({"institutions": ["0otheru01"]}, False, None),
        # Affiliation conditions hold together, on one affiliation.
        ({"affiliation_kinds": ["faculty"], "institutions": ["0testun01"]}, True, "faculty@uni.example"),
        ({"affiliation_kinds": ["faculty"], "providers": ["orcid"]}, False, None),
        ({"email_domains": ["uni.example"]}, True, "ada@uni.example"),
        ({"email_domains": ["else.example"]}, False, None),
        ({"orcid": True}, True, "0000-0002-1825-0097"),
        ({"organization_types": ["academic"]}, True, "academic"),
        ({"organization_types": ["government"]}, False, None),
        ({"countries": ["NL", "BE"]}, True, "NL"),
        ({"countries": ["US"]}, False, None),
    ],
)
def test_each_condition_holds_on_its_fact_and_says_which_it_used(conditions, holds_for_ada, used):
    found = decision_rules.match(conditions, FACTS)
    assert (found is not None) == holds_for_ada
    if found is not None:
        assert found[0]["value"] == used
    if conditions not in ({"countries": ["US"]},):
        assert decision_rules.match(conditions, NOTHING) is None or "countries" in conditions


def test_an_address_verified_by_email_is_no_provider_affiliation():
    by_email = decision_rules.ApplicantFacts(affiliations=(affiliation("", method=EMAIL, provider=""),))
    assert decision_rules.match({"institutions": "any"}, by_email) is not None
    assert decision_rules.match({"affiliation_kinds": ["faculty"]}, by_email) is None


def test_the_first_rule_that_matches_decides_and_no_match_goes_to_a_reviewer():
    review = DecisionRule(pk=1, position=1, action="review", conditions={"countries": ["NL"]})
    approve = DecisionRule(pk=2, position=2, action="approve", conditions={"affiliation_kinds": ["faculty"]})
    assert decision_rules.decide([review, approve], FACTS).rule.pk == 1
    assert decision_rules.decide([approve, review], FACTS).action == "approve"
    outcome = decision_rules.decide([approve], NOTHING)
    assert outcome.action == "review" and outcome.rule is None


@pytest.mark.parametrize(
    ("rule", "code"),
    [
        ({"action": "approve", "conditions": {"countries": ["NL"]}}, "invalid_rule"),  # declared facts only
        ({"action": "approve", "conditions": {}}, "invalid_rule"),
        ({"action": "approve", "conditions": {"library_card": "yes"}}, "invalid_rule"),  # true or left out
        ({"action": "approve", "conditions": {"affiliation_kinds": ["dean"]}}, "invalid_rule"),
        ({"action": "refuse", "conditions": {"countries": ["NL"]}}, "invalid_rule"),  # NL is not restricted
        ({"action": "delete", "conditions": {}}, "invalid_rule"),
    ],
)
def test_rules_that_would_approve_blind_or_refuse_outside_the_restricted_countries_are_refused(gated, rule, code):
    with pytest.raises(services.ServiceError) as refused:
        set_rules(gated, rule, countries=["KP"])
    assert refused.value.code == code
    assert not gated.rules.exists()


def test_a_refusing_rule_names_only_restricted_countries(gated):
    (rule,) = set_rules(gated, {"action": "refuse", "conditions": {"countries": ["KP"]}}, countries=["KP"])
    assert rule.action == "refuse"
    outcome = decision_rules.decide([rule], decision_rules.ApplicantFacts(country="KP"))
    assert outcome.action == "refuse"


# --- who edits them --------------------------------------------------------------------------------------------


def test_someone_without_manage_release_cannot_edit_the_rules(gated, reviewer):
    rule = {"action": "approve", "conditions": FACULTY_AT_TEST_UNIVERSITY}
    with pytest.raises(services.Forbidden):
        services.release_rules_set(actor=actor(reviewer), release=gated, rules=[rule])
    with pytest.raises(services.Forbidden):
        services.release_rules_set(actor=services.rule_actor("1"), release=gated, rules=[rule])
    assert not gated.rules.exists()


def test_the_api_gives_and_replaces_the_rules_for_release_managers_only(gated, manager, reviewer):
    api = APIClient()
    api.force_authenticate(reviewer)
    assert api.get("/api/v1/models/facebook/opt-175b/rules").status_code == 404
    body = {
        "rules": [{"action": "approve", "conditions": FACULTY_AT_TEST_UNIVERSITY, "note": "Faculty"}],
        "restricted_countries": ["kp"],
    }
    assert api.put("/api/v1/models/facebook/opt-175b/rules", body, format="json").status_code == 404
    # Scripts act with powers through a token with reviewer access (which needs the review permission too).
    services.reviewer_add(actor=OPERATOR, user=manager)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token_secret(manager, review=True)}")
    response = api.put("/api/v1/models/facebook/opt-175b/rules", body, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["restricted_countries"] == ["KP"]
    (rule,) = response.json()["rules"]
    assert rule["position"] == 1 and rule["conditions"] == FACULTY_AT_TEST_UNIVERSITY
    event = AuditEvent.objects.get(action="release.rules_changed")
    assert event.data["after"][0]["id"] == rule["id"] and event.data["restricted_countries"]["to"] == ["KP"]
    # The same rule again keeps its id; a changed one is a new rule, the old one retired.
    assert api.put("/api/v1/models/facebook/opt-175b/rules", body, format="json").json()["rules"][0]["id"] == rule["id"]
    body["rules"][0]["note"] = "Faculty of Test University"
    again = api.put("/api/v1/models/facebook/opt-175b/rules", body, format="json").json()["rules"][0]
    assert again["id"] != rule["id"] and DecisionRule.objects.get(pk=rule["id"]).retired_at is not None
    bad = api.put(
        "/api/v1/models/facebook/opt-175b/rules",
        {"rules": [{"action": "approve", "conditions": {"countries": ["NL"]}}]},
        format="json",
    )
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_rule"
    assert "/api/v1/models/{namespace}/{name}/rules" in APIClient().get("/api/schema").content.decode()


def test_the_rules_page_adds_moves_and_removes_rules(client, gated, manager):
    login_recently(client, manager)
    url = "/manage/facebook/opt-175b/rules"
    assert client.get(url).status_code == 200
    added = client.post(
        url, {"do": "add", "action": "approve", "affiliation_kinds": ["faculty"], "institutions": "0testun01"}
    )
    assert added.status_code == 302
    client.post(url, {"do": "add", "action": "review", "countries": "NL"})
    client.post(url, {"do": "up", "position": "2"})
    assert [r.action for r in decision_rules.current_rules(gated)] == ["review", "approve"]
    refused = client.post(url, {"do": "add", "action": "approve", "countries": "NL"})
    assert refused.status_code == 400 and "verified condition" in refused.content.decode()
    client.post(url, {"do": "remove", "position": "1"})
    assert [r.action for r in decision_rules.current_rules(gated)] == ["approve"]
    client.post(url, {"do": "countries", "restricted_countries": "KP IR"})
    gated.refresh_from_db()
    assert gated.restricted_countries == ["IR", "KP"]


# --- actions on real requests -----------------------------------------------------------------------------------


def test_an_approving_rule_approves_through_the_approve_service_and_the_grant_records_the_facts(
    ada, gated, django_capture_on_commit_callbacks
):
    (rule,) = set_rules(gated, {"action": "approve", "conditions": FACULTY_AT_TEST_UNIVERSITY})
    with django_capture_on_commit_callbacks(execute=True):
        request = submit(ada, gated)
    assert request.status == "approved" and request.decided_by_rule_id == rule.pk
    assert "verified faculty at Test University" in request.decision_reason
    approve = AuditEvent.objects.get(action="request.approve", request=request)
    assert approve.credential == f"rule:{rule.pk}" and approve.actor_id is None
    matched = AuditEvent.objects.get(action="request.rule_matched", request=request)
    assert matched.data["rule"] == rule.pk and matched.data["facts"][0]["value"] == "faculty@uni.example"
    grant = Grant.objects.get(request=request)
    assert grant.rested_on[0]["value"] == "faculty@uni.example"
    assert grant.affiliation == "faculty@uni.example" and grant.affiliation_institution.ror_id == "0testun01"
    assert downloads.access_state(user=ada, release=gated).allowed


def test_a_student_or_a_request_no_rule_matches_waits_for_a_reviewer(client, idp, university, gated):
    set_rules(gated, {"action": "approve", "conditions": FACULTY_AT_TEST_UNIVERSITY})
    idp.person = person(ADA, affiliations=("student@uni.example",))
    sign_in(client, idp)
    request = submit(User.objects.get(email=ADA), gated)
    assert request.status == "pending" and request.decided_by_rule_id is None
    assert submit(UserFactory(email="bob@lab.example"), gated).status == "pending"


def test_a_review_rule_before_an_approving_one_sends_the_request_to_a_reviewer(ada, gated):
    set_rules(
        gated,
        {"action": "review", "conditions": {"organization_types": ["academic"]}},
        {"action": "approve", "conditions": FACULTY_AT_TEST_UNIVERSITY},
    )
    assert submit(ada, gated).status == "pending"


def test_lab_requests_license_re_reviews_and_uploads_always_go_to_a_reviewer(ada, gated):
    lab_request = AccessRequestFactory(
        applicant=ada, release=gated, lab=services.lab_create(actor=actor(ada), name="Ada's lab")
    )
    assert decision_rules.always_reviewed(lab_request)
    assert not decision_rules.always_reviewed(AccessRequestFactory(applicant=UserFactory(), release=gated))


def test_the_dashboard_numbers_split_automatic_and_human_decisions(ada, gated, reviewer):
    set_rules(gated, {"action": "approve", "conditions": FACULTY_AT_TEST_UNIVERSITY})
    submit(ada, gated)
    by_hand = submit(UserFactory(email="bob@lab.example"), gated)
    services.request_reject(actor=actor(reviewer), access_request=by_hand, reason="No.")
    api = APIClient()
    api.force_authenticate(reviewer)
    rows = {row["decider"]: row for row in api.get("/api/v1/review/stats").json()["decisions_by_decider"]}
    assert (rows["automatic"]["approved"], rows["automatic"]["rejected"]) == (1, 0)
    assert (rows["human"]["approved"], rows["human"]["rejected"]) == (0, 1)


# --- restricted countries ---------------------------------------------------------------------------------------


def test_a_request_from_a_restricted_country_is_refused_at_submission(gated):
    set_rules(gated, countries=["KP"])
    with pytest.raises(services.ServiceError) as refused:
        submit(UserFactory(email="bob@lab.example"), gated, country="KP")
    assert refused.value.code == "country_restricted" and "KP" in str(refused.value)
    assert not AccessRequest.objects.exists()


def test_a_holder_from_a_country_restricted_later_is_refused_at_the_gate(gated, reviewer):
    bob = UserFactory(email="bob@lab.example")
    request = submit(bob, gated, country="KP")
    services.request_approve(actor=actor(reviewer), access_request=request)
    services.grant_issue(request_id=request.pk)
    assert downloads.access_state(user=bob, release=gated).allowed
    set_rules(gated, countries=["KP"])
    refused = downloads.access_state(user=bob, release=gated)
    assert refused.code == "country_restricted" and "KP" in refused.detail
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token_secret(bob)}")
    response = api.get("/api/v1/models/facebook/opt-175b/files/config.json")
    assert response.status_code == 403 and response.json()["code"] == "country_restricted"


# --- re-verification --------------------------------------------------------------------------------------------


@pytest.fixture
def holder(ada, gated, django_capture_on_commit_callbacks):
    set_rules(gated, {"action": "approve", "conditions": FACULTY_AT_TEST_UNIVERSITY})
    with django_capture_on_commit_callbacks(execute=True):
        submit(ada, gated)
    return Grant.objects.get(user=ada)


def move_clock(monkeypatch, days):
    later = timezone.now() + timedelta(days=days)
    monkeypatch.setattr(timezone, "now", lambda: later)
    return later


def test_reverify_after_the_maximum_age_from_the_cached_date_without_a_query(
    holder, ada, gated, monkeypatch, rf, django_assert_num_queries
):
    assert downloads.access_state(user=ada, release=gated).allowed
    move_clock(monkeypatch, 179)
    assert downloads.access_state(user=ada, release=gated).allowed
    decisions = []

    def download(request):
        decisions.append(downloads.decide(loader.inputs(user=ada, release=gated), timezone.now()))

    cache.RequestScope(download)(rf.get("/"))  # the web process reads the person's facts once and keeps them
    move_clock(monkeypatch, 2)
    with django_assert_num_queries(0):
        cache.RequestScope(download)(rf.get("/"))
    assert [d.code for d in decisions] == ["granted", "reverify"]
    refused = downloads.access_state(user=ada, release=gated)
    assert "sign in with Test University again" in refused.detail


def test_the_next_sign_in_that_asserts_the_affiliation_lifts_reverify(client, idp, holder, ada, gated, monkeypatch):
    move_clock(monkeypatch, 200)
    assert downloads.access_state(user=ada, release=gated).code == "reverify"
    sign_in_again(client, idp)
    holder.refresh_from_db()
    assert holder.affiliation_seen_at == timezone.now()
    assert downloads.access_state(user=ada, release=gated).allowed
    assert AuditEvent.objects.filter(action="grant.reverified", request=holder.request).exists()


def test_holders_are_warned_fourteen_days_before_once(holder, monkeypatch):
    move_clock(monkeypatch, 160)
    assert reverify_sweep() == 0
    move_clock(monkeypatch, 7)
    assert reverify_sweep() == 1
    assert reverify_sweep() == 0
    (warning,) = [m for m in mail.outbox if "Sign in again" in m.subject]
    assert warning.to == [ADA] and "faculty@uni.example" in warning.body


def test_a_sign_in_that_no_longer_asserts_the_affiliation_suspends_the_grant_and_a_later_one_lifts_it(
    client, idp, holder, ada, gated, reviewer, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        sign_in_again(client, idp, affiliations=("member@uni.example",))
    holder.refresh_from_db()
    assert holder.suspended_at is not None
    suspended = AuditEvent.objects.get(action="grant.suspended")
    assert suspended.data["affiliation"] == "faculty@uni.example"
    assert suspended.data["asserted"] == ["member@uni.example"]
    assert any(m.to == [reviewer.email] and "suspended" in m.subject for m in mail.outbox)
    refused = downloads.access_state(user=ada, release=gated)
    assert refused.code == "reverify" and "no longer asserted" in refused.detail
    login_recently(client, reviewer)
    assert 'id="suspended"' in client.get(f"/review/grants/{holder.public_id}/").content.decode()
    assert "data-suspended" in client.get("/review/grants/").content.decode()
    client.logout()
    sign_in_again(client, idp)
    holder.refresh_from_db()
    assert holder.suspended_at is None
    assert AuditEvent.objects.filter(action="grant.reinstated").exists()
    assert downloads.access_state(user=ada, release=gated).allowed


def test_a_renewal_is_decided_by_the_rules_as_any_request(holder, ada, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        renewal = services.request_renew(actor=actor(ada), grant=holder)
    assert renewal.status == "approved" and renewal.renewal_of_id == holder.pk
    assert Grant.objects.get(request=renewal).affiliation == "faculty@uni.example"


def test_a_request_with_an_upload_goes_to_a_reviewer_even_when_a_rule_matches(ada, gated):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.factories import add_question

    add_question(gated, "ethics_approval", kind="file", options={"max_size": 4096, "types": ["pdf"]})
    set_rules(gated, {"action": "approve", "conditions": FACULTY_AT_TEST_UNIVERSITY})
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token_secret(ada)}")
    body = {**ANSWERS, "repo_id": gated.repo_id, "accept_license": True, "draft": True}
    draft = api.post("/api/v1/access-requests", body, format="json").json()["id"]
    letter = SimpleUploadedFile("letter.pdf", b"%PDF-1.4\n" + b"x" * 100)
    attach = {"question": "ethics_approval", "file": letter}
    assert api.post(f"/api/v1/access-requests/{draft}/attachments", attach).status_code == 201
    submitted = api.post(f"/api/v1/access-requests/{draft}/submit")
    assert submitted.status_code == 200, submitted.content
    assert AccessRequest.objects.get(public_id=draft).status == "pending"
