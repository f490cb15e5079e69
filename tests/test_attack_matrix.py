"""Every entry point × every role × every way of presenting credentials, against an oracle written from the
access rules (not from the code). Plus signed-URL attacks and guessed ids. Zero unauthorized successes."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
import requests
from django.db import connection
from django.middleware.csrf import _get_new_csrf_string, _mask_cipher_secret
from django.utils import timezone
from rest_framework.test import APIClient

from access import services
from access.downloads import relay_url
from access.models import (
    AccessRequest,
    Advisory,
    AdvisoryRecipient,
    ApiToken,
    AuditEvent,
    DownloadEvent,
    FlawReport,
    FlawReportEntry,
    Grant,
    LabInvitation,
    ModelRelease,
    RequestAttachment,
    RevisionWithdrawal,
    User,
)
from access.storage import get_storage
from tests.factories import (
    PDF,
    AccessRequestFactory,
    ReleaseFactory,
    UserFactory,
    add_file,
    add_question,
    grant_for,
    token_secret,
)
from tests.support.auth import login_recently

pytestmark = pytest.mark.django_db

SHARD = "checkpoint_last-model_part-0-shard0.pt"
ROLES = [
    "anonymous",
    "researcher",
    "pending",
    "needs_info",
    "rejected",
    "approved",
    "revoked",
    "expired",
    "old_license",
    "inactive",
    "unpublished",
    "other_researcher",
    "reviewer",
    "admin",
    "lab_owner",
    "lab_admin",
    "lab_member",
    "lab_former_member",
    "lab_invited",
    "lab_outsider",
    # Reviewers who are in the lab: they decide none of its requests or seats, and one who joined after its
    # request was decided waits for a place like anyone beyond the cap.
    "lab_reviewer_owner",
    "lab_reviewer_admin",
    "lab_reviewer_member",
]
CREDENTIALS = [
    "none",
    "session",
    "stale_session",
    "token",
    "review_token",
    "other_token",
    "revoked_token",
    "expired_token",
    "malformed",
    "query",
]
GATED_CODE = {
    "researcher": "gated",
    "pending": "pending",
    "needs_info": "pending",
    "rejected": "rejected",
    "revoked": "revoked",
    "expired": "expired",
    "old_license": "license_update",
    "inactive": "account_inactive",
    "unpublished": "not_found",
    "other_researcher": "pending",
    "reviewer": "gated",
    "admin": "gated",
    "lab_former_member": "gated",
    "lab_invited": "gated",
    "lab_outsider": "gated",
    "lab_reviewer_admin": "lab_seat_pending",
    "lab_reviewer_member": "lab_seat_pending",
}
# Roles that may download: an active grant of their own, or a seat on their lab's grant.
DOWNLOADERS = {"approved", "lab_owner", "lab_admin", "lab_member", "lab_reviewer_owner"}
LAB_REVIEWERS = {"lab_reviewer_owner", "lab_reviewer_admin", "lab_reviewer_member"}
LAB_MEMBERS = {"lab_owner", "lab_admin", "lab_member", *LAB_REVIEWERS}
LAB_ADMINS = {"lab_owner", "lab_admin", "lab_reviewer_owner", "lab_reviewer_admin"}
REVIEWERS = ("reviewer", "admin", *LAB_REVIEWERS)
# Roles holding a grant of their own (active or not) on the gated release.
GRANT_HOLDERS = {"approved", "revoked", "expired", "old_license", "inactive", "unpublished"}
# Roles that may report a flaw in the gated release: an active grant (whatever its license version) or seat.
FLAW_REPORTERS = DOWNLOADERS | {"old_license"}
# Current holders (the same test as for flaw reports) may read and acknowledge an advisory under embargo, and so
# may the accounts told of it: whoever downloaded an affected revision, whatever their grant's state now.
ADVISORY_HOLDERS = FLAW_REPORTERS
ADVISORY_TOLD = {"approved", "revoked", "expired"}
# Reviewers and release managers see drafts and advisories under embargo; only release managers (manage_release:
# here the superuser) write, publish and withdraw.
RELEASE_MANAGERS = {"admin"}
FLAW_REPORT = {
    "revisions": ["main"],
    "title": "Jailbreak",
    "category": "security",
    "description": "d",
    "reproduction": "r",
    "observed": "o",
    "expected": "e",
    "severity": "low",
    "terms_version": 1,
    "accept_terms": True,
}


@dataclass
class World:
    users: dict = field(default_factory=dict)
    tokens: dict = field(default_factory=dict)
    victim_request: AccessRequest | None = None
    victim_grant: Grant | None = None
    own_request: dict = field(default_factory=dict)
    own_grant: dict = field(default_factory=dict)
    relay: str = ""
    victim_attachment: str = ""
    lab: str = ""
    # The lab's open request for the other gated release: reviewers outside the lab may decide it.
    lab_request: AccessRequest | None = None
    # The victim's flaw report on the gated release: only its reporter and the triagers see it.
    victim_flaw: FlawReport | None = None
    # A published advisory under embargo on the gated release's revision (the victim was told of it) and a draft.
    embargoed: Advisory | None = None
    draft: Advisory | None = None


def build_world(role) -> World:
    gated = ReleaseFactory(repo_id="facebook/opt-175b", access="gated")
    shard = add_file(gated, SHARD, b"secret weights")
    other_release = ReleaseFactory(repo_id="facebook/opt-66b", access="gated")
    reviewer = UserFactory(email="rita@portal.example")
    services.reviewer_add(actor=services.command_actor("add_reviewer"), user=reviewer)
    world = World()
    # The victim owns a grant and an open request: nobody else may see or act on them as their own.
    victim = UserFactory(email="victim@uni.example")
    world.victim_grant = grant_for(victim, gated, reviewer)
    world.victim_request = AccessRequestFactory(applicant=victim, release=other_release)
    world.victim_attachment = _attachment(world.victim_request).public_id
    world.victim_flaw = services.flaw_report_file(
        actor=services.Actor(user=victim, credential="session"),
        release=gated,
        data=FLAW_REPORT,
        revisions=["main"],
        terms_version=1,
        accept_terms=True,
    )
    other = UserFactory(email="other@uni.example")
    world.users["other"] = other
    world.tokens["other"] = services.token_create(
        actor=services.Actor(user=other, credential="session", reauthenticated=True), name="t"
    )[1]
    if role == "anonymous":
        _lab(world, role, None, gated, reviewer)
        _advisories(world, gated, shard, [victim])
        world.relay = relay_url(shard.pk, SHARD, user_id=None, base_url="http://testserver").removeprefix(
            "http://testserver"
        )
        return world
    user = {
        "reviewer": reviewer,
        "admin": UserFactory(email="admin@portal.example", is_staff=True, is_superuser=True),
    }.get(role) or UserFactory(email=f"{role}@uni.example")
    if role in LAB_REVIEWERS:
        services.reviewer_add(actor=services.command_actor("add_reviewer"), user=user)
    world.users[role] = user
    _lab(world, role, user, gated, reviewer)
    if role in ("pending", "needs_info", "rejected", "other_researcher"):
        status = "pending" if role == "other_researcher" else role
        world.own_request[role] = AccessRequestFactory(
            applicant=user, release=gated, status=status, decided_at=timezone.now(), decision_reason="Not now."
        )
    if role in GRANT_HOLDERS:
        grant = grant_for(user, gated, reviewer)
        world.own_request[role] = grant.request
        world.own_grant[role] = grant
        if role == "revoked":
            services.grant_revoke(
                actor=services.Actor(user=reviewer, credential="session", reauthenticated=True),
                grant=grant,
                reason="Shared the weights.",
            )
        if role == "expired":
            Grant.objects.filter(pk=grant.pk).update(
                issued_at=timezone.now() - timedelta(days=400), expires_at=timezone.now() - timedelta(days=1)
            )
        if role == "old_license":
            # The release moves to a new license version this holder has not accepted.
            command = services.command_actor("tests")
            newer = services.license_publish(
                actor=command, slug=gated.license.slug, version="1.1", title="Test license", text="Version 1.1."
            )
            services.release_set_license(actor=command, release=gated, license=newer)
    actor = services.Actor(user=user, credential="session", reauthenticated=True)
    world.tokens["token"] = services.token_create(actor=actor, name="valid")[1]
    if role in REVIEWERS:
        world.tokens["review_token"] = services.token_create(actor=actor, name="review", review=True)[1]
    revoked, world.tokens["revoked_token"] = services.token_create(actor=actor, name="revoked")
    services.token_revoke(actor=actor, token=revoked)
    expired, world.tokens["expired_token"] = services.token_create(actor=actor, name="expired")
    ApiToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    world.relay = relay_url(shard.pk, SHARD, user_id=user.pk, base_url="http://testserver").removeprefix(
        "http://testserver"
    )
    _advisories(world, gated, shard, [victim, user] if role in ADVISORY_TOLD else [victim])
    # The account or release changes last: a disabled account cannot create tokens, and a grant is only
    # issued on a published release.
    if role == "inactive":
        User.objects.filter(pk=user.pk).update(is_active=False)
    if role == "unpublished":
        ModelRelease.objects.filter(pk=gated.pk).update(published=False)
    return world


def _lab(world, role, user, gated, reviewer) -> None:
    """A lab with a grant for the gated release that covers all members: the user is its owner, an admin or a
    member who accepted the license, a member who was removed, invited without accepting, or not in it."""
    owner = user if role in ("lab_owner", "lab_reviewer_owner") else UserFactory(email="pi@uni.example")
    lab = services.lab_create(
        actor=services.Actor(user=owner, credential="session", reauthenticated=True),
        name="Language Lab",
        email_domains=["uni.example"],
    )
    world.lab = lab.public_id
    request = AccessRequestFactory(applicant=owner, release=gated, lab=lab, all_members=True)
    services.request_approve(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True), access_request=request
    )
    grant = services.grant_issue(request_id=request.pk)
    other_release = ModelRelease.objects.get(repo_id="facebook/opt-66b")
    world.lab_request = AccessRequestFactory(applicant=owner, release=other_release, lab=lab, all_members=True)
    if role in ("lab_owner", "lab_reviewer_owner"):
        world.own_request[role] = request
    joining = (
        "lab_admin",
        "lab_member",
        "lab_former_member",
        "lab_invited",
        "lab_reviewer_admin",
        "lab_reviewer_member",
    )
    if role in joining:
        _invitation, secret = services.lab_invite(
            actor=services.Actor(user=owner, credential="session", reauthenticated=True),
            lab=lab,
            email=user.email,
            role="admin" if role in ("lab_admin", "lab_reviewer_admin") else "member",
        )
        if role == "lab_invited":
            return
        membership = services.lab_invitation_accept(
            actor=services.Actor(user=user, credential="session", reauthenticated=True), token=secret
        )
        services.lab_seat_accept(
            actor=services.Actor(user=user, credential="session", reauthenticated=True),
            grant=grant,
            version="1.0",
            accept_license=True,
            noncommercial_attested=True,
        )
        if role == "lab_former_member":
            services.lab_member_remove(
                actor=services.Actor(user=owner, credential="session", reauthenticated=True),
                lab=lab,
                membership=membership,
            )


def _advisories(world, gated, shard, downloaders) -> None:
    """The accounts in `downloaders` fetched the gated release's revision; a release manager publishes an advisory
    on it under embargo (so they are told) and keeps another as a draft."""
    revision = gated.main_revision
    for user in downloaders:
        DownloadEvent.objects.create(release=gated, file=shard, revision=revision, user=user, via="api")
    manager = UserFactory(email="rm@portal.example")
    services.release_manager_add(actor=services.command_actor("tests"), user=manager)
    actor = services.Actor(user=manager, credential="session", reauthenticated=True)
    data = {"affected_revisions": [revision.sha], "severity": "high", "title": "Leaks", "summary": "It leaks."}
    embargo = (timezone.now() + timedelta(days=7)).isoformat()
    world.embargoed = services.advisory_create(actor=actor, release=gated, data={**data, "embargo_until": embargo})
    services.advisory_publish(actor=actor, advisory=world.embargoed)
    world.draft = services.advisory_create(actor=actor, release=gated, data={**data, "title": "Draft"})


def _attachment(access_request) -> RequestAttachment:
    """An upload on the victim's request, which only reviewers may read."""
    question = add_question(access_request.release, "irb_letter", kind="file")
    key = f"_attachments/{access_request.public_id}/letter.pdf"
    size, sha = get_storage().save(key, io.BytesIO(PDF))
    return RequestAttachment.objects.create(
        request=access_request,
        question=question,
        filename="letter.pdf",
        content_type="application/pdf",
        size=size,
        sha256=sha,
        storage_key=key,
    )


