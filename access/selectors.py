"""Reads. Every entry point (web, API, Hugging Face-compatible endpoints) asks these functions."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache as django_cache
from django.db.models import Count, F, Min, Prefetch, Q, QuerySet, Sum
from django.urls import reverse
from django.utils import timezone

from . import cache, stats
from .models import (
    AccessQuestion,
    AccessRequest,
    ApiToken,
    Grant,
    Lab,
    LabMembership,
    LabSeat,
    ModelFile,
    ModelRelease,
    ReleaseMirror,
    ReleaseRevision,
    RequestAnswer,
    User,
    WebhookDelivery,
)
from .storage import Location, UnknownMirror, locations

MAIN = "main"
REVISION_RE = re.compile(r"^[0-9a-f]{40}$")


def release_list(*, user: User | None = None) -> QuerySet[ModelRelease]:
    in_main = Q(all_files__revision_id=F("main_revision_id"))
    qs = (
        ModelRelease.objects.select_related("license")
        .annotate(file_count=Count("all_files", filter=in_main), total_size=Sum("all_files__size", filter=in_main))
        .order_by("parameters", "repo_id")
    )
    if user is not None and user.is_authenticated and user.has_perm("access.review_accessrequest"):
        return qs
    return qs.filter(published=True)


def release_get(*, repo_id: str, user: User | None = None, with_totals: bool = False) -> ModelRelease | None:
    """One release by repo id. File totals are summed only when asked: the download hot path needs the row
    alone (kept by access.cache while published), and the review permission is looked up only for an
    unpublished release."""
    if with_totals:
        return release_list(user=user).filter(repo_id=repo_id).first()
    key = ("release", repo_id)
    release = cache.get(key)
    if release is None:
        release = ModelRelease.objects.select_related("license").filter(repo_id=repo_id).first()
        if release is not None and release.published:
            cache.put(key, release)
    if release is None or (not release.published and not is_reviewer(user)):
        return None
    return release


def release_files(*, release: ModelRelease, revision: ReleaseRevision | None = None) -> QuerySet[ModelFile]:
    """The files of a revision, `main` when none is named."""
    return (revision.files if revision is not None else release.files).order_by("path")


def release_revision(*, release: ModelRelease, revision: str | None) -> ReleaseRevision | bool | None:
    """The published revision a caller names: None for `main` (or nothing named: the release row already says
    what main is), the revision for its 40-hex id, False when there is no such revision."""
    if not revision or revision == MAIN:
        return None
    if not REVISION_RE.match(revision):
        return False
    found = ReleaseRevision.objects.filter(release=release, sha=revision, published_at__isnull=False).first()
    if found is None:
        return False
    return None if found.pk == release.main_revision_id else found


def release_revisions(*, release: ModelRelease) -> QuerySet[ReleaseRevision]:
    return release.revisions.filter(published_at__isnull=False).annotate(file_count=Count("files")).order_by("-number")


def release_locations(*, release: ModelRelease) -> list[Location]:
    """Where the release's files may be fetched, in the default order: the primary storage, and every
    configured mirror verified for the release's current revision. Without mirrors, no query."""
    configured = locations()
    if len(configured) == 1:
        return configured
    enabled = set(
        ReleaseMirror.objects.filter(
            release=release, status=ReleaseMirror.Status.ENABLED, revision=release.revision
        ).values_list("mirror", flat=True)
    )
    return [loc for loc in configured if loc.primary or loc.name in enabled]


def release_location(*, release: ModelRelease, preferred: str | None = None) -> Location:
    """The location one file is fetched from: the preferred one when it serves the release, else the first in
    the default order that does. Raises UnknownMirror for a name that is not configured at all."""
    configured = {loc.name: loc for loc in locations()}
    if preferred and preferred not in configured:
        raise UnknownMirror(preferred)
    choice = configured[preferred] if preferred else next(iter(configured.values()))
    if choice.primary:
        return choice  # always serves: no query on the download path
    enabled = release_locations(release=release)
    return next((loc for loc in enabled if loc.name == choice.name), enabled[0])


UNSAFE_PATH = re.compile(r"[\x00-\x1f\x7f\\]")


def clean_file_path(path: str) -> str | None:
    """The path as stored, or None for anything that could escape the release or a manifest line: `..` or `.`
    segments, empty segments, absolute paths, backslashes, NUL and other control characters."""
    if not path or UNSAFE_PATH.search(path) or any(part in ("", ".", "..") for part in path.split("/")):
        return None
    return path


