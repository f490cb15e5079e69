"""Signing officials and library cards: an institution vouches for its researchers.

Portal staff (a superuser through the admin site or a page, or an operator's command) appoint an institution's
signing officials. An official sees the researchers with a verified affiliation at the institution (access.
selectors.official_researchers) and issues them library cards: bound to the researcher's account and to the
provider identity (issuer + subject) the affiliation was verified through, valid LIBRARY_CARD_DAYS (or fewer),
for every gated release or chosen ones. A card is a fact for the decision rules ("valid library card"); grants
a rule approved on a card end with it at the gate (`card_revoked`, `card_expired`).

An official decides through a page (never a token): with a password entered within REAUTHENTICATION_TIMEOUT,
or a sign-in through the institution's own provider as recent, which is the stronger proof for this role.
A sign-in at which that identity's provider no longer asserts the affiliation ends the card (`cards_reaffirm`,
called on the suspension path of access.services.reverification). Every step is audited (and so sent to
webhooks), and emailed to the person concerned in their language."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import emails
from ..audit import audit
from ..identities import verified_facts
from ..models import Institution, LibraryCard, ModelRelease, SigningOfficial, User, VerifiedIdentity
from ..taskbase import portal_task
from .base import (
    Actor,
    Forbidden,
    InvalidTransition,
    NotFound,
    ServiceError,
    _is_superuser,
    clean,
    number,
    require_role,
)

# --- appointments -------------------------------------------------------------------------------------------


def require_official_admin(actor: Actor) -> None:
    """Who vouches for an institution's researchers is portal staff's choice, as the institution itself is: a
    superuser (admin site or a page, recent password) or an operator's command; never a token or a task."""
    require_role(
        actor,
        holds=_is_superuser,
        refusal=_("Only administrators may appoint signing officials."),
        tokens=False,
        trusted=("command",),
    )


def official_appoint(*, actor: Actor, institution: Institution, user: User) -> SigningOfficial:
    """Appoint `user` a signing official of a confirmed institution (portal staff only); audited, emailed."""
    require_official_admin(actor)
    if not institution.is_confirmed:
        raise ServiceError(
            _("%(institution)s is not confirmed: it vouches for nobody yet.") % {"institution": institution},
            "institution_unconfirmed",
        )
    if not user.is_active:
        raise ServiceError(_("This account is disabled."), "account_inactive")
    with transaction.atomic():
        if (
            SigningOfficial.objects.select_for_update()
            .filter(institution=institution, user=user, ended_at=None)
            .exists()
        ):
            raise InvalidTransition(
                _("%(user)s is already a signing official of %(institution)s.")
                % {"user": user.email, "institution": institution},
                "already_official",
            )
        official = SigningOfficial.objects.create(
            institution=institution, user=user, appointed_by=actor.user if actor.user and actor.user.pk else None
        )
        audit(
            actor=actor,
            action="official.appointed",
            target=official,
            data={"institution": institution.ror_id, "user": user.pk},
        )
        official_notify.enqueue(official.pk)
    return official


def official_end(*, actor: Actor, official: SigningOfficial) -> SigningOfficial:
    """End an appointment (portal staff only). The cards the official issued stay valid: the institution issued
    them, and another official may revoke them."""
    require_official_admin(actor)
    with transaction.atomic():
        locked = SigningOfficial.objects.select_for_update().get(pk=official.pk)
        if locked.ended_at is not None:
            raise InvalidTransition(_("This appointment has already ended."))
        locked.ended_at = timezone.now()
        locked.ended_by = actor.user if actor.user and actor.user.pk else None
        locked.save(update_fields=["ended_at", "ended_by", "updated_at"])
        audit(
            actor=actor,
            action="official.ended",
            target=locked,
            data={"institution": locked.institution.ror_id, "user": locked.user_id},
        )
        official_notify.enqueue(locked.pk)
    return locked


def is_official(user, institution: Institution) -> bool:
    return bool(
        user
        and user.is_authenticated
        and user.is_active
        and SigningOfficial.objects.filter(institution=institution, user=user, ended_at=None).exists()
    )