# A new advisory on the gated release's revision, as a release manager's script sends it.
ADVISORY = {
    "repo_id": "facebook/opt-175b",
    "affected_revisions": ["{revision}"],
    "severity": "low",
    "title": "T",
    "summary": "S",
}


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    url: str  # {victim_request} {victim_grant} {own_request} {own_grant} {relay} are filled in
    # public | gated | mine | own_object | victim_object | review | review_action | relay | advisory_* | web_*
    kind: str
    body: dict | None = None
    ok: int = 200


ENDPOINTS = [
    Endpoint("models", "get", "/api/v1/models", "public"),
    Endpoint("model", "get", "/api/v1/models/facebook/opt-175b", "release"),
    Endpoint("file", "get", f"/api/v1/models/facebook/opt-175b/files/{SHARD}", "gated", ok=302),
    Endpoint("file-head", "head", f"/api/v1/models/facebook/opt-175b/files/{SHARD}", "gated", ok=302),
    Endpoint("manifest", "get", "/api/v1/models/facebook/opt-175b/manifest", "gated"),
    Endpoint("manifest-wget", "get", "/api/v1/models/facebook/opt-175b/manifest?format=wget", "gated"),
    Endpoint("manifest-metalink", "get", "/api/v1/models/facebook/opt-175b/manifest?format=metalink", "gated"),
    Endpoint("file-mirror", "get", f"/api/v1/models/facebook/opt-175b/files/{SHARD}?mirror=primary", "gated", ok=302),
    Endpoint("access-form", "get", "/api/v1/models/facebook/opt-175b/access-form", "release"),
    Endpoint("hf-tree", "get", "/api/models/facebook/opt-175b/tree/main?recursive=true", "gated"),
    Endpoint("hf-resolve", "get", f"/facebook/opt-175b/resolve/main/{SHARD}", "gated", ok=302),
    Endpoint("hf-resolve-head", "head", f"/facebook/opt-175b/resolve/main/{SHARD}", "gated", ok=302),
    Endpoint("hf-resolve-mirror", "head", f"/facebook/opt-175b/resolve/main/{SHARD}?mirror=primary", "gated", ok=302),
    Endpoint("relay", "get", "{relay}", "relay", ok=302),
    Endpoint("relay-mirror", "get", "{relay}?mirror=primary", "relay", ok=302),
    Endpoint("my-requests", "get", "/api/v1/access-requests", "mine"),
    Endpoint("my-grants", "get", "/api/v1/grants", "mine"),
    Endpoint("own-request", "get", "/api/v1/access-requests/{own_request}", "own_object"),
    Endpoint("victim-request", "get", "/api/v1/access-requests/{victim_request}", "victim_object"),
    Endpoint("victim-withdraw", "post", "/api/v1/access-requests/{victim_request}/withdraw", "victim_object"),
    Endpoint("victim-attach", "post", "/api/v1/access-requests/{victim_request}/attachments", "victim_object"),
    Endpoint("victim-submit", "post", "/api/v1/access-requests/{victim_request}/submit", "victim_object"),
    Endpoint(
        "victim-attachment-remove",
        "delete",
        "/api/v1/access-requests/{victim_request}/attachments/{victim_attachment}",
        "victim_object",
    ),
    Endpoint(
        "victim-accept-license",
        "post",
        "/api/v1/grants/{victim_grant}/accept-license",
        "victim_object",
        {"version": "1.1", "accept_license": True, "noncommercial_attested": True},
    ),
    Endpoint("disclosure-terms", "get", "/api/v1/models/facebook/opt-175b/disclosure-terms", "release"),
    Endpoint("flaw-file", "post", "/api/v1/models/facebook/opt-175b/flaw-reports", "flaw_file", FLAW_REPORT, ok=201),
    Endpoint("my-flaw-reports", "get", "/api/v1/flaw-reports", "mine"),
    Endpoint("victim-flaw-report", "get", "/api/v1/flaw-reports/{victim_flaw}", "flaw_view"),
    Endpoint(
        "victim-flaw-comment", "post", "/api/v1/flaw-reports/{victim_flaw}/comments", "flaw_comment", {"body": "x"}
    ),
    Endpoint("review-flaw-list", "get", "/api/v1/review/flaw-reports", "review"),
    Endpoint(
        "review-flaw-triage",
        "post",
        "/api/v1/review/flaw-reports/{victim_flaw}/triage",
        "review_action",
        {"status": "triaged"},
    ),
    Endpoint("web-victim-flaw", "get", "/flaw-reports/{victim_flaw}/", "web_victim"),
    Endpoint("web-review-flaws", "get", "/review/flaw-reports/", "web_review"),
    Endpoint("web-review-flaw", "get", "/review/flaw-reports/{victim_flaw}/", "web_review"),
    Endpoint(
        "victim-progress-report",
        "post",
        "/api/v1/grants/{victim_grant}/progress-reports",
        "victim_object",
        {"summary": "Nothing."},
    ),
    Endpoint("victim-progress-reports", "get", "/api/v1/grants/{victim_grant}/progress-reports", "victim_object"),
    Endpoint("victim-renew", "post", "/api/v1/grants/{victim_grant}/renew", "victim_object", {}),
    Endpoint("victim-close", "post", "/api/v1/grants/{victim_grant}/close", "victim_object"),
    Endpoint(
        "victim-close-out",
        "post",
        "/api/v1/grants/{victim_grant}/close-out",
        "victim_object",
        {"deleted_on": "2026-01-01", "locations": 1, "statement": "Deleted."},
    ),
    Endpoint("victim-register-withdraw", "post", "/api/v1/grants/{victim_grant}/register/withdraw", "victim_object"),
    Endpoint("review-close-outs", "get", "/api/v1/review/close-outs", "review"),
    Endpoint("review-grant-reports", "get", "/api/v1/review/grants/{victim_grant}/progress-reports", "review"),
    Endpoint("review-list", "get", "/api/v1/review/access-requests", "review"),
    Endpoint("review-stats", "get", "/api/v1/review/stats?release=facebook/opt-175b&period=30", "review"),
    Endpoint("review-attachment", "get", "/api/v1/review/attachments/{victim_attachment}", "review"),
    Endpoint("review-approve", "post", "/api/v1/review/access-requests/{victim_request}/approve", "review_action"),
    Endpoint("review-approve-lab", "post", "/api/v1/review/access-requests/{lab_request}/approve", "lab_review_action"),
    Endpoint(
        "hf-review-accept-lab",
        "post",
        "/api/models/facebook/opt-66b/user-access-request/handle",
        "lab_review_action",
        {"requestId": "{lab_request}", "status": "accepted"},
    ),
    Endpoint(
        "review-reject",
        "post",
        "/api/v1/review/access-requests/{victim_request}/reject",
        "review_action",
        {"reason": "x"},
    ),
    Endpoint(
        "review-revoke", "post", "/api/v1/review/grants/{victim_grant}/revoke", "review_action", {"reason": "Breach"}
    ),
    Endpoint("hf-review-list", "get", "/api/models/facebook/opt-66b/user-access-request/pending", "review"),
    Endpoint(
        "hf-review-accept",
        "post",
        "/api/models/facebook/opt-66b/user-access-request/handle",
        "review_action",
        {"user": "victim@uni.example", "status": "accepted"},
    ),
    Endpoint(
        "hf-review-reject",
        "post",
        "/api/models/facebook/opt-66b/user-access-request/handle",
        "review_action",
        {"user": "victim@uni.example", "status": "rejected", "rejectionReason": "x"},
    ),
    Endpoint(
        "hf-review-grant",
        "post",
        "/api/models/facebook/opt-66b/user-access-request/grant",
        "review_action",
        {"user": "victim@uni.example"},
    ),
    Endpoint("lab", "get", "/api/v1/labs/{lab}", "lab_view"),
    Endpoint("lab-members", "get", "/api/v1/labs/{lab}/members", "lab_view"),
    Endpoint("lab-invite", "post", "/api/v1/labs/{lab}/invitations", "lab_admin", {"email": "new@uni.example"}, ok=201),
    Endpoint("advisory-embargoed", "get", "/api/v1/advisories/{embargoed}", "advisory_embargoed"),
    Endpoint("advisory-draft", "get", "/api/v1/advisories/{draft}", "advisory_draft"),
    Endpoint("advisory-acknowledge", "post", "/api/v1/advisories/{embargoed}/acknowledge", "advisory_acknowledge"),
    Endpoint("advisory-create", "post", "/api/v1/review/advisories", "advisory_manage", ADVISORY, ok=201),
    Endpoint("advisory-publish", "post", "/api/v1/review/advisories/{draft}/publish", "advisory_manage"),
    # A revision the release never had: a release manager gets as far as the 400, and nothing is withdrawn.
    Endpoint(
        "advisory-withdraw",
        "post",
        "/api/v1/review/advisories/{embargoed}/withdraw-revision",
        "advisory_manage",
        {"revision": "0" * 40},
        ok=400,
    ),
    Endpoint("web-lab", "get", "/labs/{lab}/", "web_lab"),
    Endpoint("web-my-requests", "get", "/requests/", "web_mine"),
    Endpoint("web-victim-request", "get", "/requests/{victim_request}/", "web_victim"),
    Endpoint("web-victim-grant", "get", "/grants/{victim_grant}/", "web_victim"),
    Endpoint("web-victim-batch", "get", "/grants/{victim_grant}/batch.json", "web_victim"),
    Endpoint("web-own-grant", "get", "/grants/{own_grant}/", "web_own_grant"),
    Endpoint("web-own-batch", "get", "/grants/{own_grant}/batch.json", "web_own_batch"),
    Endpoint("web-own-batch-wget", "get", "/grants/{own_grant}/batch.wget", "web_own_batch"),
    Endpoint("web-own-batch-metalink", "get", "/grants/{own_grant}/batch.metalink", "web_own_batch"),
    Endpoint("web-tokens", "get", "/tokens/", "web_mine"),
    Endpoint("web-review", "get", "/review/", "web_review"),
    Endpoint("web-webhooks", "get", "/webhooks/", "web_manage"),
    Endpoint("web-review-request", "get", "/review/requests/{victim_request}/", "web_review"),
    Endpoint("web-review-attachment", "get", "/review/attachments/{victim_attachment}", "web_review"),
    Endpoint("web-victim-license", "get", "/grants/{victim_grant}/license", "web_victim"),
    Endpoint(
        "web-victim-attachment-remove",
        "post",
        "/requests/{victim_request}/attachments/{victim_attachment}/remove",
        "web_victim",
    ),
    Endpoint("web-manage", "get", "/manage/facebook/opt-175b/", "web_manage"),
    Endpoint("web-review-export", "get", "/review/export/downloads.csv", "web_review"),
    Endpoint("web-review-export-json", "get", "/review/export/requests.json", "web_review"),
    Endpoint("web-review-dashboard", "get", "/review/dashboard", "web_review"),
    Endpoint(
        "web-review-decide", "post", "/review/requests/{victim_request}/", "web_review_action", {"action": "approve"}
    ),
    Endpoint(
        "web-review-decide-lab", "post", "/review/requests/{lab_request}/", "web_review_action", {"action": "approve"}
    ),
]

