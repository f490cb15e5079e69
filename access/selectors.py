"""Reads. Every entry point (web, API, Hugging Face-compatible endpoints) asks these functions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.cache import cache as django_cache
from django.db.models import Count, F, Min, Prefetch, Q, QuerySet, Sum
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from . import footprint, paths, stats
from .gate import loader
from .models import (
    AccessQuestion,
    AccessRequest,
    ApiToken,
    DocumentVersion,
    FlawReport,
    Grant,
    Lab,
    LabMembership,
    LabSeat,
    License,
    ModelFile,
    ModelRelease,
    ReleaseDocument,
    ReleaseMirror,
    ReleaseRevision,
    RequestAnswer,
    User,
    WebhookDelivery,
)
from .storage import Location, UnknownMirror, locations

MAIN = paths.MAIN
REVISION_RE = paths.REVISION_RE


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
    """One release by repo id (an unpublished one exists only for reviewers). File totals are summed only when
    asked: the download path needs the row alone, which the gate's loader keeps."""
    if with_totals:
        return release_list(user=user).filter(repo_id=repo_id).first()
    return loader.release(repo_id=repo_id, user=user)


def license_versions(*, slug: str, user: User | None = None) -> list[License]:
    """Every version of a license, newest first, when a release the reader may see is under one of them (the
    `License` rows are the only source of its text); empty otherwise."""
    versions = list(License.objects.filter(slug=slug).order_by("-published_at", "-pk"))
    releases = release_list(user=user).filter(license__in=versions)
    return versions if releases.exists() else []


def release_files(*, release: ModelRelease, revision: ReleaseRevision | None = None) -> QuerySet[ModelFile]:
    """The files of a revision, `main` when none is named."""
    return (revision.files if revision is not None else release.files).order_by("path")


@dataclass(frozen=True)
class Revision:
    """A published revision a caller names: its id, and its row unless it is main (the release row says what
    main is, so naming main costs no query)."""

    sha: str
    row: ReleaseRevision | None = None


class UnknownRevision(Exception):
    """No published revision of the release has that name."""


def release_revision(*, release: ModelRelease, revision: str | None) -> Revision:
    """The published revision a caller names: `main` (or nothing, or main's own id), or another by its 40-hex
    id. Raises UnknownRevision otherwise."""
    if not revision or revision == MAIN or (revision == release.revision and release.revision):
        return Revision(release.revision)
    if not REVISION_RE.match(revision):
        raise UnknownRevision(revision)
    found = ReleaseRevision.objects.filter(release=release, sha=revision, published_at__isnull=False).first()
    if found is None:
        raise UnknownRevision(revision)
    return Revision(release.revision) if found.pk == release.main_revision_id else Revision(found.sha, found)


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


clean_file_path = paths.clean_file_path


def release_file_get(*, release: ModelRelease, path: str, revision: ReleaseRevision | None = None) -> ModelFile | None:
    return loader.release_file(release=release, path=path, revision=revision)


def file_get(*, repo_id: str, path: str, user: User | None = None) -> ModelFile | None:
    """A file of a release's main revision with its release: the per-file download path (see the loader)."""
    return loader.main_file(repo_id=repo_id, path=path, user=user)


def rejection_cooldown_ends(*, user: User, release: ModelRelease, lab: Lab | None = None) -> datetime | None:
    """Until when a rejected applicant (or lab) must wait to apply again (REJECTION_COOLDOWN_DAYS); None when
    they may."""
    mine = {"lab": lab} if lab is not None else {"applicant": user, "lab__isnull": True}
    last = (
        AccessRequest.objects.filter(release=release, status=AccessRequest.Status.REJECTED, **mine)
        .order_by("-decided_at")
        .first()
    )
    ends = reapply_from(last) if last is not None else None
    return ends if ends is not None and ends > timezone.now() else None


