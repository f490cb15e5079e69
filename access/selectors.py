"""Reads. Every entry point (web, API, Hugging Face-compatible endpoints) asks these functions."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count, Q, QuerySet, Sum
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from .models import AccessRequest, ApiToken, Grant, ModelFile, ModelRelease, UrlBatch, User


@dataclass(frozen=True)
class AccessDecision:
    """Whether a user may download a release's files, and if not, the code that says what to do next."""

    allowed: bool
    code: str
    detail: str
    grant: Grant | None = None

    @property
    def status(self) -> int:
        if self.allowed:
            return 200
        return 401 if self.code == "not_authenticated" else 403


def release_list(*, user: User | None = None) -> QuerySet[ModelRelease]:
    qs = (
        ModelRelease.objects.select_related("license")
        .annotate(file_count=Count("files"), total_size=Sum("files__size"))
        .order_by("parameters", "repo_id")
    )
    if user is not None and user.is_authenticated and user.has_perm("access.review_accessrequest"):
        return qs
    return qs.filter(published=True)


def release_get(*, repo_id: str, user: User | None = None, with_totals: bool = False) -> ModelRelease | None:
    """One release by repo id. File totals are summed only when asked: the download hot path needs the row
    alone, and the review permission is looked up only for an unpublished release."""
    if with_totals:
        return release_list(user=user).filter(repo_id=repo_id).first()
    release = ModelRelease.objects.select_related("license").filter(repo_id=repo_id).first()
    if release is None or (not release.published and not is_reviewer(user)):
        return None
    return release


def release_files(*, release: ModelRelease) -> QuerySet[ModelFile]:
    return release.files.order_by("path")


def clean_file_path(path: str) -> str | None:
    """The path as stored, or None for anything that could escape the release or a manifest line: `..` or `.`
    segments, empty segments, absolute paths, backslashes, NUL and other control characters."""
    if not path or "\\" in path or any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
        return None
    if any(part in ("", ".", "..") for part in path.split("/")):
        return None
    return path


def release_file_get(*, release: ModelRelease, path: str) -> ModelFile | None:
    clean = clean_file_path(path)
    if clean is None:
        return None
    return release.files.filter(path=clean).first()


def file_get(*, repo_id: str, path: str, user: User | None = None) -> ModelFile | None:
    """A release's file with its release, in one query: the per-file download path."""
    clean = clean_file_path(path)
    if clean is None:
        return None
    file = ModelFile.objects.select_related("release").filter(release__repo_id=repo_id, path=clean).first()
    if file is None or (not file.release.published and not is_reviewer(user)):
        return None
    return file


def apply_url(release: ModelRelease) -> str:
    """Absolute, because scripts show it to people in a terminal."""
    return settings.SITE_URL + reverse("release-detail", kwargs={"repo_id": release.repo_id}) + "#request-access"


def user_active_grant(*, user: User, release: ModelRelease) -> Grant | None:
    now = timezone.now()
    return (
        Grant.objects.filter(user=user, release=release, revoked_at__isnull=True, expires_at__gt=now)
        .order_by("-expires_at")
        .first()
    )