BAD_TOKEN_CODE = {"revoked_token": "token_revoked", "expired_token": "token_expired", "malformed": "invalid_token"}
SESSIONS = ("session", "stale_session")


def expected(endpoint: Endpoint, role: str, credential: str, has_own: bool):
    """(status, code or None) the access rules promise."""
    if endpoint.kind == "relay":
        # The ticket is the credential: it names the user it was issued to, whatever else the caller sends.
        if role == "anonymous":
            return 401, "not_authenticated"
        return (302, None) if role in DOWNLOADERS else (404 if role == "unpublished" else 403, GATED_CODE[role])
    if endpoint.kind.startswith("web_"):
        # Web pages know only the session cookie; any Authorization header or query token is ignored, and a
        # disabled account's session signs nobody in.
        if role == "inactive" and credential in SESSIONS:
            return 302, None  # the CSRF check passes, then the disabled account is sent to sign in
        who = role if credential in SESSIONS else "anonymous"
        if who == "anonymous":
            # A form post without the session's CSRF token fails the CSRF check before anything else.
            return (403, None) if endpoint.method == "post" else (302, None)
        reviewer = who in REVIEWERS
        match endpoint.kind:
            case "web_mine" | "web_own_grant":
                return 200, None
            case "web_own_batch":
                # Only an active grant on a published release hands out its batch; others go back to the page.
                return (200, None) if who in DOWNLOADERS else (302, None)
            case "web_victim":
                return 404, None
            case "web_lab":
                return (200, None) if who in LAB_MEMBERS or reviewer else (404, None)
            case "web_review":
                return (200, None) if reviewer else (404, None)
            case "web_manage":
                # Admins only here: webhooks and release policies are for holders of those permissions.
                return (200, None) if who == "admin" else (404, None)
            case "web_review_action":
                if not reviewer:
                    return 404, None
                # A stale session is sent to enter its password again; a fresh one decides.
                return 302, None
    if role == "inactive" and credential in ("token", "revoked_token", "expired_token"):
        return 401, "invalid_token"  # a disabled account's tokens are unknown, whatever their own state
    if credential in BAD_TOKEN_CODE:
        return 401, BAD_TOKEN_CODE[credential]
    who = {"none": "anonymous", "query": "anonymous", "other_token": "other_researcher_token"}.get(credential, role)
    if who == "other_researcher_token":
        who = "researcher"  # the other user holds no request and no grant
    if role == "unpublished" and endpoint.kind in ("release", "gated"):
        return 404, "not_found"  # an unpublished release does not exist for anyone but reviewers
    if role == "inactive" and credential in SESSIONS:
        return _anonymous(endpoint)  # a disabled account's session signs nobody in
    if who == "anonymous":
        return _anonymous(endpoint)
    reviewer = who in REVIEWERS
    scoped = credential in (*SESSIONS, "review_token")  # credentials that carry reviewer powers
    match endpoint.kind:
        case "public" | "mine":
            return endpoint.ok, None
        case "release":
            return endpoint.ok, None
        case "gated":
            return (endpoint.ok, None) if who in DOWNLOADERS else (403, GATED_CODE[who])
        case "own_object":
            return (200, None) if has_own and credential != "other_token" else (404, "not_found")
        case "victim_object":
            return 404, "not_found"
        case "lab_view":
            return (200, None) if who in LAB_MEMBERS or reviewer else (404, "not_found")
        case "lab_admin":
            if who in LAB_ADMINS:
                return endpoint.ok, None
            return (403, "lab_admin_required") if who in LAB_MEMBERS else (404, "not_found")
        case "review":
            return (200, None) if reviewer and scoped else (403, "permission_denied")
        case "flaw_file":
            if role == "unpublished":
                return 404, "not_found"
            return (201, None) if who in FLAW_REPORTERS else (403, "not_a_holder")
        case "flaw_view":
            return (200, None) if reviewer and scoped else (404, "not_found")
        case "flaw_comment":
            if not (reviewer and scoped):
                return 404, "not_found"
            return (403, "reauthentication_required") if credential == "stale_session" else (201, None)
        case "advisory_embargoed":
            readers = ADVISORY_HOLDERS | ADVISORY_TOLD | set(REVIEWERS)
            return (200, None) if who in readers and role != "unpublished" else (404, "not_found")
        case "advisory_draft":
            return (200, None) if reviewer else (404, "not_found")
        case "advisory_acknowledge":
            # Only for oneself: the accounts told and current holders; a reviewer sees it but has nothing to
            # acknowledge; for anyone else it does not exist.
            if role == "unpublished":
                return 404, "not_found"
            if who in ADVISORY_HOLDERS | ADVISORY_TOLD:
                return 200, None
            return (403, "not_told") if reviewer else (404, "not_found")
        case "advisory_manage":
            if who not in RELEASE_MANAGERS or not scoped:
                return 403, "permission_denied"
            return (403, "reauthentication_required") if credential == "stale_session" else (endpoint.ok, None)
        case "review_action" | "lab_review_action":
            if not (reviewer and scoped):
                return 403, "permission_denied"
            if credential == "stale_session":
                return 403, "reauthentication_required"
            if endpoint.kind == "lab_review_action" and who in LAB_REVIEWERS:
                # The owner applied for the lab: their own request; any other member would be covered by it.
                return 403, "own_request" if who == "lab_reviewer_owner" else "own_lab"
            return 200, None
    raise AssertionError(endpoint)