def release_file_get(*, release: ModelRelease, path: str, revision: ReleaseRevision | None = None) -> ModelFile | None:
    clean = clean_file_path(path)
    if clean is None:
        return None
    if revision is not None:
        return release_files(release=release, revision=revision).filter(path=clean).first()
    key = ("file", release.repo_id, clean)
    file = cache.get(key)
    if file is None:
        file = release_files(release=release).filter(path=clean).first()
        if file is not None and release.published:
            file.release = release
            cache.put(key, file)
            _cache_release_files(release)
    return file


# A release's main-revision files are read into access.cache all at once when one of them is first asked for
# (OPT-175B's 992 shards in one query instead of one each, per process and after each change); a release with
# more files than this is cached file by file.
CACHED_RELEASE_FILES = 5000


def _cache_release_files(release: ModelRelease) -> None:
    marker = ("release-files", release.repo_id)
    if cache.current_version() is None or cache.get(marker) is not None:
        return  # nothing is cached (no shared Redis), or they are already
    files = list(release_files(release=release)[: CACHED_RELEASE_FILES + 1])
    if len(files) <= CACHED_RELEASE_FILES:
        for file in files:
            file.release = release
            cache.put(("file", release.repo_id, file.path), file)
    cache.put(marker, True)


def file_get(*, repo_id: str, path: str, user: User | None = None) -> ModelFile | None:
    """A file of a release's main revision with its release, in one query (none while access.cache holds it):
    the per-file download path."""
    clean = clean_file_path(path)
    if clean is None:
        return None
    key = ("file", repo_id, clean)
    file = cache.get(key)
    if file is None:
        file = (
            ModelFile.objects.select_related("release")
            .filter(release__repo_id=repo_id, path=clean, revision_id=F("release__main_revision_id"))
            .first()
        )
        if file is not None and file.release.published:
            cache.put(key, file)
            _cache_release_files(file.release)
    if file is None or (not file.release.published and not is_reviewer(user)):
        return None
    return file


def rejection_cooldown_ends(*, user: User, release: ModelRelease, lab: Lab | None = None) -> datetime | None:
    """Until when a rejected applicant (or lab) must wait to apply again (REJECTION_COOLDOWN_DAYS); None when
    they may."""
    mine = {"lab": lab} if lab is not None else {"applicant": user, "lab__isnull": True}
    last = (
        AccessRequest.objects.filter(release=release, status=AccessRequest.Status.REJECTED, **mine)
        .order_by("-decided_at")
        .first()
    )
    if last is None or last.decided_at is None:
        return None
    ends = last.decided_at + timedelta(days=settings.REJECTION_COOLDOWN_DAYS)
    return ends if ends > timezone.now() else None


def apply_url(release: ModelRelease) -> str:
    """Absolute, because scripts show it to people in a terminal."""
    return settings.SITE_URL + reverse("release-detail", kwargs={"repo_id": release.repo_id}) + "#request-access"


def user_active_grant(*, user: User, release: ModelRelease, cached_only: bool = False) -> Grant | None:
    key = ("grant", user.pk, release.pk)
    grant = cache.get(key)
    if grant is not None and grant.is_active:  # expiry is a time, checked now; revocation bumps the version
        return grant
    if cached_only:
        return None
    grant = Grant.objects.active().filter(user=user, release=release, lab__isnull=True).order_by("-expires_at").first()
    cache.put(key, grant)
    return grant


def user_lab_access(
    *, user: User, release: ModelRelease, grant: Grant | None = None
) -> list[tuple[Grant, LabSeat | None]]:
    """The lab grants for this release of every lab the user is a current member of (active ones first, newest
    first), each with the user's seat on it, or None. Two queries; only asked when there is no individual grant."""
    grants = Grant.objects.filter(
        release=release, lab__memberships__user=user, lab__memberships__left_at__isnull=True
    ).select_related("lab", "request")
    if grant is not None:
        grants = grants.filter(pk=grant.pk)
    grants = list(grants.order_by("-issued_at")[:20])
    if not grants:
        return []
    grants.sort(key=lambda g: not g.is_active)
    return with_seats(user=user, grants=grants)


def with_seats(*, user: User, grants: list[Grant]) -> list[tuple[Grant, LabSeat | None]]:
    """Each lab grant with this user's seat on it, or None (one query for all of them)."""
    seats = {seat.grant_id: seat for seat in LabSeat.objects.filter(user=user, grant__in=grants)}
    return [(g, seats.get(g.pk)) for g in grants]


def cached_lab_seat(*, user: User, release: ModelRelease) -> tuple[Grant, LabSeat] | None:
    pair = cache.get(("labseat", user.pk, release.pk))
    if pair is not None and pair[0].is_active:
        return pair
    return None


def remember_lab_seat(*, user: User, release: ModelRelease, grant: Grant, seat: LabSeat) -> None:
    cache.put(("labseat", user.pk, release.pk), (grant, seat))


