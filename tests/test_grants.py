"""Tokens, grants and the gated download decision, through the API as scripts use it."""

import hashlib
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone
from rest_framework.test import APIClient

from access import services
from access.models import ApiToken, AuditEvent, DownloadEvent, Grant, UrlBatch
from tests.factories import AccessRequestFactory, ReleaseFactory, UserFactory, add_file, grant_for

pytestmark = pytest.mark.django_db

SHARD = "checkpoint_last-model_part-0-shard0.pt"
FILE_URL = f"/api/v1/models/facebook/opt-175b/files/{SHARD}"
MANIFEST_URL = "/api/v1/models/facebook/opt-175b/manifest"


@pytest.fixture
def release(local_storage):
    release = ReleaseFactory(repo_id="facebook/opt-175b", access="gated")
    add_file(release, SHARD, b"shard-bytes")
    add_file(release, "checkpoint_last-model_part-0-shard1.pt", b"more")
    return release


def token_for(user, **kwargs):
    return services.token_create(
        actor=services.Actor(user=user, credential="session", reauthenticated=True), name="script", **kwargs
    )


def bearer(secret):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_only_the_sha256_of_a_token_is_stored(alice):
    token, secret = token_for(alice)
    assert secret.startswith("mp_") and len(secret) > 40
    stored = ApiToken.objects.get(pk=token.pk)
    assert stored.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(ApiToken.objects.filter(pk=token.pk).values().first())
    assert stored.prefix == secret[:10]


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda u: "mp_" + "x" * 43, "invalid_token"),
        (lambda u: "not-a-token", "invalid_token"),
        (
            lambda u: (
                services.token_revoke(
                    actor=services.Actor(user=u, credential="session", reauthenticated=True), token=token_for(u)[0]
                )
                and None
            ),
            None,
        ),
    ],
)
def test_bad_tokens_get_401_with_a_code(alice, release, make, code):
    secret = make(alice)
    if secret is None:
        token, secret = token_for(alice)
        services.token_revoke(actor=services.Actor(user=alice, credential="session", reauthenticated=True), token=token)
        code = "token_revoked"
    response = bearer(secret).get(MANIFEST_URL)
    assert response.status_code == 401
    assert response.json()["code"] == code


def test_an_expired_token_gets_401(alice, release):
    token, secret = token_for(alice, expires_at=timezone.now() + timedelta(days=1))
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = bearer(secret).get(MANIFEST_URL)
    assert (response.status_code, response.json()["code"]) == (401, "token_expired")


def test_a_malformed_authorization_header_is_401(release):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer a b")
    assert client.get(MANIFEST_URL).json()["code"] == "invalid_token"


def test_an_open_release_refuses_a_wrong_token_all_the_same(local_storage):
    """An open release needs no token, yet one that is sent is checked: a script whose token broke (or the guide's
    placeholder, pasted as it stood) learns it instead of carrying on anonymously. So the portal's commands for an
    open release send none (access/commands.py)."""
    release = ReleaseFactory(repo_id="facebook/opt-125m", access="open")
    add_file(release, "config.json", b"{}\n")
    for url in ("/api/v1/models/facebook/opt-125m/files/config.json", "/facebook/opt-125m/resolve/main/config.json"):
        assert APIClient().get(url).status_code == 302
        for secret in ("mp_" + "x" * 43, "<paste your token>"):
            response = bearer(secret).get(url)
            assert response.status_code == 401, (url, secret)
            assert response.json()["code"] == "invalid_token"


def test_a_token_in_the_query_string_is_ignored(alice, release, reviewer):
    grant_for(alice, release, reviewer)
    _, secret = token_for(alice)
    response = APIClient().get(f"{MANIFEST_URL}?token={secret}")
    assert (response.status_code, response.json()["code"]) == (401, "not_authenticated")


def state_user(state, release, reviewer):
    """A user in one of the states the gated decision distinguishes."""
    user = UserFactory()
    if state == "no_request":
        return user
    if state in ("pending", "needs_info", "rejected"):
        AccessRequestFactory(applicant=user, release=release, status=state, decided_at=timezone.now())
        return user
    grant = grant_for(user, release, reviewer)
    if state == "revoked":
        services.grant_revoke(
            actor=services.Actor(user=reviewer, credential="session", reauthenticated=True),
            grant=grant,
            reason="Policy breach.",
        )
    elif state == "expired":
        Grant.objects.filter(pk=grant.pk).update(
            issued_at=timezone.now() - timedelta(days=400), expires_at=timezone.now() - timedelta(days=1)
        )
    return user


MATRIX = [
    ("no_request", 403, "gated"),
    ("pending", 403, "pending"),
    ("needs_info", 403, "pending"),
    ("rejected", 403, "rejected"),
    ("approved", None, None),
    ("revoked", 403, "revoked"),
    ("expired", 403, "expired"),
]