def _anonymous(endpoint: Endpoint):
    if endpoint.kind in ("public", "release"):
        return endpoint.ok, None
    if endpoint.kind in ("advisory_embargoed", "advisory_draft"):
        return 404, "not_found"  # anyone may read a public advisory; these do not exist for the anonymous
    return 401, "not_authenticated"


def make_client(world: World, role: str, credential: str) -> APIClient | None:
    client = APIClient(enforce_csrf_checks=True)
    user = world.users.get(role)
    if credential in ("session", "stale_session", "token", "revoked_token", "expired_token") and user is None:
        return None  # an anonymous visitor has no session or tokens of its own
    if credential == "review_token" and credential not in world.tokens:
        return None  # only reviewers can create one
    if credential in SESSIONS:
        if credential == "session":
            login_recently(client, user)
        else:
            client.force_login(user)  # signed in, but the password was not entered recently
        secret = _get_new_csrf_string()
        client.cookies["csrftoken"] = secret
        client.credentials(HTTP_X_CSRFTOKEN=_mask_cipher_secret(secret))
    elif credential in ("token", "review_token", "revoked_token", "expired_token"):
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {world.tokens[credential]}")
    elif credential == "other_token":
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {world.tokens['other']}")
    elif credential == "malformed":
        client.credentials(HTTP_AUTHORIZATION="Bearer mp_not-a-real-token")
    return client


