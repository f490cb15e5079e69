"""Institutions: only administrators create, change and confirm them (through the admin site or a command), what
identifies one identifies no other, and only confirmed ones verify anything."""

from __future__ import annotations

import pytest

from access import services
from access.identities import verified_affiliations, verified_facts
from access.models import AuditEvent, Institution, VerifiedIdentity
from tests.factories import UserFactory
from tests.support.auth import login_recently

ISSUER = "https://idp.uni.example"


def admin_actor(user, **kw):
    return services.Actor(user=user, credential=f"admin:{user.email}", reauthenticated=True, **kw)


@pytest.fixture
def superuser(db):
    return UserFactory(email="root@portal.example", is_staff=True, is_superuser=True)


def create(actor, **kw):
    fields = {"ror_id": "0testun01", "name": "Test University", "email_domains": ["uni.example"], "issuers": [ISSUER]}
    return services.institution_create(actor=actor, **{**fields, **kw})


@pytest.mark.parametrize(
    "who",
    ["researcher", "reviewer", "staff", "superuser_stale_password", "superuser_token", "task", "rule", "anonymous"],
)
def test_institution_services_refuse_anyone_but_administrators(db, who, reviewer):
    researcher = UserFactory()
    root = UserFactory(is_staff=True, is_superuser=True)
    actors = {
        "researcher": services.Actor(user=researcher, credential="session", reauthenticated=True),
        "reviewer": services.Actor(user=reviewer, credential="session", reauthenticated=True),
        "staff": admin_actor(UserFactory(is_staff=True)),
        "superuser_stale_password": services.Actor(user=root, credential="admin:root", reauthenticated=False),
        "superuser_token": services.Actor(user=root, credential="token:1", reauthenticated=True),
        "task": services.task_actor("sweep"),
        "rule": services.rule_actor("auto"),
        "anonymous": services.Actor(),
    }
    institution = create(services.command_actor("test"))
    actor = actors[who]
    with pytest.raises(services.Forbidden):
        create(actor, ror_id="0otheru02")
    with pytest.raises(services.Forbidden):
        services.institution_update(actor=actor, institution=institution, email_domains=["evil.example"])
    with pytest.raises(services.Forbidden):
        services.institution_confirm(actor=actor, institution=institution)
    institution.refresh_from_db()
    assert not institution.is_confirmed and institution.identifiers_of("email_domain") == ["uni.example"]


def test_an_administrator_creates_changes_and_confirms_an_institution(superuser):
    actor = admin_actor(superuser)
    institution = create(actor, ror_id="https://ror.org/0TESTUN01")
    assert institution.ror_id == "0testun01" and not institution.is_confirmed
    services.institution_update(actor=actor, institution=institution, email_domains=["uni.example", "cs.uni.example"])
    services.institution_confirm(actor=actor, institution=institution)
    institution.refresh_from_db()
    assert institution.confirmed_by == superuser
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert actions == ["institution.created", "institution.updated", "institution.confirmed"]
    changes = AuditEvent.objects.get(action="institution.updated").data["changes"]
    assert changes == {"email_domain": {"added": ["cs.uni.example"], "removed": []}}


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("email_domains", ["gmail.com"], "free_email_domain"),
        ("email_domains", ["ac.uk"], "public_suffix_domain"),
        ("email_domains", ["not a domain"], "invalid"),
        ("issuers", ["http://idp.uni.example"], "invalid"),
        ("idp_entity_ids", ["just words"], "invalid"),
        ("ror_id", "12345", "invalid"),
    ],
)
def test_what_cannot_identify_an_institution_is_refused(superuser, field, value, code):
    with pytest.raises(services.ServiceError) as refused:
        create(admin_actor(superuser), **{field: value})
    assert refused.value.code == code
    assert not Institution.objects.exists()


def test_a_domain_or_issuer_identifies_one_institution_only(superuser):
    actor = admin_actor(superuser)
    create(actor)
    for taken in ({"email_domains": ["uni.example"]}, {"issuers": [ISSUER]}):
        with pytest.raises(services.ServiceError) as refused:
            create(actor, ror_id="0otheru02", name="Other", **{"email_domains": [], "issuers": [], **taken})
        assert refused.value.code == "identifier_taken"
    assert Institution.objects.count() == 1