def reapply_from(access_request: AccessRequest) -> datetime | None:
    """When the applicant of a rejected request may apply again (the end of REJECTION_COOLDOWN_DAYS)."""
    if access_request.status != AccessRequest.Status.REJECTED or access_request.decided_at is None:
        return None
    return access_request.decided_at + timedelta(days=settings.REJECTION_COOLDOWN_DAYS)


def reapply_text(ends: datetime) -> str:
    """The one wording of the cool-down's end, everywhere (pages, emails, refusals): a date and time in UTC."""
    return _("You may apply again from %(date)s.") % {"date": f"{ends.astimezone(UTC):%Y-%m-%d %H:%M} UTC"}


def apply_url(release: ModelRelease) -> str:
    """Absolute, because scripts show it to people in a terminal."""
    return settings.SITE_URL + reverse("release-detail", kwargs={"repo_id": release.repo_id}) + "#request-access"


def sign_in_url() -> str:
    """Absolute, as apply_url: where a holder signs in with their institution again."""
    return settings.SITE_URL + reverse("account_login")


def user_active_grant(*, user: User, release: ModelRelease) -> Grant | None:
    """The user's own active grant for the release with the latest expiry, if any."""
    return Grant.objects.active().filter(user=user, release=release, lab__isnull=True).order_by("-expires_at").first()


def with_seats(*, user: User, grants: list[Grant]) -> list[tuple[Grant, LabSeat | None]]:
    """Each lab grant with this user's seat on it, or None (one query for all of them)."""
    seats = {seat.grant_id: seat for seat in LabSeat.objects.filter(user=user, grant__in=grants)}
    return [(g, seats.get(g.pk)) for g in grants]


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


def lab_grant_url(public_id: str) -> str:
    return settings.SITE_URL + reverse("lab-grant", kwargs={"public_id": public_id})


def license_accept_url(public_id: str) -> str:
    return settings.SITE_URL + reverse("grant-license", kwargs={"public_id": public_id})


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


def request_url(public_id: str) -> str:
    return settings.SITE_URL + reverse("request-detail", kwargs={"public_id": public_id})


def token_lookup(*, secret_hash: str) -> ApiToken | None:
    """The token with its user (kept by the gate's loader until a token or account changes anywhere)."""
    return loader.token(secret_hash=secret_hash)


def user_requests(*, user: User) -> QuerySet[AccessRequest]:
    return (
        AccessRequest.objects.filter(applicant=user)
        .select_related("release", "lab")
        .prefetch_related("covered_members")
        .order_by("-created_at")
    )


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


def holds_powers(user) -> bool:
    """Staff, superusers, reviewers, release managers and signing officials: accounts never linked to an identity
    automatically."""
    return bool(
        user.is_staff
        or user.is_superuser
        or is_reviewer(user)
        or is_release_manager(user)
        or user.official_roles.filter(ended_at__isnull=True).exists()
    )


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


def typical_wait_forget(release_id: int) -> None:
    """Drop a release's kept typical wait (a decision was just recorded)."""
    django_cache.delete(f"typical-wait:{release_id}")


def typical_wait(release: ModelRelease) -> timedelta | None:
    """The median time from application to decision for this release over the last 90 days (None without
    decisions). Kept for five minutes, or until the release's next decision: pending applicants ask on every
    refused download."""
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


def labs_that_may_apply(*, user, release: ModelRelease) -> list[Lab]:
    """The labs this user may apply for that hold no active grant of the release yet."""
    labs = admin_labs(user=user)
    if not labs:
        return []
    holding = set(Grant.objects.active().filter(release=release, lab__in=labs).values_list("lab_id", flat=True))
    return [lab for lab in labs if lab.pk not in holding]


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


# --- Flaw reports ------------------------------------------------------------------------------------------


def _flaw_reports() -> QuerySet[FlawReport]:
    return FlawReport.objects.select_related("release", "reporter", "assignee", "duplicate_of", "terms")