# Roles that own a request of their own; the own-request endpoint is only asked of them.
OWNERS = {"pending", "needs_info", "rejected", "other_researcher", "lab_owner", "lab_reviewer_owner", *GRANT_HOLDERS}


def endpoints_for(role: str) -> list[Endpoint]:
    return [
        endpoint
        for endpoint in ENDPOINTS
        if ("{own_request}" not in endpoint.url or role in OWNERS)
        and ("{own_grant}" not in endpoint.url or role in GRANT_HOLDERS)
    ]


# One world per role, asked every endpoint with every way of presenting credentials (the world is reset after each
# call that may change it): the same cases as one test per endpoint, role and credential, built 23 times instead
# of 1,300.
# Every endpoint over HTTP, thousands of calls: the slow tier (the rule's own combinations run in memory in
# tests/test_gate_rule.py, and each download channel through the real stack in tests/test_download_channels.py).
@pytest.mark.slow
@pytest.mark.parametrize("role", ROLES)
def test_attack_matrix(local_storage, role):
    world = build_world(role)
    failures = []
    checked = 0
    for endpoint in endpoints_for(role):
        failures += [f"{endpoint.name}: {f}" for f in _attack(world, endpoint, role)]
        checked += 1
    assert checked
    assert not failures, "\n".join(failures)