def user_labs(*, user: User) -> QuerySet[LabMembership]:
    return LabMembership.objects.current().filter(user=user).select_related("lab").order_by("lab__name")


def lab_get(*, user: User, public_id: str) -> Lab | None:
    """A lab its current members see; reviewers see every lab."""
    labs = Lab.objects.all()
    if not is_reviewer(user):
        labs = labs.filter(memberships__user=user, memberships__left_at__isnull=True)
    return labs.filter(public_id=public_id).first() if isinstance(public_id, str) else None


def lab_members(*, lab: Lab) -> QuerySet[LabMembership]:
    return LabMembership.objects.current().filter(lab=lab).select_related("user").order_by("joined_at", "id")


def member_lab_grants(*, user: User) -> list[tuple[Grant, LabSeat | None]]:
    """The lab grants a user's current labs hold, with the user's seat on each."""
    grants = (
        Grant.objects.filter(lab__memberships__user=user, lab__memberships__left_at__isnull=True)
        .select_related("lab", "release", "request")
        .order_by("-issued_at")
    )
    return with_seats(user=user, grants=list(grants))


def lab_grants(*, lab: Lab, user: User) -> list[tuple[Grant, LabSeat | None]]:
    """One lab's grants, newest first, with this user's seat on each."""
    grants = Grant.objects.filter(lab=lab).select_related("lab", "release", "request").order_by("-issued_at")
    return with_seats(user=user, grants=list(grants))


def member_lab_grant_get(*, user: User, public_id: str) -> tuple[Grant, LabSeat | None] | None:
    grant = (
        Grant.objects.filter(public_id=public_id, lab__memberships__user=user, lab__memberships__left_at__isnull=True)
        .select_related("lab", "release__license", "request")
        .first()
    )
    if grant is None:
        return None
    return grant, LabSeat.objects.filter(grant=grant, user=user).first()


def lab_grant_url(grant: Grant) -> str:
    return settings.SITE_URL + reverse("lab-grant", kwargs={"public_id": grant.public_id})


def license_accept_url(grant: Grant) -> str:
    return settings.SITE_URL + reverse("grant-license", kwargs={"public_id": grant.public_id})


def release_questions(*, release: ModelRelease) -> list[AccessQuestion]:
    """The current questions of a release's access form, in the order applicants see them."""
    return list(AccessQuestion.objects.filter(release=release, retired_at__isnull=True).order_by("position", "id"))


def request_answers(*, access_request: AccessRequest) -> list[RequestAnswer]:
    """The answers to the release's own questions, each with the version of the question it answered."""
    return list(access_request.answers.select_related("question").order_by("question__position", "question_id"))


def with_answers(queryset: QuerySet[AccessRequest]) -> QuerySet[AccessRequest]:
    """Requests with their answers and attachments loaded in two more queries, for lists and exports."""
    return queryset.prefetch_related(
        Prefetch("answers", queryset=RequestAnswer.objects.select_related("question")), "attachments"
    )


def request_url(access_request: AccessRequest) -> str:
    return settings.SITE_URL + reverse("request-detail", kwargs={"public_id": access_request.public_id})


def token_lookup(*, secret_hash: str) -> ApiToken | None:
    """The token with its user; access.cache keeps it until a token, user or grant changes anywhere."""
    key = ("token", secret_hash)
    token = cache.get(key)
    if token is None:
        token = ApiToken.objects.select_related("user").filter(secret_hash=secret_hash).first()
        cache.put(key, token)
    return token


def user_requests(*, user: User) -> QuerySet[AccessRequest]:
    return AccessRequest.objects.filter(applicant=user).select_related("release").order_by("-created_at")


def user_request_get(*, user: User, public_id: str) -> AccessRequest | None:
    return user_requests(user=user).filter(public_id=public_id).first()


def user_grants(*, user: User) -> QuerySet[Grant]:
    return Grant.objects.filter(user=user, lab__isnull=True).select_related("release").order_by("-issued_at")


def user_grant_get(*, user: User, public_id: str) -> Grant | None:
    return user_grants(user=user).filter(public_id=public_id).first()


def is_reviewer(user) -> bool:
    return bool(user and user.is_authenticated and user.is_active and user.has_perm("access.review_accessrequest"))


def is_release_manager(user) -> bool:
    return bool(user and user.is_authenticated and user.is_active and user.has_perm("access.manage_release"))