def fresh_provider_sign_in(actor: Actor, institution: Institution) -> bool:
    """Whether the actor signed in through one of the institution's identities within REAUTHENTICATION_TIMEOUT
    (the session's authentication records, access.http.actor_for)."""
    if not actor.fresh_sign_ins:
        return False
    return VerifiedIdentity.objects.filter(
        user=actor.user,
        institution=institution,
        account__provider__in=[p for p, _uid in actor.fresh_sign_ins],
        account__uid__in=[uid for _p, uid in actor.fresh_sign_ins],
    ).exists()


def require_official(actor: Actor, institution: Institution, *, deciding: bool) -> User:
    """A current signing official of `institution`, through a page: no token (a script's token is for
    downloads and reviews, not for vouching for people), and for decisions a recent password or a recent sign-in
    through the institution's own provider. Anyone else is told the institution does not exist for them."""
    if actor.user is None or not is_official(actor.user, institution):
        raise NotFound(_("Not found."))
    if actor.kind == "token":
        raise Forbidden(_("Signing officials act through the portal's pages, signed in; tokens cannot."), "token_scope")
    if actor.kind not in ("session", "admin"):
        raise Forbidden(_("Only signing officials may do this."))
    if deciding and not (actor.reauthenticated or fresh_provider_sign_in(actor, institution)):
        raise Forbidden(
            _(
                "Sign in with %(institution)s again, or enter your password again, to do this (your last sign-in "
                "was too long ago)."
            )
            % {"institution": institution.name},
            "reauthentication_required",
        )
    return actor.user


# --- cards -------------------------------------------------------------------------------------------------


def card_identity(researcher: User, institution: Institution) -> tuple[VerifiedIdentity, str] | None:
    """The provider identity a researcher's affiliation at the institution is verified through, and what it
    verifies (faculty@uni.example, or an address on a confirmed domain); None when none is."""
    facts = verified_facts(researcher)
    for fact in facts.affiliations:
        if fact.institution.pk != institution.pk or not fact.provider:
            continue
        for identity in facts.identities:
            if identity.provider != fact.provider:
                continue
            if fact.value in (identity.affiliations or []) or fact.value == identity.verified_email.lower():
                return identity, fact.value
    return None


def _releases(releases) -> list[ModelRelease]:
    if releases is None:
        return []
    if not isinstance(releases, list | tuple) or len(releases) > 100:
        raise ServiceError(_("Name at most 100 releases."), "invalid", field="releases")
    found = []
    for item in releases:
        release = item if isinstance(item, ModelRelease) else ModelRelease.objects.filter(repo_id=str(item)).first()
        if release is None or not release.published or not release.is_gated:
            raise ServiceError(
                _("%(repo)s is not a gated release.") % {"repo": str(item)[:200]}, "invalid", field="releases"
            )
        if release not in found:
            found.append(release)
    return found


def card_issue(
    *,
    actor: Actor,
    institution: Institution,
    researcher: User,
    releases=None,
    days: int | None = None,
) -> LibraryCard:
    """An official of `institution` issues `researcher` a library card: for every gated release (`releases`
    None or empty) or the ones named, valid `days` (at most LIBRARY_CARD_DAYS). The researcher needs an
    affiliation at the institution verified through a provider identity, to which the card is bound."""
    official = require_official(actor, institution, deciding=True)
    if researcher.pk == official.pk:
        raise Forbidden(_("Signing officials cannot issue themselves a card; another official must."), "own_card")
    found = card_identity(researcher, institution) if researcher.is_active else None
    if found is None:
        raise NotFound(
            _("No researcher with a verified affiliation at %(institution)s has this id.")
            % {"institution": institution.name}
        )
    identity, affiliation = found
    days = number(
        settings.LIBRARY_CARD_DAYS if days in (None, "") else days, field="days", low=1, high=settings.LIBRARY_CARD_DAYS
    )
    chosen = _releases(releases)
    now = timezone.now()
    with transaction.atomic():
        card = LibraryCard.objects.create(
            user=researcher,
            institution=institution,
            issuer=identity.issuer,
            subject=identity.subject,
            affiliation=affiliation,
            issued_by=official,
            issued_at=now,
            expires_at=now + timedelta(days=days),
            all_releases=not chosen,
        )
        card.releases.set(chosen)
        audit(
            actor=actor,
            action="library_card.issued",
            target=card,
            data={
                "institution": institution.ror_id,
                "researcher": researcher.pk,
                "identity": identity.public_id,
                "affiliation": affiliation,
                "releases": [r.repo_id for r in chosen] or "all",
                "expires_at": card.expires_at.isoformat(),
            },
        )
        card_notify.enqueue(card.pk)
    return card