def _attack(world: World, endpoint: Endpoint, role: str) -> list[str]:
    own = world.own_request.get(role)
    own_grant = world.own_grant.get(role)
    failures = []
    checked = 0
    for credential in CREDENTIALS:
        client = make_client(world, role, credential)
        if client is None:
            continue
        values = {
            "victim_request": world.victim_request.public_id,
            "victim_grant": world.victim_grant.public_id,
            "own_request": own.public_id if own else "",
            "own_grant": own_grant.public_id if own_grant else "",
            "relay": world.relay,
            "victim_attachment": world.victim_attachment,
            "lab": world.lab,
            "lab_request": world.lab_request.public_id,
            "victim_flaw": world.victim_flaw.public_id,
            "embargoed": world.embargoed.public_id,
            "draft": world.draft.public_id,
            "revision": world.embargoed.release.revision,
        }
        url = endpoint.url.format(**values)
        body = {k: _filled(v, values) for k, v in (endpoint.body or {}).items()}
        if credential == "query":
            secret = world.tokens.get("token") or world.tokens["other"]
            url += ("&" if "?" in url else "?") + f"token={secret}&access_token={secret}"
        # What a call could change: the victim's objects (any call), downloads and their refusals (the gate's).
        downloads_kind = endpoint.kind in ("gated", "relay", "web_own_batch")
        state_before, downloads_before, refusals_before = _state(world, endpoint)
        if endpoint.kind.startswith("web_"):
            response = getattr(client, endpoint.method)(url, body)
        else:
            response = getattr(client, endpoint.method)(url, body, format="json")
        status, code = expected(endpoint, role, credential, own is not None)
        got_code = None
        is_json = response.get("Content-Type", "").startswith("application/json")
        if is_json and endpoint.method != "head" and not response.streaming:  # exports stream, never refuse so
            body = response.json()
            got_code = body.get("code") if isinstance(body, dict) else None
        if response.status_code != status or (code and endpoint.method != "head" and got_code != code):
            failures.append(f"{credential}: expected {status} {code}, got {response.status_code} {got_code}")
        refused = status >= 400 or (endpoint.kind == "web_own_batch" and status == 302)
        # The web decision page answers a refusal with a message and a redirect, as it answers a decision.
        refused = refused or ("{lab_request}" in endpoint.url and role in LAB_REVIEWERS)
        state_after, downloads_after, refusals_after = _state(world, endpoint)
        if refused and (state_after != state_before or (downloads_kind and downloads_after != downloads_before)):
            failures.append(f"{credential}: a refused call changed state")
        if endpoint.kind == "advisory_acknowledge" and state_after != state_before:
            failures.append(f"{credential}: acknowledged for someone else")
        # A tree listing is decided by the gate but hands out no URL, so it records no download.
        downloaded = endpoint.kind in ("gated", "relay", "web_own_batch") and endpoint.name != "hf-tree" and not refused
        if downloaded and downloads_after != downloads_before + 1:
            failures.append(f"{credential}: an allowed download left no DownloadEvent")
        if refused and code in GATED_CODE.values() and code != "not_found" and endpoint.kind in ("gated", "relay"):
            # Every refusal the gate gives is audited with the code the caller was given.
            last = AuditEvent.objects.filter(action="download.refused").order_by("-id").first()
            if refusals_after != refusals_before + 1 or (last.data["code"] != code):
                failures.append(f"{credential}: the refusal {code} was not audited with its code")
        checked += 1
        if state_after != state_before or endpoint.name == "lab-invite":
            _reset(world)
    assert checked
    return failures


