"""What a refusal says: the gate's code with the facts behind it, in the reader's language, with the next step
and where to take it (absolute URLs, because scripts show them in a terminal). Rendered after the rule has
decided, and only for refusals: an allowed download costs none of this."""

from __future__ import annotations

from django.utils.translation import gettext as _

from .. import selectors
from ..durations import wait_estimate_text
from ..models import Institution, LibraryCard, ModelRelease, SigningOfficial
from . import rule
from .rule import AccessDecision


def detail(decision: AccessDecision, release: ModelRelease) -> str:
    if decision.allowed:
        return ""
    code, grant = decision.code, decision.grant
    repo = release.repo_id
    if code == rule.NOT_FOUND:
        return _("No release named %(repo)s.") % {"repo": repo}
    if code == rule.REVISION_WITHDRAWN:
        if decision.use_instead:
            return _("This revision of %(repo)s was withdrawn; use revision %(revision)s instead.") % {
                "repo": repo,
                "revision": decision.use_instead,
            }
        return _("This revision of %(repo)s was withdrawn; the release has no revision to use instead yet.") % {
            "repo": repo
        }
    if code == rule.NOT_AUTHENTICATED:
        return _(
            "%(repo)s is gated. Sign in or send 'Authorization: Bearer <token>'; to get access, apply at %(url)s."
        ) % {"repo": repo, "url": selectors.apply_url(release)}
    if code == rule.ACCOUNT_INACTIVE:
        return _("This account is disabled.")
    if code == rule.COUNTRY_RESTRICTED:
        return _("%(repo)s is not available in %(country)s: the release restricts that country.") % {
            "repo": repo,
            "country": grant.country if grant is not None else "",
        }
    if code in (rule.CARD_REVOKED, rule.CARD_EXPIRED):
        return _card(decision, release)
    if code == rule.REVERIFY:
        return _reverify(decision, release)
    if code == rule.LICENSE_UPDATE:
        values = {
            "repo": repo,
            "version": release.license.version,
            "url": selectors.license_accept_url(grant.public_id),
        }
        if decision.awaiting_review:
            return (
                _(
                    "The license of %(repo)s changed to version %(version)s; your acceptance is waiting for a "
                    "reviewer. Downloads work again once it is approved (%(url)s)."
                )
                % values
            )
        return _("The license of %(repo)s changed to version %(version)s: accept it at %(url)s to download again.") % (
            values
        )
    if code == rule.ACKNOWLEDGE_DOCUMENTS:
        names = "; ".join(
            _("%(title)s (version %(version)d, %(url)s)")
            % {
                "title": d.title,
                "version": d.version,
                "url": selectors.document_url(repo_id=repo, public_id=d.public_id),
            }
            for d in decision.documents
        )
        return _(
            "Before downloading %(repo)s, read and acknowledge: %(documents)s. Acknowledge each on its page, or "
            "with POST /api/v1/models/%(repo)s/documents/<id>/acknowledge."
        ) % {"repo": repo, "documents": names}
    if code in (rule.LAB_LICENSE_PENDING, rule.LAB_SEAT_PENDING, rule.LAB_SEAT_REJECTED):
        return _lab(decision, release)
    if code == rule.REVOKED:
        return _("Your access to %(repo)s was revoked: %(reason)s") % {
            "repo": repo,
            "reason": grant.revoke_reason or _("no reason given"),
        }
    if code == rule.EXPIRED:
        return _("Your access to %(repo)s expired on %(date)s (UTC); ask for a renewal at %(url)s.") % {
            "repo": repo,
            "date": f"{grant.expires_at:%Y-%m-%d}",
            "url": selectors.apply_url(release),
        }
    if code == rule.PENDING:
        return _pending(decision, release)
    if code == rule.REJECTED:
        return _("Your request for %(repo)s was rejected: %(reason)s") % {
            "repo": repo,
            "reason": decision.request.decision_reason or _("no reason given"),
        }
    return _("%(repo)s is gated: apply for access at %(url)s; downloads work once a reviewer approves.") % {
        "repo": repo,
        "url": selectors.apply_url(release),
    }


