"""Labs: one application covers a group, each member accepts the license personally, and access follows
membership on every download channel."""

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone
from rest_framework.test import APIClient

from access import services
from access.downloads import relay_url
from access.models import AuditEvent, DownloadEvent, Grant, LabInvitation, LabMembership, LabSeat
from tests.factories import ANSWERS, ReleaseFactory, UserFactory, add_file, grant_for, token_secret

pytestmark = pytest.mark.django_db(transaction=True)

SHARD = "checkpoint_last-model_part-0-shard0.pt"


def api(token=None):
    client = APIClient()
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def actor(user):
    return services.Actor(user=user, credential="session", ip="192.0.2.7")


@pytest.fixture
def release(local_storage):
    release = ReleaseFactory(repo_id="facebook/opt-175b", access="gated")
    add_file(release, SHARD, b"weights" * 100)
    add_file(release, "config.json", b"{}")
    return release


@pytest.fixture
def lab(db):
    """A lab of three: the owner (a PI), an admin and a member, who joined through invitations."""
    owner = UserFactory(email="pi@cs.uni.example")
    lab = services.lab_create(
        actor=actor(owner), name="Language Lab", ror_id="02mhbdp94", email_domains=["uni.example"]
    )
    people = {"owner": owner}
    for role, email in (("admin", "ada@cs.uni.example"), ("member", "max@gmail.example")):
        person = UserFactory(email=email)
        _invitation, secret = services.lab_invite(actor=actor(owner), lab=lab, email=email, role=role)
        services.lab_invitation_accept(actor=actor(person), token=secret)
        people[role] = person
    return lab, people


def member_id(lab, user):
    return LabMembership.objects.current().get(lab=lab, user=user).public_id


def apply_for_lab(owner, lab, release, **coverage):
    body = {"repo_id": release.repo_id, "accept_license": True, "noncommercial_attested": True, **ANSWERS}
    body.update({"lab": lab.public_id, **coverage})
    return api(token_secret(owner)).post("/api/v1/access-requests", body, format="json")


def approved_lab_grant(lab, people, release, reviewer, **coverage):
    response = apply_for_lab(people["owner"], lab, release, **(coverage or {"all_members": True}))
    assert response.status_code == 201, response.content
    access_request = lab.access_requests.get(public_id=response.json()["id"])
    services.request_approve(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True), access_request=access_request
    )
    return Grant.objects.get(request=access_request)


def accept(token, grant, version="1.0"):
    return api(token).post(
        f"/api/v1/grants/{grant.public_id}/accept-license",
        {"version": version, "accept_license": True, "noncommercial_attested": True},
        format="json",
    )


def file_status(token, release):
    response = api(token).get(f"/api/v1/models/{release.repo_id}/files/{SHARD}")
    return response.status_code, (response.json()["code"] if response.status_code != 302 else "granted")


def test_an_invitation_is_emailed_works_once_and_only_for_the_invited_address(lab):
    lab, people = lab
    outsider = UserFactory(email="eve@elsewhere.example")
    mail.outbox.clear()
    _invitation, secret = services.lab_invite(actor=actor(people["owner"]), lab=lab, email="Zoe@Uni.Example")
    (message,) = [m for m in mail.outbox if "zoe@uni.example" in m.to]
    assert secret in message.body and "Language Lab" in message.subject
    response = api(token_secret(outsider)).post(f"/api/v1/lab-invitations/{secret}/accept")
    assert response.status_code == 403 and response.json()["code"] == "invitation_email_mismatch"
    zoe = UserFactory(email="zoe@uni.example")
    response = api(token_secret(zoe)).post(f"/api/v1/lab-invitations/{secret}/accept")
    assert response.status_code == 200, response.content
    assert response.json()["on_declared_domain"] is True and response.json()["role"] == "member"
    again = api(token_secret(zoe)).post(f"/api/v1/lab-invitations/{secret}/accept")
    assert again.status_code == 400 and again.json()["code"] == "invitation_used"
    unknown = api(token_secret(zoe)).post("/api/v1/lab-invitations/" + "x" * 43 + "/accept")
    assert unknown.status_code == 404 and unknown.json()["code"] == "invitation_invalid"


def test_an_expired_invitation_is_refused(lab):
    lab, people = lab
    invitation, secret = services.lab_invite(actor=actor(people["owner"]), lab=lab, email="late@uni.example")
    LabInvitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    late = UserFactory(email="late@uni.example")
    with pytest.raises(services.ServiceError) as refused:
        services.lab_invitation_accept(actor=actor(late), token=secret)
    assert refused.value.code == "invitation_used"
    assert not LabMembership.objects.filter(lab=lab, user=late).exists()


