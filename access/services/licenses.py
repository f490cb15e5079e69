"""License versions and re-consent. A license is every version with one slug; a release points at its current
version, and a grant records the version its holder accepted. When a release moves to a new version, holders on
an older one are refused with `license_update` (decided in access.downloads) until they accept it here, or, for
a release that asks for it, until a reviewer approves their acceptance."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import emails
from ..audit import audit
from ..models import AccessRequest, Grant, License, ModelRelease
from ..taskbase import portal_task
from .base import Actor, NotFound, ServiceError, clean, require_license_version, require_release_manager, require_user
from .grants import grant_record_license
from .requests import request_license_review


def license_publish(
    *,
    actor: Actor,
    slug: str,
    version: str,
    title: str,
    text: str,
    summary_of_changes: str = "",
    summary_of_changes_zh_hans: str = "",
) -> License:
    """Publish a new version of a license (or the first). Versions are never edited: a change is a new one."""
    require_release_manager(actor)
    version = clean(version, field="version", multiline=False, max_length=40)
    title = clean(title, field="title", multiline=False, max_length=200)
    text = clean(text, field="text", multiline=True, max_length=200_000)
    summary = clean(summary_of_changes, field="summary_of_changes", multiline=True)
    summary_zh = clean(summary_of_changes_zh_hans, field="summary_of_changes_zh_hans", multiline=True)
    if not (version and title and text):
        raise ServiceError(_("A license version needs a version, a title and its text."), "invalid")
    try:
        with transaction.atomic():
            license_obj = License.objects.create(
                slug=slug,
                version=version,
                title=title,
                text=text,
                summary_of_changes=summary,
                summary_of_changes_zh_hans=summary_zh,
            )
            audit(actor=actor, action="license.published", target=license_obj, data={"slug": slug, "version": version})
    except IntegrityError:
        raise ServiceError(
            _("Version %(v)s of %(slug)s exists already; publish a new version instead.")
            % {"v": version, "slug": slug},
            "license_exists",
            field="version",
        ) from None
    return license_obj


@dataclass
class Acceptance:
    grant: Grant
    # Set when the release has a reviewer approve the acceptance: the request that waits for them.
    review_request: AccessRequest | None = None


def grant_accept_license(
    *, actor: Actor, grant: Grant, version: str, accept_license: bool, noncommercial_attested: bool
) -> Acceptance:
    """The holder accepts the release's current license version (the one they were shown: `version`).
    Recorded on the grant with the time and address; idempotent. When the release asks for a new review, this
    files a request a reviewer decides instead, and downloads stay refused until it is approved."""
    user = require_user(actor)
    if grant.user_id != user.pk:
        raise NotFound(_("Not found."))
    if not accept_license or not noncommercial_attested:
        raise ServiceError(_("You must accept the license and attest non-commercial use."), "license_not_accepted")
    with transaction.atomic():
        locked = (
            Grant.objects.select_for_update(of=("self",)).select_related("release__license", "request").get(pk=grant.pk)
        )
        release = locked.release
        current = release.license
        if not locked.is_active:
            raise ServiceError(_("This grant is no longer active."), "grant_inactive")
        require_license_version(release, version)
        if locked.license_id == current.pk:
            return Acceptance(locked)
        if release.license_update_mode == ModelRelease.LicenseUpdateMode.REVIEW:
            waiting = locked.license_reviews.filter(status__in=AccessRequest.OPEN_STATUSES, license=current).first()
            if waiting is None:
                waiting = request_license_review(actor=actor, grant=locked)
            return Acceptance(locked, waiting)
        grant_record_license(actor=actor, grant=locked, license=current, accepted_at=timezone.now(), ip=actor.ip)
    return Acceptance(locked)


def license_update_holders(*, release: ModelRelease):
    """Active grants of the release whose holders accepted another version than the current one."""
    return (
        Grant.objects.active()
        .filter(release=release)
        .exclude(license_id=release.license_id)
        .select_related("user", "license", "release")
    )


@portal_task("access.tasks.license_update_notify")
def license_update_notify(release_id: int) -> int:
    """Email every holder on an older version once per version (a retried task sends nothing twice)."""
    release = ModelRelease.objects.select_related("license").filter(pk=release_id).first()
    if release is None or not release.is_gated or release.license is None:
        return 0
    sent = 0
    for grant in license_update_holders(release=release):
        sent += emails.send_once(
            dedupe_key=f"license-update:{grant.pk}:{release.license_id}",
            template="license_update",
            to=grant.user.email,
            context={"grant": grant, "release": release, "license": release.license},
        )
    return sent