def whom_to_ask(institution) -> str:
    """The signing officials of an institution, as a refusal names them (name and address)."""
    officials = SigningOfficial.objects.filter(institution=institution, ended_at__isnull=True).select_related("user")
    names = [f"{o.user.get_full_name() or o.user.email} <{o.user.email}>" for o in officials[:3]]
    return ", ".join(names) or _("the portal's staff")


def _card(decision: AccessDecision, release: ModelRelease) -> str:
    card = LibraryCard.objects.select_related("institution").filter(pk=decision.grant.card_id).first()
    institution = card.institution if card else None
    values = {
        "repo": release.repo_id,
        "institution": institution.name if institution else "",
        "officials": whom_to_ask(institution) if institution else _("the portal's staff"),
        "url": selectors.apply_url(release),
    }
    if decision.code == rule.CARD_REVOKED:
        values["reason"] = (card.revoke_reason if card else "") or _("no reason given")
        return (
            _(
                "Your access to %(repo)s rested on a library card from %(institution)s, which was revoked: "
                "%(reason)s. Ask a signing official of %(institution)s (%(officials)s) for a new card, or apply "
                "again at %(url)s."
            )
            % values
        )
    values["date"] = f"{card.expires_at:%Y-%m-%d}" if card else ""
    return (
        _(
            "Your access to %(repo)s rested on a library card from %(institution)s, which expired on %(date)s (UTC). "
            "Ask a signing official of %(institution)s (%(officials)s) for a new card, or apply again at %(url)s."
        )
        % values
    )


def _reverify(decision: AccessDecision, release: ModelRelease) -> str:
    grant = decision.grant
    institution = Institution.objects.filter(pk=grant.affiliation_institution_id).first()
    values = {
        "repo": release.repo_id,
        "affiliation": grant.affiliation,
        "institution": institution.name if institution else grant.affiliation.partition("@")[2],
        "url": selectors.sign_in_url(),
    }
    if grant.suspended:
        return (
            _(
                "Your access to %(repo)s rested on your verified affiliation %(affiliation)s, which your last sign-in "
                "with %(institution)s no longer asserted. Sign in with %(institution)s again (%(url)s) once it does."
            )
            % values
        )
    return (
        _(
            "Your access to %(repo)s rests on your verified affiliation %(affiliation)s: sign in with "
            "%(institution)s again (%(url)s) to download again."
        )
        % values
    )


def _lab(decision: AccessDecision, release: ModelRelease) -> str:
    grant, seat = decision.grant, decision.seat
    values = {"lab": grant.lab.name, "repo": release.repo_id, "url": selectors.lab_grant_url(grant.public_id)}
    if decision.code == rule.LAB_SEAT_PENDING:
        return (
            _("Your place on %(lab)s's grant for %(repo)s is waiting for a reviewer; you will be emailed (%(url)s).")
            % values
        )
    if decision.code == rule.LAB_SEAT_REJECTED:
        values["reason"] = seat.decision_reason or _("no reason given")
        return _("A reviewer did not approve your place on %(lab)s's grant for %(repo)s: %(reason)s") % values
    if seat is not None and seat.status == "active":
        values["version"] = release.license.version
        return (
            _(
                "The license of %(repo)s changed to version %(version)s: accept it at %(url)s to download through "
                "%(lab)s again."
            )
            % values
        )
    return _("%(lab)s has access to %(repo)s: accept the license at %(url)s to download.") % values


def _pending(decision: AccessDecision, release: ModelRelease) -> str:
    request = decision.request
    values = {"repo": release.repo_id, "url": selectors.request_url(request.public_id)}
    if request.status == "needs_info":
        text = _("Your request for %(repo)s needs more information from you: answer the reviewer at %(url)s.") % values
        typical = None
    else:
        text = _("Your request for %(repo)s is pending review; you will be emailed when it is decided (%(url)s).") % (
            values
        )
        typical = selectors.typical_wait(release)
    estimate = wait_estimate_text(repo_id=release.repo_id, position=selectors.queue_position(request), typical=typical)
    return f"{text} {estimate}".strip()