@pytest.mark.parametrize("url", [FILE_URL, MANIFEST_URL, MANIFEST_URL + "?format=aria2"])
@pytest.mark.parametrize("credential", ["token", "session"])
@pytest.mark.parametrize(("state", "status", "code"), MATRIX)
def test_the_gated_decision_matrix(release, reviewer, url, credential, state, status, code):
    user = state_user(state, release, reviewer)
    if credential == "token":
        client = bearer(token_for(user)[1])
    else:
        client = APIClient()
        client.force_login(user)
    response = client.get(url)
    if status is None:
        assert response.status_code == (302 if url == FILE_URL else 200)
        assert DownloadEvent.objects.filter(user=user, grant__isnull=False).count() == 1
    else:
        assert response.status_code == status
        assert response.json()["code"] == code
        assert response.json()["detail"]
        assert not DownloadEvent.objects.filter(user=user).exists()


@pytest.mark.parametrize("url", [FILE_URL, MANIFEST_URL])
def test_anonymous_callers_are_told_to_authenticate(release, url):
    response = APIClient().get(url)
    assert (response.status_code, response.json()["code"]) == (401, "not_authenticated")


def test_another_users_grant_does_not_help(alice, bob, release, reviewer):
    grant_for(alice, release, reviewer)
    response = bearer(token_for(bob)[1]).get(FILE_URL)
    assert (response.status_code, response.json()["code"]) == (403, "gated")


def test_revocation_takes_effect_at_once(alice, release, reviewer):
    grant = grant_for(alice, release, reviewer)
    client = bearer(token_for(alice)[1])
    assert client.get(FILE_URL).status_code == 302
    services.grant_revoke(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True),
        grant=grant,
        reason="Shared the weights.",
    )
    response = client.get(FILE_URL)
    assert (response.status_code, response.json()["code"]) == (403, "revoked")
    assert "Shared the weights." in response.json()["detail"]
    with pytest.raises(services.InvalidTransition):
        services.grant_revoke(
            actor=services.Actor(user=reviewer, credential="session", reauthenticated=True), grant=grant, reason="again"
        )


def test_the_manifest_signs_fresh_urls_and_records_the_token(alice, release, reviewer):
    grant_for(alice, release, reviewer)
    token, secret = token_for(alice)
    files = bearer(secret).get(MANIFEST_URL).json()["files"]
    assert [f["path"] for f in files] == [SHARD, "checkpoint_last-model_part-0-shard1.pt"]
    event = DownloadEvent.objects.get(via="manifest")
    assert event.token == token and event.user == alice and event.ip == "127.0.0.1"


def test_the_grant_gets_a_batch_of_signed_urls_for_every_file(alice, release, reviewer):
    grant = grant_for(alice, release, reviewer)
    batch = grant.batches.get(status="ready")
    assert [u["path"] for u in batch.urls] == [SHARD, "checkpoint_last-model_part-0-shard1.pt"]
    assert all("/storage/" in u["url"] for u in batch.urls)


def test_refreshing_links_issues_a_new_batch(alice, release, reviewer, django_capture_on_commit_callbacks):
    grant = grant_for(alice, release, reviewer)
    with django_capture_on_commit_callbacks(execute=True):
        batch = services.grant_refresh_links(
            actor=services.Actor(user=alice, credential="session", reauthenticated=True), grant=grant
        )
    batch.refresh_from_db()
    assert batch.status == "ready" and len(batch.urls) == 2
    assert grant.batches.filter(status="ready").count() == 2


def test_expiry_warns_then_notifies_once(alice, release, reviewer):
    grant = grant_for(alice, release, reviewer)
    mail.outbox.clear()
    Grant.objects.filter(pk=grant.pk).update(expires_at=timezone.now() + timedelta(days=10))
    assert services.grants_expire() == {"warned": 1, "expired": 0}
    assert services.grants_expire() == {"warned": 0, "expired": 0}
    Grant.objects.filter(pk=grant.pk).update(
        issued_at=timezone.now() - timedelta(days=365), expires_at=timezone.now() - timedelta(minutes=1)
    )
    assert services.grants_expire()["expired"] == 1
    assert services.grants_expire()["expired"] == 0
    assert [m.subject for m in mail.outbox] == [
        "[Model access] Your access to facebook/opt-175b expires soon",
        "[Model access] Your access to facebook/opt-175b has expired",
    ]
    assert AuditEvent.objects.filter(action="grant.expired").count() == 1


def test_a_renewal_goes_to_the_queue_linked_to_the_old_grant(alice, release, reviewer):
    grant = grant_for(alice, release, reviewer)
    renewal = services.request_renew(
        actor=services.Actor(user=alice, credential="session", reauthenticated=True), grant=grant
    )
    assert renewal.status == "pending" and renewal.renewal_of == grant
    assert renewal.intended_use == grant.request.intended_use
    services.request_approve(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True), access_request=renewal
    )
    new_grant = services.grant_issue(request_id=renewal.pk)
    assert new_grant.pk != grant.pk and new_grant.expires_at > grant.expires_at


def test_reconcile_reissues_approvals_whose_message_was_lost(alice, release, reviewer):
    request = AccessRequestFactory(applicant=alice, release=release)
    services.request_approve(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True), access_request=request
    )
    assert not Grant.objects.filter(request=request).exists()  # the on-commit message never ran here
    assert services.grants_reconcile(older_than=timedelta(0)) == [request.pk]
    assert Grant.objects.filter(request=request).count() == 1
    assert services.grants_reconcile(older_than=timedelta(0)) == []