def _filled(value, values):
    if isinstance(value, str):
        return value.format(**values)
    return [_filled(v, values) for v in value] if isinstance(value, list) else value


def _state(world, endpoint: Endpoint) -> tuple[tuple, int, int]:
    """(what a reviewer's or release manager's action, allowed or not, could change; the download events; the
    audited download refusals), in one query (it runs twice for each of the matrix's calls). What could change: the
    requests' states, the grant's revocation, flaw reports; for the advisory endpoints also the advisories (the
    draft's state, new ones, withdrawn revisions) and whether the victim acknowledged the one they were told of."""
    parts = [
        ("status", AccessRequest, "id = %s", [world.victim_request.pk]),
        ("revoked_at", Grant, "id = %s", [world.victim_grant.pk]),
        ("status", AccessRequest, "id = %s", [world.lab_request.pk]),
        ("status", FlawReport, "id = %s", [world.victim_flaw.pk]),
        ("count(*)", FlawReport, "", []),
        ("count(*)", FlawReportEntry, "", []),
    ]
    if endpoint.kind.startswith("advisory_"):
        parts += [
            ("count(*)", Advisory, "", []),
            ("status", Advisory, "id = %s", [world.draft.pk]),
            ("count(*)", RevisionWithdrawal, "", []),
            (
                "count(*)",
                AdvisoryRecipient,
                "user_id = %s AND acknowledged_at IS NOT NULL",
                [world.victim_grant.user_id],
            ),
        ]
    parts += [("count(*)", DownloadEvent, "", []), ("count(*)", AuditEvent, "action = 'download.refused'", [])]
    # Column and table names are the models' own; every value is a parameter.
    selects = [
        f"(SELECT {column} FROM {connection.ops.quote_name(model._meta.db_table)}{' WHERE ' + where if where else ''})"  # noqa: S608
        for column, model, where, _params in parts
    ]
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(selects), [p for *_, params in parts for p in params])
        row = cursor.fetchone()
    return tuple(row[:-2]), row[-2], row[-1]


def _reset(world):
    """Undo a permitted reviewer action so the next credential meets the same world."""
    AccessRequest.objects.filter(pk__in=[world.victim_request.pk, world.lab_request.pk]).update(
        status="pending", decided_at=None
    )
    Grant.objects.filter(request__pk__in=[world.victim_request.pk, world.lab_request.pk]).delete()
    Grant.objects.filter(pk=world.victim_grant.pk).update(revoked_at=None, revoke_reason="")
    LabInvitation.objects.filter(email="new@uni.example").delete()
    FlawReport.objects.exclude(pk=world.victim_flaw.pk).delete()
    FlawReport.objects.filter(pk=world.victim_flaw.pk).update(status="received", triaged_at=None)
    FlawReportEntry.objects.filter(report=world.victim_flaw).exclude(to_status="received").delete()
    Advisory.objects.exclude(pk__in=[world.embargoed.pk, world.draft.pk]).delete()
    AdvisoryRecipient.objects.filter(advisory=world.draft).delete()
    Advisory.objects.filter(pk=world.draft.pk).update(
        status="draft", year=None, number=None, identifier="", published_at=None, published_by=None
    )


# --- Signed URLs ----------------------------------------------------------------------------------