def test_the_api_lists_labs_and_members_with_their_declared_domains(lab):
    lab, people = lab
    token = token_secret(people["member"])
    (listed,) = api(token).get("/api/v1/labs").json()
    assert listed["id"] == lab.public_id and listed["role"] == "member" and listed["members"] == 3
    members = {m["email"]: m for m in api(token).get(f"/api/v1/labs/{lab.public_id}/members").json()}
    assert members["pi@cs.uni.example"]["role"] == "owner" and members["pi@cs.uni.example"]["on_declared_domain"]
    assert members["max@gmail.example"]["on_declared_domain"] is False
    outsider = UserFactory(email="eve@elsewhere.example")
    assert api(token_secret(outsider)).get(f"/api/v1/labs/{lab.public_id}").status_code == 404


def test_creating_a_lab_needs_a_verified_email_and_clean_fields(db):
    unverified = UserFactory(email="new@uni.example", verified=False)
    response = api(token_secret(unverified)).post("/api/v1/labs", {"name": "X"}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "email_unverified"
    user = UserFactory(email="pi@uni.example")
    client = api(token_secret(user))
    for body in (
        {"name": "Lab\x00"},
        {"name": "Lab", "ror_id": "not-a-ror"},
        {"name": "Lab", "email_domains": ["not a domain"]},
        {"name": "Lab", "email_domains": [{"nested": ["x"]}]},
        {"name": {"a": 1}},
        {"name": "Lab", "website": "javascript:alert(1)"},
    ):
        response = client.post("/api/v1/labs", body, format="json")
        assert response.status_code == 400, body
        assert response.json()["code"] == "invalid"
    created = client.post(
        "/api/v1/labs",
        {"name": "Lab", "ror_id": "https://ror.org/02mhbdp94", "email_domains": ["@Uni.Example"]},
        format="json",
    )
    assert created.status_code == 201
    assert created.json()["ror_id"] == "02mhbdp94" and created.json()["email_domains"] == ["uni.example"]
    assert re.fullmatch(r"[0-9a-f]{32}", created.json()["id"])


# Domains a lab's owner may not declare as the institution's: free email providers and public suffixes (under
# which anyone registers a name). A real university domain, or one under a public suffix, is fine.
REFUSED_DOMAINS = [
    ("gmail.com", "free_email_domain"),
    ("qq.com", "free_email_domain"),
    ("Yahoo.co.uk", "free_email_domain"),
    ("ac.uk", "public_suffix_domain"),
    ("co.uk", "public_suffix_domain"),
    ("github.io", "public_suffix_domain"),
    ("edu.cn", "public_suffix_domain"),
]


@pytest.mark.parametrize(("domain", "code"), REFUSED_DOMAINS)
def test_the_lab_api_refuses_free_email_and_public_suffix_domains(db, domain, code):
    client = api(token_secret(UserFactory(email="pi@ox.ac.uk")))
    response = client.post("/api/v1/labs", {"name": "Lab", "email_domains": ["uni.example", domain]}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["code"] == code
    assert domain.lower() in response.json()["fields"]["email_domains"][0]
    assert not services.labs.Lab.objects.exists()


@pytest.mark.parametrize(("domain", "code"), REFUSED_DOMAINS)
def test_the_lab_form_refuses_free_email_and_public_suffix_domains(client, db, domain, code):
    client.force_login(UserFactory(email="pi@ox.ac.uk"))
    response = client.post("/labs/", {"name": "Lab", "email_domains": f"uni.example\n{domain}"})
    assert response.status_code == 400
    assert domain.lower() in response.context["form"].errors["email_domains"][0]
    assert not services.labs.Lab.objects.exists()


def test_a_university_domain_is_declared_through_the_api_and_the_form(client, db):
    owner = UserFactory(email="pi@cs.ox.ac.uk")
    created = api(token_secret(owner)).post(
        "/api/v1/labs", {"name": "Lab", "email_domains": ["ox.ac.uk", "uni.example"]}, format="json"
    )
    assert created.status_code == 201, created.content
    assert created.json()["email_domains"] == ["ox.ac.uk", "uni.example"]
    client.force_login(owner)
    response = client.post("/labs/", {"name": "Other lab", "email_domains": "cs.ox.ac.uk\nuni.example"})
    assert response.status_code == 302
    assert services.labs.Lab.objects.get(name="Other lab").domains == ["cs.ox.ac.uk", "uni.example"]


def test_members_are_on_a_declared_domain_never_institution_verified(lab):
    lab, people = lab
    members = api(token_secret(people["member"])).get(f"/api/v1/labs/{lab.public_id}/members").json()
    shown = {m["email"]: m for m in members}
    assert shown["pi@cs.uni.example"]["on_declared_domain"] is True
    assert shown["max@gmail.example"]["on_declared_domain"] is False
    # A declared domain verifies nothing: only a confirmed institution's sign-in or domain does (test_sign_in_facts).
    assert all(m["verified_at_institution"] is False for m in members)
    assert all(
        "institution_verified" not in m and "verified" not in " ".join(k for k in m if k != "verified_at_institution")
        for m in members
    )


def test_a_domain_declared_before_the_rule_marks_no_member(lab):
    """A lab stored with gmail.com before free email domains were refused: its gmail members are not on a
    declared domain, and reviewers do not see gmail.com among the lab's domains."""
    lab, _people = lab
    gmail = UserFactory(email="someone@gmail.com")
    services.labs.LabMembership.objects.create(lab=lab, user=gmail, role="member")
    services.labs.Lab.objects.filter(pk=lab.pk).update(email_domains="uni.example\ngmail.com\nac.uk")
    lab.refresh_from_db()
    assert lab.domains == ["uni.example"]
    assert lab.on_declared_domain("someone@gmail.com") is False
    assert lab.on_declared_domain("pi@cs.uni.example") is True
    members = api(token_secret(gmail)).get(f"/api/v1/labs/{lab.public_id}/members").json()
    assert {m["email"]: m["on_declared_domain"] for m in members}["someone@gmail.com"] is False


@pytest.mark.parametrize(
    ("language", "declared", "other"),
    [("en", "Declared domain", "Other domain"), ("zh-hans", "声明的域名", "其他域名")],
)
def test_reviewers_see_declared_domains_never_verified(client, lab, release, reviewer, language, declared, other):
    from tests.support.auth import login_recently

    lab, people = lab
    response = apply_for_lab(people["owner"], lab, release, all_members=True)
    assert response.status_code == 201, response.content
    login_recently(client, reviewer)
    page = client.get(f"/review/requests/{response.json()['id']}/", HTTP_ACCEPT_LANGUAGE=language).content.decode()
    section = page.split('id="lab-request"', 1)[1].split("</section>", 1)[0]
    rows = dict(re.findall(r'<tr data-member="([^"]+)">(.*?)</tr>', section, re.S))
    assert declared in rows["pi@cs.uni.example"] and declared in rows["ada@cs.uni.example"]
    assert other in rows["max@gmail.example"] and declared not in rows["max@gmail.example"]
    for word in ("verified", "Verified", "已验证", "未验证", "验证"):
        assert word not in section, word
    # The lab's own page says the same to its members.
    client.force_login(people["member"])
    page = client.get(f"/labs/{lab.public_id}/", HTTP_ACCEPT_LANGUAGE=language).content.decode()
    members = page.split('id="lab-members"', 1)[1].split("</section>", 1)[0]
    assert declared in members and not any(w in members for w in ("Verified", "已验证", "未验证"))


def test_only_owners_and_admins_apply_invite_and_remove(lab, release):
    lab, people = lab
    member = token_secret(people["member"])
    response = apply_for_lab(people["member"], lab, release, all_members=True)
    assert response.status_code == 403 and response.json()["code"] == "lab_admin_required"
    response = api(member).post(f"/api/v1/labs/{lab.public_id}/invitations", {"email": "x@uni.example"}, format="json")
    assert response.status_code == 403
    response = api(member).delete(f"/api/v1/labs/{lab.public_id}/members/{member_id(lab, people['admin'])}")
    assert response.status_code == 403
    # An admin cannot remove the owner; nobody can.
    admin = token_secret(people["admin"])
    response = api(admin).delete(f"/api/v1/labs/{lab.public_id}/members/{member_id(lab, people['owner'])}")
    assert response.status_code == 403 and response.json()["code"] == "lab_role"
    response = api(token_secret(people["owner"])).delete(
        f"/api/v1/labs/{lab.public_id}/members/{member_id(lab, people['owner'])}"
    )
    assert response.status_code == 400 and response.json()["code"] == "owner_cannot_leave"


def test_a_lab_request_is_decided_once_and_each_member_downloads_after_accepting(lab, release, reviewer):
    lab, people = lab
    mail.outbox.clear()
    grant = approved_lab_grant(lab, people, release, reviewer)
    assert grant.lab_id == lab.pk and grant.is_active
    assert not grant.batches.exists()
    # The owner accepted the license with the request; the others have not yet.
    owner, admin, member = (token_secret(people[r]) for r in ("owner", "admin", "member"))
    assert file_status(owner, release) == (302, "granted")
    assert file_status(member, release) == (403, "lab_license_pending")
    detail = api(member).get(f"/api/v1/models/{release.repo_id}/files/{SHARD}").json()["detail"]
    assert f"/labs/grants/{grant.public_id}/" in detail and "Language Lab" in detail
    assert {m.to[0] for m in mail.outbox if "has access to" in m.subject} >= {"max@gmail.example"}
    # An outdated version is not accepted.
    assert accept(member, grant, version="0.9").json()["code"] == "license_version"
    response = accept(member, grant)
    assert response.status_code == 200 and response.json()["seat"] == "active"
    seat = LabSeat.objects.get(grant=grant, user=people["member"])
    assert seat.license_id == release.license_id and seat.license_accepted_ip and seat.noncommercial_attested
    assert file_status(member, release) == (302, "granted")
    event = DownloadEvent.objects.filter(user=people["member"]).latest("id")
    assert event.grant_id == grant.pk
    assert file_status(admin, release) == (403, "lab_license_pending")
    assert AuditEvent.objects.filter(action="lab.license_accepted", data__member="max@gmail.example").exists()


def test_a_removed_member_is_refused_at_once_on_every_channel_while_the_others_keep_downloading(lab, release, reviewer):
    lab, people = lab
    grant = approved_lab_grant(lab, people, release, reviewer)
    owner, admin, member = (token_secret(people[r]) for r in ("owner", "admin", "member"))
    accept(admin, grant)
    accept(member, grant)
    shard = release.files.get(path=SHARD)
    relay = relay_url(shard.pk, SHARD, user_id=people["member"].pk, base_url="http://testserver")
    relay = relay.removeprefix("http://testserver")
    channels = {
        "api": lambda t: api(t).get(f"/api/v1/models/{release.repo_id}/files/{SHARD}"),
        "manifest": lambda t: api(t).get(f"/api/v1/models/{release.repo_id}/manifest?format=json"),
        "hf": lambda t: api(t).head(f"/{release.repo_id}/resolve/main/{SHARD}"),
        "relay": lambda t: api().get(relay),
    }
    for name, call in channels.items():
        assert call(member).status_code in (200, 302), name
    mail.outbox.clear()
    response = api(admin).delete(f"/api/v1/labs/{lab.public_id}/members/{member_id(lab, people['member'])}")
    assert response.status_code == 204
    for name, call in channels.items():
        assert call(member).status_code == 403, name
    assert api(member).get(f"/api/v1/models/{release.repo_id}/files/{SHARD}").json()["code"] == "gated"
    for token in (owner, admin):
        assert file_status(token, release) == (302, "granted")
    assert LabSeat.objects.get(grant=grant, user=people["member"]).status == LabSeat.Status.ENDED
    assert [m.to for m in mail.outbox if "removed" in m.subject] == [["max@gmail.example"]]
    assert AuditEvent.objects.filter(action="lab.member_removed", data__member="max@gmail.example").exists()


def test_a_member_who_leaves_loses_access_and_rejoining_needs_the_license_again(lab, release, reviewer):
    lab, people = lab
    grant = approved_lab_grant(lab, people, release, reviewer)
    member = token_secret(people["member"])
    accept(member, grant)
    assert file_status(member, release)[0] == 302
    response = api(member).delete(f"/api/v1/labs/{lab.public_id}/members/{member_id(lab, people['member'])}")
    assert response.status_code == 204
    assert file_status(member, release)[0] == 403
    _invitation, secret = services.lab_invite(actor=actor(people["owner"]), lab=lab, email="max@gmail.example")
    services.lab_invitation_accept(actor=actor(people["member"]), token=secret)
    assert file_status(member, release) == (403, "lab_license_pending")
    accept(member, grant)
    assert file_status(member, release)[0] == 302


def test_named_members_are_covered_and_anyone_else_needs_a_reviewer(lab, release, reviewer):
    lab, people = lab
    grant = approved_lab_grant(
        lab, people, release, reviewer, members=[member_id(lab, people["owner"]), member_id(lab, people["admin"])]
    )
    admin, member = token_secret(people["admin"]), token_secret(people["member"])
    assert accept(admin, grant).json()["seat"] == "active"
    mail.outbox.clear()
    assert accept(member, grant).json()["seat"] == "requested"
    assert file_status(member, release) == (403, "lab_seat_pending")
    seat = LabSeat.objects.get(grant=grant, user=people["member"])
    (asked,) = [m for m in mail.outbox if m.to == [reviewer.email]]
    assert "max@gmail.example" in asked.body and f"/review/grants/{grant.public_id}/" in asked.body
    reviewer_token = token_secret(reviewer, review=True)
    response = api(reviewer_token).post(f"/api/v1/review/lab-seats/{seat.public_id}/reject", {}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "reason_required"
    response = api(reviewer_token).post(f"/api/v1/review/lab-seats/{seat.public_id}/approve", {}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "active"
    assert file_status(member, release)[0] == 302


def test_all_members_beyond_the_release_cap_need_a_reviewer(lab, release, reviewer):
    lab, people = lab
    release.lab_member_cap = 2
    release.save()
    grant = approved_lab_grant(lab, people, release, reviewer)
    assert accept(token_secret(people["admin"]), grant).json()["seat"] == "active"  # owner + admin: the cap
    assert accept(token_secret(people["member"]), grant).json()["seat"] == "requested"
    assert file_status(token_secret(people["member"]), release) == (403, "lab_seat_pending")


def test_revoking_the_lab_grant_reaches_every_member(lab, release, reviewer):
    lab, people = lab
    grant = approved_lab_grant(lab, people, release, reviewer)
    member = token_secret(people["member"])
    accept(member, grant)
    services.grant_revoke(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True),
        grant=grant,
        reason="Terms broken",
    )
    for role in ("owner", "member"):
        response = api(token_secret(people[role])).get(f"/api/v1/models/{release.repo_id}/files/{SHARD}")
        assert response.status_code == 403 and response.json()["code"] == "revoked", role
        assert "Terms broken" in response.json()["detail"]


def test_an_individual_grant_or_a_lab_grant_is_enough(lab, release, reviewer):
    lab, people = lab
    own = grant_for(people["member"], release, reviewer)
    member = token_secret(people["member"])
    assert file_status(member, release)[0] == 302
    grant = approved_lab_grant(lab, people, release, reviewer)
    services.grant_revoke(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True), grant=own, reason="Duplicate"
    )
    assert file_status(member, release) == (403, "lab_license_pending")
    accept(member, grant)
    assert file_status(member, release)[0] == 302


def test_renewing_a_lab_grant_carries_the_members_acceptances(lab, release, reviewer):
    lab, people = lab
    grant = approved_lab_grant(lab, people, release, reviewer)
    member = token_secret(people["member"])
    accept(member, grant)
    with pytest.raises(services.ServiceError):
        services.request_renew(actor=actor(people["member"]), grant=grant)
    renewal = services.request_renew(actor=actor(people["owner"]), grant=grant)
    assert renewal.lab_id == lab.pk and renewal.all_members
    services.request_approve(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True), access_request=renewal
    )
    new = Grant.objects.get(request=renewal)
    Grant.objects.filter(pk=grant.pk).update(expires_at=timezone.now() + timedelta(seconds=1), issued_at=timezone.now())
    grant.refresh_from_db()
    Grant.objects.filter(pk=grant.pk).update(expires_at=grant.issued_at + timedelta(microseconds=1))
    assert LabSeat.objects.get(grant=new, user=people["member"]).status == LabSeat.Status.ACTIVE
    status, _code = file_status(member, release)
    assert status == 302
    assert DownloadEvent.objects.filter(user=people["member"]).latest("id").grant_id == new.pk


def test_a_second_open_lab_request_is_a_conflict_and_bad_coverage_is_a_clear_400(lab, release):
    lab, people = lab
    assert apply_for_lab(people["owner"], lab, release, all_members=True).status_code == 201
    again = apply_for_lab(people["admin"], lab, release, all_members=True)
    assert again.status_code == 409 and again.json()["code"] == "request_exists"
    other = ReleaseFactory(repo_id="facebook/opt-66b", access="gated")
    for coverage in (
        {},
        {"members": "everyone"},
        {"members": [{"$ne": 1}]},
        {"members": ["0" * 32]},
        {"all_members": "yes"},
        {"all_members": True, "members": [member_id(lab, people["owner"])]},
    ):
        response = apply_for_lab(people["owner"], lab, other, **coverage)
        assert response.status_code == 400, coverage
        assert response.json()["code"] == "invalid"
    response = api(token_secret(people["owner"])).post(
        "/api/v1/access-requests",
        {"repo_id": other.repo_id, "lab": "0" * 32, "all_members": True, **ANSWERS},
        format="json",
    )
    assert response.status_code == 404 and response.json()["code"] == "not_found"


def test_the_owner_keeps_an_individual_request_apart_from_the_lab_request(lab, release, reviewer):
    lab, people = lab
    assert apply_for_lab(people["owner"], lab, release, all_members=True).status_code == 201
    body = {"repo_id": release.repo_id, "accept_license": True, "noncommercial_attested": True, **ANSWERS}
    response = api(token_secret(people["owner"])).post("/api/v1/access-requests", body, format="json")
    assert response.status_code == 201
    assert response.json()["lab"] is None


def test_the_lab_pages_show_members_grants_and_confirm_removal(client, lab, release, reviewer):
    from tests.support.auth import login_recently

    lab, people = lab
    grant = approved_lab_grant(lab, people, release, reviewer)
    login_recently(client, people["member"])
    page = client.get(f"/labs/{lab.public_id}/").content.decode()
    assert "max@gmail.example" in page and "Language Lab" in page and f"/labs/grants/{grant.public_id}/" in page
    assert 'id="lab-invite"' not in page  # members do not invite
    assert client.get(f"/models/{release.repo_id}/apply?lab={lab.public_id}").status_code == 404
    grants = client.get("/grants/").content.decode()
    assert f"/labs/grants/{grant.public_id}/" in grants
    assert client.get(f"/grants/{grant.public_id}/").url == f"/labs/grants/{grant.public_id}/"
    page = client.get(f"/labs/grants/{grant.public_id}/").content.decode()
    assert 'data-code="lab_license_pending"' in page and 'id="license-form"' in page
    response = client.post(
        f"/labs/grants/{grant.public_id}/",
        {"version": "1.0", "accept_license": "on", "noncommercial_attested": "on"},
    )
    assert response.status_code == 302
    assert 'data-code="granted"' in client.get(f"/labs/grants/{grant.public_id}/").content.decode()

    login_recently(client, people["owner"])
    page = client.get(f"/labs/{lab.public_id}/").content.decode()
    assert 'id="lab-invite"' in page
    remove = f"/labs/{lab.public_id}/members/{member_id(lab, people['member'])}/remove"
    confirm = client.get(remove)
    assert confirm.status_code == 200 and 'id="confirm-remove"' in confirm.content.decode()
    assert LabMembership.objects.current().filter(lab=lab, user=people["member"]).exists()  # a GET removes nobody
    assert client.post(remove).status_code == 302
    assert not LabMembership.objects.current().filter(lab=lab, user=people["member"]).exists()

    outsider = UserFactory(email="eve@elsewhere.example")
    login_recently(client, outsider)
    assert client.get(f"/labs/{lab.public_id}/").status_code == 404
    assert client.get(f"/labs/grants/{grant.public_id}/").status_code == 404
    assert client.get("/labs/invitations/not-a-token/").status_code == 404
    assert client.get("/labs/%00%ff/").status_code == 404


def test_a_members_repeat_download_costs_what_an_individual_holders_does(lab, release, reviewer):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    lab, people = lab
    grant = approved_lab_grant(lab, people, release, reviewer)
    member = token_secret(people["member"])
    accept(member, grant)
    holder = UserFactory(email="solo@uni.example")
    grant_for(holder, release, reviewer)
    solo = token_secret(holder)
    counts = {}
    for name, token in (("member", member), ("individual", solo)):
        assert file_status(token, release)[0] == 302  # the first one fills the process's cache
        with CaptureQueriesContext(connection) as queries:
            assert file_status(token, release)[0] == 302
        counts[name] = len(queries)
    assert counts["member"] == counts["individual"], counts


def test_the_queue_marks_lab_requests_and_lists_members_waiting_for_a_place(client, lab, release, reviewer):
    from tests.support.auth import login_recently

    lab, people = lab
    grant = approved_lab_grant(lab, people, release, reviewer, members=[member_id(lab, people["owner"])])
    accept(token_secret(people["member"]), grant)
    other = ReleaseFactory(repo_id="facebook/opt-66b", access="gated")
    assert apply_for_lab(people["owner"], lab, other, all_members=True).status_code == 201
    login_recently(client, reviewer)
    page = client.get("/review/").content.decode()
    assert "Lab: Language Lab" in page
    waiting = page[page.index('id="lab-seats-waiting"') :]
    assert "max@gmail.example" in waiting and f"/review/grants/{grant.public_id}/" in waiting


def test_an_admin_renews_the_lab_grant_from_the_lab_page_and_members_see_its_state(client, lab, release, reviewer):
    from tests.support.auth import login_recently

    lab, people = lab
    grant = approved_lab_grant(lab, people, release, reviewer)
    Grant.objects.filter(pk=grant.pk).update(expires_at=timezone.now() + timedelta(days=3))
    login_recently(client, people["member"])
    assert "/renew" not in client.get(f"/labs/{lab.public_id}/").content.decode()  # members do not renew
    assert client.post(f"/labs/grants/{grant.public_id}/renew").status_code == 302
    assert not lab.access_requests.filter(renewal_of=grant).exists()
    page = client.get(f"/models/{release.repo_id}").content.decode()
    assert 'data-code="lab_license_pending"' in page and f"/labs/grants/{grant.public_id}/" in page
    login_recently(client, people["admin"])
    assert f"/labs/grants/{grant.public_id}/renew" in client.get(f"/labs/{lab.public_id}/").content.decode()
    response = client.post(f"/labs/grants/{grant.public_id}/renew")
    renewal = lab.access_requests.get(renewal_of=grant)
    assert response.url == f"/requests/{renewal.public_id}/" and renewal.status == "pending"
    # The lab holds an active grant: the release page offers no second request for it.
    assert f"?lab={lab.public_id}" not in client.get("/models/facebook/opt-175b").content.decode()


# --- Review rules that hold for labs as for individuals --------------------------------------------------

OPERATOR = services.command_actor("add_reviewer")


def reviewer_actor(user):
    return services.Actor(user=user, credential="session", reauthenticated=True)


def new_license_version(release, mode):
    """A release manager moves the release to version 2.0, holders re-consenting or being reviewed again."""
    manager = UserFactory(email="mia@portal.example")
    services.release_manager_add(actor=OPERATOR, user=manager)
    act = reviewer_actor(manager)
    v2 = services.license_publish(
        actor=act, slug=release.license.slug, version="2.0", title="OPT-175B License", text="Version two."
    )
    services.release_set_license(actor=act, release=release, license=v2, mode=mode)
    release.refresh_from_db()


def download_codes(token, release):
    """What each download channel answers this token: 'ok', or the refusal's code."""
    calls = {
        "api": api(token).get(f"/api/v1/models/{release.repo_id}/files/{SHARD}"),
        "manifest": api(token).get(f"/api/v1/models/{release.repo_id}/manifest?format=json"),
        "hf": api(token).head(f"/{release.repo_id}/resolve/main/{SHARD}"),
    }
    return {
        name: "ok" if r.status_code in (200, 302) else r.get("X-Error-Code") if name == "hf" else r.json()["code"]
        for name, r in calls.items()
    }


def test_in_review_mode_a_seats_reacceptance_waits_for_a_reviewer_on_every_channel(lab, release, reviewer):
    lab, people = lab
    grant = approved_lab_grant(lab, people, release, reviewer)
    owner, member = token_secret(people["owner"]), token_secret(people["member"])
    accept(member, grant)
    new_license_version(release, "review")
    assert file_status(member, release) == (403, "lab_license_pending")
    for token in (owner, member):
        response = accept(token, grant, version="2.0")
        assert response.status_code == 200 and response.json()["seat"] == "requested"
        assert download_codes(token, release) == {
            "api": "lab_seat_pending",
            "manifest": "lab_seat_pending",
            "hf": "GatedRepo",
        }
    # Accepting again asks nothing more: one seat request per member.
    assert accept(member, grant, version="2.0").json()["seat"] == "requested"
    assert LabSeat.objects.filter(grant=grant, status="requested").count() == 2
    seat = LabSeat.objects.get(grant=grant, user=people["member"])
    assert seat.license_id == release.license_id
    response = api(token_secret(reviewer, review=True)).post(
        f"/api/v1/review/lab-seats/{seat.public_id}/approve", {}, format="json"
    )
    assert response.status_code == 200 and response.json()["status"] == "active"
    assert download_codes(member, release) == {"api": "ok", "manifest": "ok", "hf": "ok"}
    assert file_status(owner, release) == (403, "lab_seat_pending")


def test_in_reconsent_mode_a_seat_moves_to_the_new_version_at_once(lab, release, reviewer):
    lab, people = lab
    grant = approved_lab_grant(lab, people, release, reviewer)
    member = token_secret(people["member"])
    accept(member, grant)
    new_license_version(release, "reconsent")
    assert accept(member, grant, version="2.0").json()["seat"] == "active"
    assert file_status(member, release)[0] == 302


def test_a_reviewer_in_the_lab_decides_none_of_its_requests_seats_or_renewals(client, lab, release, reviewer):
    from tests.support.auth import login_recently

    lab, people = lab
    insider = people["admin"]
    services.reviewer_add(actor=OPERATOR, user=insider)
    response = apply_for_lab(people["owner"], lab, release, all_members=True)
    request = lab.access_requests.get(public_id=response.json()["id"])
    # v1 API
    response = api(token_secret(insider, review=True)).post(
        f"/api/v1/review/access-requests/{request.public_id}/approve", {}, format="json"
    )
    assert response.status_code == 403 and response.json()["code"] == "own_lab"
    # web
    login_recently(client, insider)
    client.post(f"/review/requests/{request.public_id}/", {"action": "approve", "reason": ""})
    # bulk
    result = services.requests_decide_many(
        actor=reviewer_actor(insider), public_ids=[request.public_id], action="approve"
    )
    assert result["done"] == [] and "Language Lab" in result["refused"][request.public_id]
    request.refresh_from_db()
    assert request.status == "pending"
    services.request_approve(actor=reviewer_actor(reviewer), access_request=request)
    grant = Grant.objects.get(request=request)

    # A reviewer who joins afterwards asks for a place; no reviewer in the lab decides it.
    rex = UserFactory(email="rex@uni.example")
    services.reviewer_add(actor=OPERATOR, user=rex)
    _invitation, secret = services.lab_invite(actor=actor(people["owner"]), lab=lab, email=rex.email)
    services.lab_invitation_accept(actor=actor(rex), token=secret)
    assert accept(token_secret(rex), grant).json()["seat"] == "requested"
    seat = LabSeat.objects.get(grant=grant, user=rex)
    for decider in (rex, insider):
        response = api(token_secret(decider, review=True)).post(
            f"/api/v1/review/lab-seats/{seat.public_id}/approve", {}, format="json"
        )
        assert response.status_code == 403 and response.json()["code"] in ("own_request", "own_lab")
    assert file_status(token_secret(rex), release) == (403, "lab_seat_pending")
    services.lab_seat_decide(actor=reviewer_actor(reviewer), seat=seat, approve=True)
    assert file_status(token_secret(rex), release)[0] == 302

    # The lab's renewal is the lab's request too.
    renewal = services.request_renew(actor=actor(people["owner"]), grant=grant)
    with pytest.raises(services.Forbidden) as refused:
        services.request_approve(actor=reviewer_actor(insider), access_request=renewal)
    assert refused.value.code == "own_lab"


def test_an_old_individual_grant_does_not_hide_a_current_lab_seat(lab, release, reviewer):
    lab, people = lab
    own = grant_for(people["member"], release, reviewer)
    grant = approved_lab_grant(lab, people, release, reviewer)
    member = token_secret(people["member"])
    new_license_version(release, "reconsent")
    assert file_status(member, release) == (403, "license_update")
    assert accept(member, grant, version="2.0").json()["seat"] == "active"
    assert download_codes(member, release) == {"api": "ok", "manifest": "ok", "hf": "ok"}
    assert DownloadEvent.objects.filter(user=people["member"]).latest("id").grant_id == grant.pk
    own.refresh_from_db()
    assert own.license_id != release.license_id


def test_applying_asks_the_download_gate_whether_the_applicant_has_access(lab, release, reviewer):
    lab, people = lab
    grant = approved_lab_grant(lab, people, release, reviewer)
    member = token_secret(people["member"])
    body = {"repo_id": release.repo_id, "accept_license": True, "noncommercial_attested": True, **ANSWERS}
    accept(member, grant)
    response = api(member).post("/api/v1/access-requests", body, format="json")
    assert response.status_code == 400 and response.json()["code"] == "already_granted"
    # A holder on an older license version accepts the new one instead of applying again.
    holder = UserFactory(email="hal@uni.example")
    grant_for(holder, release, reviewer)
    new_license_version(release, "reconsent")
    response = api(token_secret(holder)).post("/api/v1/access-requests", body, format="json")
    assert response.status_code == 400 and response.json()["code"] == "license_update"
    assert "/accept" in response.json()["detail"] or "2.0" in response.json()["detail"]


def test_lab_pages_and_emails_agree_with_each_other(client, lab, release, reviewer, django_capture_on_commit_callbacks):
    lab, people = lab
    owner, member = people["owner"], people["member"]
    response = apply_for_lab(owner, lab, release, members=[member_id(lab, member)])
    access_request = lab.access_requests.get(public_id=response.json()["id"])
    # The owner's request page and My requests say it is the lab's and whom it covers.
    client.force_login(owner)
    detail = client.get(f"/requests/{access_request.public_id}/").content.decode()
    assert "Lab request for Language Lab, covering 1 member: max@gmail.example" in detail
    assert "Lab request for Language Lab, covering 1 member" in client.get("/requests/").content.decode()
    page = client.get(f"/models/{release.repo_id}").content.decode()
    assert "Request access for Language Lab" in page
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.request_approve(
            actor=services.Actor(user=reviewer, credential="session", reauthenticated=True),
            access_request=access_request,
        )
    grant = Grant.objects.get(request=access_request)
    # One approval email to the owner, linking the lab grant's page; the member hears from the lab.
    to_owner = [m for m in mail.outbox if m.to == [owner.email]]
    assert len(to_owner) == 1, [m.subject for m in to_owner]
    assert f"/labs/grants/{grant.public_id}/" in to_owner[0].body
    assert [m.to for m in mail.outbox if "has access to" in m.subject] == [[member.email]]
    # Once the lab holds an active grant, the release page no longer offers to request access for it.
    assert "Request access for Language Lab" not in client.get(f"/models/{release.repo_id}").content.decode()
    # The member's page says to accept the license below, not an API message with a URL of its own.
    client.force_login(member)
    mine = client.get(f"/labs/grants/{grant.public_id}/").content.decode()
    shown = re.search(r'<p class="alert alert-info" id="access-detail"[^>]*>(.*?)</p>', mine, re.S).group(1)
    assert "Accept the license below" in shown and "/labs/grants/" not in shown
    # Once accepted, a new token's page gives the member the ready command for the release.
    assert accept(token_secret(member), grant).json()["seat"] == "active"
    client.post("/tokens/", {"name": "laptop"})
    tokens_page = client.get("/tokens/").content.decode()
    assert 'id="token-commands"' in tokens_page and "download.py facebook/opt-175b" in tokens_page