def test_reviewers_revoke_through_the_api(alice, release, reviewer):
    grant = grant_for(alice, release, reviewer)
    plain = bearer(token_for(reviewer)[1])
    response = plain.post(f"/api/v1/review/grants/{grant.public_id}/revoke", {"reason": "Breach"}, format="json")
    assert (response.status_code, response.json()["code"]) == (403, "permission_denied")
    client = bearer(token_for(reviewer, review=True)[1])
    response = client.post(f"/api/v1/review/grants/{grant.public_id}/revoke", {"reason": "Breach"}, format="json")
    assert response.status_code == 200 and response.json()["active"] is False
    response = bearer(token_for(alice)[1]).post(
        f"/api/v1/review/grants/{grant.public_id}/revoke", {"reason": "x"}, format="json"
    )
    assert response.status_code == 403


def test_the_reviewer_grant_page_counts_fetches_and_exports_csv(client, alice, release, reviewer):
    grant = grant_for(alice, release, reviewer)
    api = bearer(token_for(alice)[1])
    api.get(FILE_URL)
    api.get(FILE_URL)
    client.force_login(reviewer)
    page = client.get(f"/review/grants/{grant.public_id}/").content.decode()
    assert SHARD in page and "1 of 2 files fetched" in page
    csv_body = b"".join(client.get("/review/export/downloads.csv").streaming_content).decode()
    assert csv_body.count(SHARD) == 2 and csv_body.startswith("time,release,file")
    audit_csv = b"".join(client.get("/review/export/audit.csv").streaming_content).decode()
    assert "grant.issued" in audit_csv


def test_token_pages_show_the_secret_once(client, alice):
    client.force_login(alice)
    response = client.post("/tokens/", {"name": "cluster"})
    assert response.status_code == 302  # post/redirect/get: a reload cannot create a second token
    body = client.get("/tokens/").content.decode()
    token = ApiToken.objects.get(user=alice)
    assert 'id="new-token"' in body and token.prefix in body
    assert 'id="new-token"' not in client.get("/tokens/").content.decode()
    assert ApiToken.objects.filter(user=alice).count() == 1
    client.post(f"/tokens/{token.pk}/revoke")
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_a_guessed_token_id_is_not_found(client, alice, bob):
    token, _ = token_for(alice)
    client.force_login(bob)
    assert client.post(f"/tokens/{token.pk}/revoke").status_code == 404


def test_throttled_callers_get_429_with_retry_after(alice, bob, release, reviewer, settings):
    grant_for(alice, release, reviewer)
    client = bearer(token_for(alice)[1])
    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "user": "3/minute"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    statuses = [client.get(FILE_URL).status_code for _ in range(4)]
    response = client.get(FILE_URL)
    # Counted per user: another user from the same address is not held back.
    assert bearer(token_for(bob)[1]).get(FILE_URL).status_code == 403
    assert statuses == [302, 302, 302, 429]
    assert response.json()["code"] == "throttled"
    assert int(response["Retry-After"]) > 0


def test_the_batch_is_not_served_after_revocation(client, alice, release, reviewer):
    grant = grant_for(alice, release, reviewer)
    client.force_login(alice)
    assert client.get(f"/grants/{grant.public_id}/batch.aria2").status_code == 200
    services.grant_revoke(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True), grant=grant, reason="No."
    )
    assert client.get(f"/grants/{grant.public_id}/batch.aria2").status_code == 302
    assert UrlBatch.objects.filter(grant=grant).count() == 1


def test_the_batch_wget_list_names_files_not_query_strings_on_s3(client, alice, reviewer, s3_storage):
    release = ReleaseFactory(repo_id="facebook/opt-175b", access="gated")
    add_file(release, SHARD, b"shard-bytes")
    grant = grant_for(alice, release, reviewer)
    assert "X-Amz-Signature" in grant.batches.get().urls[0]["url"]
    client.force_login(alice)
    lines = client.get(f"/grants/{grant.public_id}/batch.wget").content.decode().split()
    assert len(lines) == 1 and "?" not in lines[0] and lines[0].endswith(f"/{SHARD}") and "/dl/" in lines[0]
    relayed = client.get(lines[0].replace("http://testserver", ""))
    assert relayed.status_code == 302 and "X-Amz-Signature" in relayed["Location"]


def test_every_refused_download_is_audited_with_its_code(alice, release, reviewer):
    from access.models import AuditEvent

    bearer(token_for(alice)[1]).get(FILE_URL)
    APIClient().get(MANIFEST_URL)
    refusals = AuditEvent.objects.filter(action="download.refused").order_by("id")
    assert [(e.actor, e.data["code"], e.data["via"]) for e in refusals] == [
        (alice, "gated", "api"),
        (None, "not_authenticated", "manifest"),
    ]
    assert refusals[0].data["path"] == SHARD and refusals[0].credential.startswith("token:")