@pytest.fixture
def signed(local_storage, live_server, settings):
    settings.SITE_URL = live_server.url
    release = ReleaseFactory(repo_id="facebook/opt-175b", access="gated")
    file = add_file(release, SHARD, b"secret weights")
    add_file(release, "checkpoint_last-model_part-0-shard1.pt", b"other shard")
    return file


def _parts(url):
    prefix, rest = url.split("/storage/", 1)
    expires, signature, key = rest.split("/", 2)
    return prefix, expires, signature, key


@pytest.mark.django_db(transaction=True)
def test_a_valid_signed_url_works(signed):
    url = get_storage().signed_url(signed.storage_key, filename=SHARD, ttl=60)
    assert requests.get(url).content == b"secret weights"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "attack",
    ["tampered_signature", "changed_key", "changed_expiry", "truncated_signature", "no_signature", "traversal"],
)
def test_signed_url_attacks_are_refused(signed, attack):
    prefix, expires, signature, key = _parts(get_storage().signed_url(signed.storage_key, filename=SHARD, ttl=60))
    if attack == "tampered_signature":
        signature = ("0" if signature[0] != "0" else "1") + signature[1:]
    elif attack == "changed_key":
        key = key.replace("shard0", "shard1")
    elif attack == "changed_expiry":
        expires = str(int(expires) + 3600)
    elif attack == "truncated_signature":
        signature = signature[:10]
    elif attack == "no_signature":
        signature = "x"
    elif attack == "traversal":
        key = "../" + key
    response = requests.get(f"{prefix}/storage/{expires}/{signature}/{key}")
    assert response.status_code in (403, 404)
    assert response.status_code == 403 or attack == "traversal"
    assert response.content != b"secret weights"


@pytest.mark.django_db(transaction=True)
def test_an_expired_signed_url_is_refused(signed):
    url = get_storage().signed_url(signed.storage_key, filename=SHARD, ttl=1)
    time.sleep(2.1)
    response = requests.get(url)
    assert response.status_code == 403 and response.json()["code"] == "invalid_signature"


@pytest.mark.django_db(transaction=True)
def test_after_revocation_issued_urls_die_at_their_ttl_and_relays_at_once(signed, settings, live_server):
    reviewer = UserFactory()
    services.reviewer_add(actor=services.command_actor("add_reviewer"), user=reviewer)
    alice = UserFactory()
    grant = grant_for(alice, signed.release, reviewer)
    settings.SIGNED_URL_TTL = 2
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_secret(alice, 't')}")
    direct = client.get(f"/api/v1/models/facebook/opt-175b/files/{SHARD}")["Location"]
    wget_list = client.get("/api/v1/models/facebook/opt-175b/manifest?format=wget").content.decode().split()
    direct, wget_list = (
        direct.replace("http://testserver", live_server.url),
        [u.replace("http://testserver", live_server.url) for u in wget_list],
    )
    services.grant_revoke(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True), grant=grant, reason="Breach."
    )
    # The portal refuses at once ...
    assert client.get(f"/api/v1/models/facebook/opt-175b/files/{SHARD}").status_code == 403
    # ... an already issued storage URL works until its TTL (the documented window) and not after.
    assert requests.get(direct).status_code == 200
    time.sleep(2.5)
    assert requests.get(direct).status_code == 403
    for url in wget_list:
        assert requests.get(url).status_code == 403


# --- Guessed ids ----------------------------------------------------------------------------------


GUESSES = ["1", "2", "00000000000000000000000000000000", "ffffffffffffffffffffffffffffffff", "../1", "%00"]


@pytest.mark.parametrize("guess", GUESSES)
@pytest.mark.parametrize(
    "template",
    [
        "/api/v1/access-requests/{}",
        "/api/v1/access-requests/{}/withdraw",
        "/api/v1/review/access-requests/{}/approve",
        "/api/v1/review/grants/{}/revoke",
        "/api/v1/flaw-reports/{}",
        "/api/v1/review/flaw-reports/{}/triage",
        "/flaw-reports/{}/",
        "/api/v1/advisories/{}",
        "/api/v1/advisories/{}/acknowledge",
        "/advisories/{}/",
        "/review/flaw-reports/{}/",
        "/requests/{}/",
        "/grants/{}/",
        "/grants/{}/batch.json",
        "/grants/{}/status",
        "/review/requests/{}/",
        "/review/grants/{}/",
        "/tokens/{}/revoke",
    ],
)
def test_guessed_ids_are_not_found(local_storage, template, guess):
    reviewer = UserFactory()
    services.reviewer_add(actor=services.command_actor("add_reviewer"), user=reviewer)
    release = ReleaseFactory(access="gated")
    owner = UserFactory()
    grant_for(owner, release, reviewer)
    client = APIClient(enforce_csrf_checks=False)
    login_recently(client, reviewer)  # even a reviewer cannot reach objects by guessing
    url = template.format(guess)
    method = "post" if template.endswith(("withdraw", "approve", "revoke", "triage", "acknowledge")) else "get"
    response = getattr(client, method)(url, {"reason": "x", "status": "triaged"}, format="json")
    assert response.status_code == 404
    assert Grant.objects.filter(revoked_at__isnull=False).count() == 0


def test_a_nul_byte_in_a_query_is_a_clean_400(client, local_storage):
    reviewer = UserFactory()
    services.reviewer_add(actor=services.command_actor("add_reviewer"), user=reviewer)
    client.force_login(reviewer)
    assert client.get("/review/?search=a%00b").status_code == 400
    response = client.get("/api/v1/models?page=%00")
    assert (response.status_code, response.json()["code"]) == (400, "invalid")