def user_flaw_reports(*, user: User) -> QuerySet[FlawReport]:
    """The reports this account filed, newest first."""
    return _flaw_reports().filter(reporter=user).order_by("-created_at", "-id")


def flaw_report_get(*, user: User, public_id, triager: bool = False) -> FlawReport | None:
    """A report its reporter sees; with `triager` (a reviewer or release manager acting with powers), any.
    Anyone else's report does not exist for them."""
    if not isinstance(public_id, str) or not user or not user.is_authenticated:
        return None
    qs = _flaw_reports() if triager else _flaw_reports().filter(reporter=user)
    return qs.filter(public_id=public_id).first()


FLAW_QUEUE_STATUSES = ("open", "all", *FlawReport.Status.values)


def flaw_queue(
    *,
    status: str = "open",
    release: str | None = None,
    assignee: str | None = None,
    severity: str | None = None,
    user: User | None = None,
) -> QuerySet[FlawReport]:
    """The triage queue, oldest first: `status` open (received, triaged, accepted), all, or one state;
    `assignee` an email address, `me` (with `user`) or `none`; `severity` as reviewers see it (the reporter's
    until a reviewer set one)."""
    qs = _flaw_reports().order_by("created_at", "id")
    if severity:
        qs = qs.filter(Q(triage_severity=severity) | Q(triage_severity="", severity=severity))
    if status == "open":
        qs = qs.filter(status__in=FlawReport.OPEN_STATUSES)
    elif status != "all":
        qs = qs.filter(status=status)
    if release:
        qs = qs.filter(release__repo_id=release)
    if assignee == "none":
        qs = qs.filter(assignee__isnull=True)
    elif assignee == "me" and user is not None:
        qs = qs.filter(assignee=user)
    elif assignee:
        qs = qs.filter(assignee__email__iexact=assignee)
    return qs


def grant_report_history(*, grant: Grant):
    """Progress reports on this grant and on the earlier and later grants of the same holder (or lab) and release,
    newest first: what a reviewer reads before deciding a renewal."""
    from .models import ProgressReport

    same = {"grant__lab": grant.lab} if grant.lab_id else {"grant__user_id": grant.user_id, "grant__lab__isnull": True}
    return (
        ProgressReport.objects.filter(grant__release_id=grant.release_id, **same)
        .select_related("author", "renewal", "grant")
        .order_by("-created_at", "-id")
    )


# --- Release documents and what it takes to run a release ----------------------------------------------------


def document_url(*, repo_id: str, public_id: str) -> str:
    """Absolute, because scripts show it to people in a terminal."""
    return settings.SITE_URL + reverse("release-document", kwargs={"repo_id": repo_id, "public_id": public_id})


def release_documents(*, release: ModelRelease) -> list[ReleaseDocument]:
    """The release's documents, each with `current` (its newest version, with the revisions it describes) and
    `version_count`: every document is listed (a holders-only one is named to everyone, read only by holders)."""
    documents = list(
        release.documents.prefetch_related(
            Prefetch("versions", queryset=DocumentVersion.objects.prefetch_related("revisions").order_by("-number"))
        )
    )
    for document in documents:
        versions = list(document.versions.all())
        document.current = versions[0] if versions else None
        document.version_list = versions
    return [d for d in documents if d.current is not None]


def release_document(*, release: ModelRelease, public_id: str) -> ReleaseDocument | None:
    """One document of the release by id (None when it is another release's), with its versions."""
    found = next((d for d in release_documents(release=release) if d.public_id == public_id), None)
    return found


def release_footprint(*, release: ModelRelease, download_bytes: int | None = None) -> footprint.Footprint:
    """What it takes to run the release: its weights at each precision and the download of `main`."""
    if download_bytes is None:
        download_bytes = release.files.aggregate(n=Sum("size"))["n"] or 0
    return footprint.footprint(
        parameters=release.parameters, download_bytes=download_bytes, stored_dtype=release.weights_dtype
    )