def release_access_decision(*, user: User | None, release: ModelRelease) -> AccessDecision:
    """The one rule: open releases for anyone; gated releases only with an active (issued, unexpired,
    unrevoked) grant. A refusal names the state the user is in, so the message can say what to do next."""
    if not release.is_gated:
        return AccessDecision(True, "open", "")
    if user is None or not user.is_authenticated:
        return AccessDecision(
            False,
            "not_authenticated",
            _("%(repo)s is gated. Sign in or send 'Authorization: Bearer <token>'; to get access, apply at %(url)s.")
            % {"repo": release.repo_id, "url": apply_url(release)},
        )
    grant = user_active_grant(user=user, release=release)
    if grant is not None:
        return AccessDecision(True, "granted", "", grant)
    open_request = (
        AccessRequest.objects.filter(applicant=user, release=release, status__in=AccessRequest.OPEN_STATUSES)
        .order_by("-created_at")
        .first()
    )
    if open_request is not None:
        if open_request.status == AccessRequest.Status.NEEDS_INFO:
            detail = _("Your request for %(repo)s needs more information from you: answer the reviewer at %(url)s.")
        else:
            detail = _("Your request for %(repo)s is pending review; you will be emailed when it is decided (%(url)s).")
        return AccessDecision(False, "pending", detail % {"repo": release.repo_id, "url": request_url(open_request)})
    last_grant = Grant.objects.filter(user=user, release=release).order_by("-issued_at").first()
    last_request = AccessRequest.objects.filter(applicant=user, release=release).order_by("-created_at").first()
    grant_is_newest = last_grant is not None and (
        last_request is None
        or last_request.pk == last_grant.request_id
        or last_request.created_at <= last_grant.issued_at
    )
    if grant_is_newest:
        if last_grant.revoked_at is not None:
            return AccessDecision(
                False,
                "revoked",
                _("Your access to %(repo)s was revoked: %(reason)s")
                % {"repo": release.repo_id, "reason": last_grant.revoke_reason or _("no reason given")},
                last_grant,
            )
        return AccessDecision(
            False,
            "expired",
            _("Your access to %(repo)s expired on %(date)s; ask for a renewal at %(url)s.")
            % {"repo": release.repo_id, "date": f"{last_grant.expires_at:%Y-%m-%d}", "url": apply_url(release)},
            last_grant,
        )
    if last_request is not None and last_request.status == AccessRequest.Status.REJECTED:
        return AccessDecision(
            False,
            "rejected",
            _("Your request for %(repo)s was rejected: %(reason)s")
            % {"repo": release.repo_id, "reason": last_request.decision_reason or _("no reason given")},
        )
    return AccessDecision(
        False,
        "gated",
        _("%(repo)s is gated: apply for access at %(url)s; downloads work once a reviewer approves.")
        % {"repo": release.repo_id, "url": apply_url(release)},
    )


def request_url(access_request: AccessRequest) -> str:
    return settings.SITE_URL + reverse("request-detail", kwargs={"public_id": access_request.public_id})


def token_lookup(*, secret_hash: str) -> ApiToken | None:
    return ApiToken.objects.select_related("user").filter(secret_hash=secret_hash).first()


def user_requests(*, user: User) -> QuerySet[AccessRequest]:
    return AccessRequest.objects.filter(applicant=user).select_related("release").order_by("-created_at")


def user_request_get(*, user: User, public_id: str) -> AccessRequest | None:
    return user_requests(user=user).filter(public_id=public_id).first()


def user_grants(*, user: User) -> QuerySet[Grant]:
    return Grant.objects.filter(user=user).select_related("release").order_by("-issued_at")


def user_grant_get(*, user: User, public_id: str) -> Grant | None:
    return user_grants(user=user).filter(public_id=public_id).first()


def grant_current_batch(*, grant: Grant) -> UrlBatch | None:
    return grant.batches.filter(status=UrlBatch.Status.READY).order_by("-created_at").first()


def is_reviewer(user) -> bool:
    return bool(user and user.is_authenticated and user.is_active and user.has_perm("access.review_accessrequest"))


def review_queue(
    *,
    status: str | None = "pending",
    release: str | None = None,
    country: str | None = None,
    organization_type: str | None = None,
    search: str | None = None,
) -> QuerySet[AccessRequest]:
    qs = AccessRequest.objects.select_related("release", "applicant").order_by("created_at", "id")
    if status:
        qs = qs.filter(status=status)
    if release:
        qs = qs.filter(release__repo_id=release)
    if country:
        qs = qs.filter(country=country)
    if organization_type:
        qs = qs.filter(organization_type=organization_type)
    if search:
        qs = qs.filter(Q(full_name__icontains=search) | Q(email__icontains=search) | Q(affiliation__icontains=search))
    return qs