def card_revoke(*, actor: Actor, card: LibraryCard, reason: str = "") -> LibraryCard:
    """An official of the card's institution revokes it: grants approved on it stop downloading at once."""
    require_official(actor, card.institution, deciding=True)
    reason = clean(reason, field="reason", multiline=True, max_length=2000)
    return _end(actor, card, LibraryCard.Ending.REVOKED, reason)


def _end(actor: Actor, card: LibraryCard, ending: str, reason: str, data: dict | None = None) -> LibraryCard:
    with transaction.atomic():
        locked = LibraryCard.objects.select_for_update().get(pk=card.pk)
        if locked.revoked_at is not None:
            raise InvalidTransition(_("This card has already been revoked."))
        locked.revoked_at = timezone.now()
        locked.revoked_by = actor.user if actor.user and actor.user.pk else None
        locked.revoke_reason = reason
        locked.ending = ending
        locked.save(update_fields=["revoked_at", "revoked_by", "revoke_reason", "ending", "updated_at"])
        audit(
            actor=actor,
            action="library_card.revoked",
            target=locked,
            data={
                "institution": locked.institution.ror_id,
                "researcher": locked.user_id,
                "ending": ending,
                "reason": reason,
                "grants": list(locked.grants.values_list("public_id", flat=True)),
                **(data or {}),
            },
        )
        card_notify.enqueue(locked.pk)
    return locked


def cards_reaffirm(*, actor: Actor, identity: VerifiedIdentity) -> int:
    """After a sign-in recorded `identity`: the valid cards bound to it whose affiliation its provider no longer
    asserts end (the researcher left the institution). Called inside the sign-in's transaction, with the
    signing-in person as actor; returns how many ended."""
    asserted = set(identity.affiliations or []) | (
        {identity.verified_email.lower()} if identity.verified_email else set()
    )
    ended = 0
    cards = LibraryCard.objects.valid().filter(
        user_id=identity.user_id, issuer=identity.issuer, subject=identity.subject
    )
    for card in cards.exclude(affiliation__in=asserted).select_related("institution"):
        _end(
            actor,
            card,
            LibraryCard.Ending.LEFT,
            _("%(institution)s no longer asserts %(affiliation)s.")
            % {"institution": card.institution.name, "affiliation": card.affiliation},
            data={"identity": identity.public_id, "asserted": sorted(asserted)},
        )
        ended += 1
    return ended


def cards_unbind(*, actor: Actor, identity: VerifiedIdentity) -> int:
    """The identity a card is bound to is being unlinked from its account: its valid cards end with it (called
    by access.services.identities.identity_unlink inside its transaction)."""
    ended = 0
    cards = LibraryCard.objects.valid().filter(
        user_id=identity.user_id, issuer=identity.issuer, subject=identity.subject
    )
    for card in cards.select_related("institution"):
        _end(
            actor,
            card,
            LibraryCard.Ending.UNLINKED,
            _("The identity the card was bound to was unlinked from the account."),
            data={"identity": identity.public_id},
        )
        ended += 1
    return ended


# --- emails -------------------------------------------------------------------------------------------------


@portal_task("access.tasks.library_card_notify")
def card_notify(card_id: int) -> int:
    """Tell the researcher their card was issued, or ended (once each)."""
    card = LibraryCard.objects.select_related("user", "institution", "issued_by").filter(pk=card_id).first()
    if card is None:
        return 0
    state = "revoked" if card.revoked_at is not None else "issued"
    return int(
        emails.send_once(
            dedupe_key=f"library-card-{state}:{card.pk}",
            template=f"library_card_{state}",
            to=card.user.email,
            context={"card": card, "releases": list(card.releases.all())},
        )
    )


@portal_task("access.tasks.official_notify")
def official_notify(official_id: int) -> int:
    """Tell a person they were appointed a signing official, or that the appointment ended (once each)."""
    official = SigningOfficial.objects.select_related("user", "institution").filter(pk=official_id).first()
    if official is None:
        return 0
    state = "ended" if official.ended_at is not None else "appointed"
    return int(
        emails.send_once(
            dedupe_key=f"official-{state}:{official.pk}",
            template=f"official_{state}",
            to=official.user.email,
            context={"official": official, "institution": official.institution},
        )
    )