def review_queue(
    *,
    status: str | None = "pending",
    release: str | None = None,
    country: str | None = None,
    organization_type: str | None = None,
    search: str | None = None,
) -> QuerySet[AccessRequest]:
    qs = AccessRequest.objects.select_related("release", "applicant", "lab").order_by("created_at", "id")
    # Drafts are not submitted yet: they are not the reviewers' unless asked for by status.
    qs = qs.filter(status=status) if status else qs.exclude(status=AccessRequest.Status.DRAFT)
    if release:
        qs = qs.filter(release__repo_id=release)
    if country:
        qs = qs.filter(country=country)
    if organization_type:
        qs = qs.filter(organization_type=organization_type)
    if search:
        qs = qs.filter(
            Q(full_name__icontains=search)
            | Q(email__icontains=search)
            | Q(affiliation__icontains=search)
            | Q(answers_text__icontains=search)
        )
    return qs


TYPICAL_WAIT_DAYS = 90


def typical_wait(release: ModelRelease) -> timedelta | None:
    """The median time from application to decision for this release over the last 90 days (None without
    decisions). Kept for five minutes: pending applicants ask on every refused download."""
    key = f"typical-wait:{release.pk}"
    cached = django_cache.get(key)
    if cached is None:
        since = timezone.now() - timedelta(days=TYPICAL_WAIT_DAYS)
        found = stats.decision_percentiles(stats.decisions(release).filter(decided_at__gte=since), (), (0.5,))
        cached = found[()]["p50"] if found else -1
        django_cache.set(key, cached, 300)
    return timedelta(seconds=cached) if cached >= 0 else None


def queue_position(access_request: AccessRequest) -> int | None:
    """1 for the request a reviewer of its release reaches first (oldest pending first, as the queue orders);
    None unless it waits for a reviewer."""
    if access_request.status != AccessRequest.Status.PENDING:
        return None
    ahead = AccessRequest.objects.filter(
        Q(created_at__lt=access_request.created_at) | Q(created_at=access_request.created_at, pk__lt=access_request.pk),
        release_id=access_request.release_id,
        status=AccessRequest.Status.PENDING,
    ).count()
    return ahead + 1


def needs_info_closes_on(access_request: AccessRequest):
    """When an unanswered question closes the request (services.reminders): NEEDS_INFO_CLOSE_DAYS after the
    reminder, which comes NEEDS_INFO_REMINDER_DAYS after the question. None unless it waits on the applicant."""
    if access_request.status != AccessRequest.Status.NEEDS_INFO or access_request.info_requested_at is None:
        return None
    reminded = access_request.info_reminded_at or access_request.info_requested_at + timedelta(
        days=settings.NEEDS_INFO_REMINDER_DAYS
    )
    return reminded + timedelta(days=settings.NEEDS_INFO_CLOSE_DAYS)


def pending_count() -> int:
    """Requests waiting for a reviewer, for the navigation: one COUNT over the queue index."""
    return AccessRequest.objects.filter(status=AccessRequest.Status.PENDING).count()


def requested_lab_seats() -> QuerySet[LabSeat]:
    """Lab members asking for a place on their lab's grant (beyond its cap, or not named): reviewers decide."""
    return (
        LabSeat.objects.filter(status=LabSeat.Status.REQUESTED, grant__revoked_at__isnull=True)
        .select_related("user", "grant__lab", "grant__release")
        .order_by("created_at", "id")
    )


def admin_labs(*, user) -> list[Lab]:
    """The labs this user may apply for (as their owner or an admin)."""
    if user is None or not user.is_authenticated:
        return []
    return [m.lab for m in user_labs(user=user) if m.role in (LabMembership.Role.OWNER, LabMembership.Role.ADMIN)]


# A delivery whose time came this long ago and that no webhook worker has taken: nothing consumes the webhooks
# queue, or far too little (a lost message is sent again by the sweep within about 90 s).
WEBHOOK_STALLED_AFTER_SECONDS = 300


def webhook_queue_state(*, now: datetime | None = None) -> dict:
    """What waits for the webhook workers: deliveries not yet delivered to switched-on endpoints, and how long
    the oldest one whose time has come has been waiting (`stalled` past WEBHOOK_STALLED_AFTER_SECONDS). Read
    from the database, so it holds whatever the broker: a queue nothing consumes shows as deliveries that wait."""
    now = now or timezone.now()
    waiting = WebhookDelivery.objects.filter(
        status__in=[WebhookDelivery.Status.PENDING, WebhookDelivery.Status.RETRYING], endpoint__active=True
    )
    oldest = waiting.filter(next_attempt_at__lte=now).aggregate(t=Min("next_attempt_at"))["t"]
    oldest_due = max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
    return {
        "waiting": waiting.count(),
        "oldest_due_seconds": round(oldest_due, 1),
        "stalled": oldest_due > WEBHOOK_STALLED_AFTER_SECONDS,
    }