def test_only_a_confirmed_institution_verifies_an_address(superuser):
    actor = admin_actor(superuser)
    institution = create(actor)
    ada = UserFactory(email="ada@cs.uni.example")
    assert verified_facts(ada).affiliations == []
    services.institution_confirm(actor=actor, institution=institution)
    (fact,) = verified_affiliations(ada, institution)
    assert (fact.method, fact.value, fact.provider, fact.last_seen) == ("email", "ada@cs.uni.example", "", None)
    services.institution_update(actor=actor, institution=institution, email_domains=["other-uni.example"])
    assert verified_affiliations(ada) == []


def test_a_changed_issuer_points_identities_at_the_institution(superuser):
    from allauth.socialaccount.models import SocialAccount

    ada = UserFactory(email="ada@lab.example")
    account = SocialAccount.objects.create(user=ada, provider="uni", uid="s1")
    identity = VerifiedIdentity.objects.create(
        user=ada,
        account=account,
        provider="uni",
        issuer="https://login.uni.example",
        subject="s1",
        affiliations=["faculty@uni.example"],
    )
    actor = admin_actor(superuser)
    institution = create(actor)
    services.institution_confirm(actor=actor, institution=institution)
    assert verified_affiliations(ada) == []
    services.institution_update(actor=actor, institution=institution, issuers=[ISSUER, "https://login.uni.example"])
    identity.refresh_from_db()
    assert identity.institution == institution
    assert [f.value for f in verified_affiliations(ada)] == ["faculty@uni.example"]
    services.institution_update(actor=actor, institution=institution, issuers=[ISSUER])
    identity.refresh_from_db()
    assert identity.institution is None


def test_the_admin_site_creates_and_confirms_through_the_services(client, superuser):
    login_recently(client, superuser)
    response = client.post(
        "/admin/access/institution/add/",
        {
            "ror_id": "0testun01",
            "name": "Test University",
            "email_domains": "uni.example",
            "issuers": ISSUER,
            "idp_entity_ids": "",
            "confirmed": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    institution = Institution.objects.get()
    assert institution.is_confirmed and institution.identifiers_of("oidc_issuer") == [ISSUER]
    assert set(AuditEvent.objects.values_list("credential", flat=True)) == {f"admin:{superuser.email}"}
    response = client.post(
        f"/admin/access/institution/{institution.pk}/change/",
        {
            "name": "Test University",
            "email_domains": "gmail.com",
            "issuers": ISSUER,
            "idp_entity_ids": "",
            "confirmed": "on",
        },
        follow=True,
    )
    assert "free email provider" in response.content.decode()
    assert institution.identifiers_of("email_domain") == ["uni.example"]


def test_the_admin_site_shows_verified_identities_read_only(client, superuser):
    login_recently(client, superuser)
    assert client.get("/admin/access/verifiedidentity/add/").status_code == 403
    assert client.get("/admin/socialaccount/socialapp/").status_code == 404


def test_an_operator_adds_and_confirms_an_institution_with_a_command(db):
    from io import StringIO

    from django.core.management import call_command
    from django.core.management.base import CommandError

    out = StringIO()
    call_command(
        "institution",
        "https://ror.org/0testun01",
        "--name",
        "Test University",
        "--domain",
        "uni.example",
        "--idp",
        "https://idp.uni.example/idp/shibboleth",
        "--confirm",
        stdout=out,
    )
    institution = Institution.objects.get()
    assert institution.is_confirmed and "confirmed" in out.getvalue()
    assert institution.identifiers_of("idp_entity_id") == ["https://idp.uni.example/idp/shibboleth"]
    call_command("institution", "0testun01", "--domain", "uni.example", "--domain", "cs.uni.example", stdout=out)
    assert institution.identifiers_of("email_domain") == ["cs.uni.example", "uni.example"]
    assert institution.identifiers_of("idp_entity_id") == ["https://idp.uni.example/idp/shibboleth"]  # not given: kept
    with pytest.raises(CommandError, match="free email provider"):
        call_command("institution", "0testun01", "--domain", "gmail.com", stdout=out)
    assert {e.credential for e in AuditEvent.objects.all()} == {"command:institution"}
