"""Sign-in through OpenID Connect providers, driven through the portal's own views (Django's test client) against
an OpenID Provider under the tests' control (tests/support/oidc_provider.py, a real HTTP server): the portal
redirects to the provider, the provider back with a code, and the portal's callback fetches, verifies and uses the
tokens. Every hostile answer is refused with no session, no account, no link and no verified identity."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from allauth.account.models import EmailAddress
from allauth.socialaccount.models import SocialAccount

from access import services
from access.identities import verified_affiliations, verified_facts
from access.models import AuditEvent, User, VerifiedIdentity
from tests.factories import UserFactory
from tests.support.oidc_provider import PROVIDER, SCENARIOS, configure, person, sign_in

ADA = "ada.lovelace@uni.example"


def signed_in_as(client):
    return client.session.get("_auth_user_id")


def nothing_created(client, users_before: int):
    assert signed_in_as(client) is None
    assert User.objects.count() == users_before
    assert not SocialAccount.objects.exists()
    assert not VerifiedIdentity.objects.exists()


# --- the happy path ----------------------------------------------------------------------------------------


def test_a_first_sign_in_creates_an_account_with_a_verified_email_and_affiliation(client, idp, university):
    response = sign_in(client, idp)
    assert response.status_code == 302
    user = User.objects.get(email=ADA)
    assert signed_in_as(client) == str(user.pk)
    assert EmailAddress.objects.get(user=user, email=ADA).verified
    assert (user.first_name, user.last_name) == ("Ada", "Lovelace")
    facts = verified_affiliations(user, university)
    assert {(f.kind, f.value, f.method, f.provider) for f in facts} >= {
        ("faculty", "faculty@uni.example", "affiliation", PROVIDER),
        ("member", "member@uni.example", "affiliation", PROVIDER),
    }
    identity = VerifiedIdentity.objects.get(user=user)
    assert identity.institution == university and identity.issuer == idp.issuer
    linked = AuditEvent.objects.get(action="identity.linked")
    assert linked.data["how"] == "sign_up" and linked.actor == user


def test_every_authorization_request_sends_pkce_s256_and_a_fresh_nonce(client, idp, university):
    sign_in(client, idp)
    client.logout()
    sign_in(client, idp)
    first, second = idp.authorizations
    for sent in (first, second):
        assert sent["code_challenge_method"] == "S256" and len(sent["code_challenge"]) >= 43
        assert set(sent["scope"].split()) == {"openid", "profile", "email", "eduperson"}
        assert len(sent["nonce"]) >= 32
    assert first["nonce"] != second["nonce"] and first["state"] != second["state"]
    assert [r["pkce_ok"] for r in idp.token_requests] == [True, True]


def test_request_parameters_add_no_scope_and_no_authorization_parameter(client, idp, university):
    started = client.post(
        f"/accounts/oidc/{PROVIDER}/login/?scope=offline_access&auth_params=redirect_uri%3Dhttps%3A%2F%2Fevil.example",
        {"process": "login"},
    )
    sent = parse_qs(urlsplit(started["Location"]).query)
    assert "offline_access" not in sent["scope"][0]
    assert sent["redirect_uri"] == [f"http://testserver/accounts/oidc/{PROVIDER}/login/callback/"]


# --- hostile providers ---------------------------------------------------------------------------------------


WHY = {
    "forged": "Signature verification failed",
    "unsigned": "signed with 'none'",
    "hs256": "signed with 'HS256'",
    "expired": "Signature has expired",
    "wrong_issuer": "Invalid issuer",
    "wrong_audience": "Audience doesn't match",
    "wrong_nonce": "does not carry the nonce",
    "no_nonce": "does not carry the nonce",
    "userinfo_sub": "userinfo response is about another subject",
}


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "good"])
def test_a_hostile_id_token_is_refused_and_creates_nothing(client, settings, idp, university, scenario, caplog):
    if scenario == "userinfo_sub":
        configure(settings, idp, claims="name=userinfo:name")
    users = User.objects.count()
    idp.scenario = scenario
    response = sign_in(client, idp)
    assert response.status_code == 401
    assert "Sign-in failed" in response.content.decode()
    assert WHY[scenario] in caplog.text
    nothing_created(client, users)
    if scenario == "userinfo_sub":
        assert idp.userinfo_requests == 1


def test_userinfo_is_not_asked_when_the_claim_map_takes_nothing_from_it(client, idp, university):
    idp.scenario = "userinfo_sub"  # it would be refused if it were used
    assert sign_in(client, idp).status_code == 302
    assert idp.userinfo_requests == 0 and signed_in_as(client)


def test_a_claim_the_map_takes_from_userinfo_comes_from_there_only(client, settings, idp, university):
    configure(settings, idp, claims="affiliation=userinfo:eduperson_scoped_affiliation")
    idp.person = person(ADA, affiliations=["faculty@uni.example"])
    idp.userinfo = lambda: {**idp.person, "eduperson_scoped_affiliation": ["student@uni.example"]}
    sign_in(client, idp)
    identity = VerifiedIdentity.objects.get()
    assert identity.affiliations == ["student@uni.example"]


def test_a_replayed_state_is_refused(client, idp, university):
    started = client.post(f"/accounts/oidc/{PROVIDER}/login/", {"process": "login"})
    back = requests.get(started["Location"], allow_redirects=False, timeout=5).headers["Location"]
    callback = urlsplit(back)
    url = f"{callback.path}?{callback.query}"
    assert client.get(url).status_code == 302  # the real sign-in
    assert client.get(url).status_code == 401  # the same callback again: its state was used up
    other = client.__class__()
    users = User.objects.count()
    response = other.get(url)  # someone else's browser with the stolen callback URL
    assert response.status_code == 401 and signed_in_as(other) is None
    assert User.objects.count() == users and SocialAccount.objects.count() == 1


def test_a_callback_without_state_is_refused(client, idp, university):
    started = client.post(f"/accounts/oidc/{PROVIDER}/login/", {"process": "login"})
    back = urlsplit(requests.get(started["Location"], allow_redirects=False, timeout=5).headers["Location"])
    code = parse_qs(back.query)["code"][0]
    users = User.objects.count()
    response = client.get(f"{back.path}?code={code}")
    assert response.status_code == 401
    nothing_created(client, users)
    assert idp.token_requests == []  # the code was never redeemed


def test_an_email_of_an_existing_account_is_refused_without_a_session(client, idp, university):
    UserFactory(email=ADA, verified=False)  # a password account whose address is not verified here
    users = User.objects.count()
    response = sign_in(client, idp)
    assert response.status_code == 409
    text = response.content.decode()
    assert "An account with this address exists: sign in with your password, then link Test University" in text
    nothing_created(client, users)


def test_an_affiliation_in_another_institutions_scope_is_not_verified(client, idp, university):
    actor = services.command_actor("test")
    other = services.institution_create(
        actor=actor, ror_id="0otheru02", name="Other University", email_domains=["other.example"]
    )
    services.institution_confirm(actor=actor, institution=other)
    idp.person = person(ADA, affiliations=["faculty@other.example", "staff@uni.example"])
    assert sign_in(client, idp).status_code == 302
    user = User.objects.get(email=ADA)
    assert verified_affiliations(user, other) == []
    values = {f.value for f in verified_facts(user).affiliations}
    assert values == {"staff@uni.example", ADA}


# --- linking -------------------------------------------------------------------------------------------------


def test_a_second_sign_in_refreshes_last_seen_and_the_facts(client, idp, university):
    sign_in(client, idp)
    user = User.objects.get(email=ADA)
    first = VerifiedIdentity.objects.get(user=user)
    client.logout()
    idp.person = person(ADA, affiliations=["member@uni.example"])  # no longer faculty
    assert sign_in(client, idp).status_code == 302
    assert signed_in_as(client) == str(user.pk)
    refreshed = VerifiedIdentity.objects.get(user=user)
    assert refreshed.pk == first.pk and refreshed.last_seen_at > first.last_seen_at
    assert refreshed.first_seen_at == first.first_seen_at
    kinds = {f.kind for f in verified_affiliations(user, university)}
    assert "faculty" not in kinds and "member" in kinds
    event = AuditEvent.objects.get(action="identity.refreshed")
    assert event.data["changed"]["affiliations"] == {"added": [], "removed": ["faculty@uni.example"]}
    assert User.objects.count() == 1


def test_an_identity_is_linked_from_the_account_page(client, idp, university):
    bob = UserFactory(email="bob@lab.example")
    client.force_login(bob)
    page = client.get("/account/identities/")
    assert "Link Test University" in page.content.decode()
    response = sign_in(client, idp, process="connect", next_url="/account/identities/")
    assert response.status_code == 302 and response["Location"] == "/account/identities/"
    assert signed_in_as(client) == str(bob.pk)
    identity = VerifiedIdentity.objects.get()
    assert identity.user == bob and SocialAccount.objects.get().user == bob
    assert AuditEvent.objects.get(action="identity.linked").data["how"] == "account_page"
    page = client.get("/account/identities/").content.decode()
    assert "faculty@uni.example" in page and "Unlink" in page
    # Bob can now sign in with it.
    client.logout()
    sign_in(client, idp)
    assert signed_in_as(client) == str(bob.pk)
    assert User.objects.filter(email=ADA).count() == 0


def test_linking_from_the_account_page_needs_a_signed_in_account(client, idp, university):
    users = User.objects.count()
    response = sign_in(client, idp, process="connect")
    assert response.status_code == 403
    nothing_created(client, users)


def test_nobody_attaches_an_identity_linked_to_someone_else(client, idp, university):
    sign_in(client, idp)  # Ada's account, from her university's sign-in
    ada = User.objects.get(email=ADA)
    client.logout()
    mallory = UserFactory(email="mallory@lab.example")
    client.force_login(mallory)
    response = sign_in(client, idp, process="connect")
    assert response.status_code == 302
    assert "linked to another account" in client.get("/account/identities/").content.decode()
    assert SocialAccount.objects.get().user == ada and VerifiedIdentity.objects.get().user == ada
    assert signed_in_as(client) == str(mallory.pk)


def test_a_verified_address_on_a_confirmed_domain_links_automatically(client, idp, university):
    ada = UserFactory(email=ADA)  # a password account, address verified here
    response = sign_in(client, idp)
    assert response.status_code == 302
    assert signed_in_as(client) == str(ada.pk)
    assert SocialAccount.objects.get().user == ada
    assert AuditEvent.objects.get(action="identity.linked").data["how"] == "verified_email_domain"
    assert User.objects.count() == 1


@pytest.mark.parametrize("power", ["reviewer", "release_manager", "staff", "superuser"])
def test_no_account_with_powers_is_linked_automatically(client, idp, university, power):
    ada = UserFactory(email=ADA, is_staff=power == "staff", is_superuser=power == "superuser")
    actor = services.command_actor("add_reviewer")
    if power == "reviewer":
        services.reviewer_add(actor=actor, user=ada)
    elif power == "release_manager":
        services.release_manager_add(actor=actor, user=ada)
    response = sign_in(client, idp)
    assert response.status_code == 409
    nothing_created(client, 1)


def test_an_unverified_address_from_the_provider_links_nothing(client, idp, university):
    UserFactory(email=ADA)
    idp.person = person(ADA, email_verified=False)
    assert sign_in(client, idp).status_code == 409
    nothing_created(client, 1)


def test_an_address_on_an_unconfirmed_institution_links_nothing(client, idp, university):
    services.institution_confirm(actor=services.command_actor("test"), institution=university, confirmed=False)
    UserFactory(email=ADA)
    assert sign_in(client, idp).status_code == 409
    nothing_created(client, 1)


def test_an_account_already_holding_an_identity_from_the_issuer_is_not_linked_again(client, idp, university):
    sign_in(client, idp)  # Ada's account and identity
    client.logout()
    idp.person = person(ADA, sub="a-reassigned-address")  # the university gave her address to someone else
    assert sign_in(client, idp).status_code == 409
    assert signed_in_as(client) is None and SocialAccount.objects.count() == 1


def test_an_unverified_address_creates_an_account_whose_address_is_not_verified(client, idp, university, mailoutbox):
    idp.person = person(ADA, email_verified=False)
    assert sign_in(client, idp).status_code == 302
    user = User.objects.get(email=ADA)
    assert not EmailAddress.objects.get(user=user).verified
    assert not services.email_verified(user)
    assert [f.method for f in verified_facts(user).affiliations] == ["affiliation", "affiliation"]
    assert len(mailoutbox) == 1  # the confirmation link


def test_a_disabled_account_does_not_sign_in_through_its_identity(client, idp, university):
    sign_in(client, idp)
    User.objects.filter(email=ADA).update(is_active=False)
    client.logout()
    response = sign_in(client, idp)
    assert response.status_code == 403 and signed_in_as(client) is None


# --- unlinking ---------------------------------------------------------------------------------------------


def test_the_owner_unlinks_an_identity(client, idp, university):
    bob = UserFactory(email="bob@lab.example")
    client.force_login(bob)
    sign_in(client, idp, process="connect")
    identity = VerifiedIdentity.objects.get()
    url = f"/account/identities/{identity.public_id}/unlink"
    assert "Unlink your Test University identity" in client.get(url).content.decode()
    assert client.post(url).status_code == 302
    assert not VerifiedIdentity.objects.exists() and not SocialAccount.objects.exists()
    assert AuditEvent.objects.get(action="identity.unlinked").data["subject"] == identity.subject
    assert verified_affiliations(bob) == []  # bob@lab.example is on no confirmed domain


def test_only_the_owner_unlinks_an_identity(client, idp, university):
    sign_in(client, idp)
    identity = VerifiedIdentity.objects.get()
    client.logout()
    mallory = UserFactory(email="mallory@lab.example")
    client.force_login(mallory)
    url = f"/account/identities/{identity.public_id}/unlink"
    assert client.get(url).status_code == 404 and client.post(url).status_code == 404
    with pytest.raises(services.Forbidden):
        services.identity_unlink(
            actor=services.Actor(user=mallory, credential="session", reauthenticated=True), identity=identity
        )
    admin = UserFactory(is_staff=True, is_superuser=True)
    with pytest.raises(services.Forbidden):
        services.identity_unlink(
            actor=services.Actor(user=admin, credential="admin:x", reauthenticated=True), identity=identity
        )
    assert VerifiedIdentity.objects.filter(pk=identity.pk).exists()


def test_the_last_way_into_an_account_without_a_password_is_not_unlinked(client, idp, university):
    sign_in(client, idp)  # an account made by the provider has no password
    identity = VerifiedIdentity.objects.get()
    response = client.post(f"/account/identities/{identity.public_id}/unlink", follow=True)
    assert "This is the only way into your account" in response.content.decode()
    assert VerifiedIdentity.objects.filter(pk=identity.pk).exists()


def test_a_sign_in_through_a_provider_is_not_a_recent_password_for_powers(client, idp, university, reviewer):
    """Reviewer powers (and the admin site) need a password entered within REAUTHENTICATION_TIMEOUT: a reviewer
    who linked an identity and signs in with it enters the password again before deciding."""
    from tests.factories import AccessRequestFactory, LicenseFactory, ReleaseFactory

    client.force_login(reviewer)
    sign_in(client, idp, process="connect")  # the reviewer links their university's sign-in
    client.logout()
    assert sign_in(client, idp).status_code == 302
    assert signed_in_as(client) == str(reviewer.pk)
    request = AccessRequestFactory(release=ReleaseFactory(access="gated", license=LicenseFactory()))
    response = client.post(f"/review/requests/{request.public_id}/", {"action": "approve", "reason": ""})
    assert response.status_code == 302 and "/accounts/reauthenticate/" in response["Location"]
    request.refresh_from_db()
    assert request.status == "pending"


def test_an_identity_recorded_for_another_account_is_refused_without_a_session(client, idp, university):
    """The provider was renamed (its id changed, its issuer did not): the old link's identity is Bob's, so the
    subject's new link to Ada may not take it over."""
    ada, bob = UserFactory(email="ada@lab.example"), UserFactory(email="bob@lab.example")
    sub = idp.person["sub"]
    SocialAccount.objects.create(user=ada, provider=PROVIDER, uid=sub)
    old = SocialAccount.objects.create(user=bob, provider="old-name", uid=sub)
    VerifiedIdentity.objects.create(user=bob, account=old, provider="old-name", issuer=idp.issuer, subject=sub)
    response = sign_in(client, idp)
    assert response.status_code == 403 and "linked to another account" in response.content.decode()
    assert signed_in_as(client) is None
    assert VerifiedIdentity.objects.get().user == bob
