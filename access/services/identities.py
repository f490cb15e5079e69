"""Institutions and verified identities.

Institutions (keyed by ROR id, with their email domains, OpenID Provider issuers and IdP entity ids) are created,
changed and confirmed by administrators only: a superuser through the admin site, or an operator's command. Only
a confirmed institution verifies anything (access.identities).

A verified identity is what one OpenID Provider asserted about an account at its last sign-in through it. It is
written only here, by the sign-in (access.accounts) for the account signing in, and removed only by that account's
owner; every change of what it states is audited."""

from __future__ import annotations

import re

from allauth.socialaccount.models import SocialAccount
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import claims as claim_maps
from .. import domains as domains_rule
from ..audit import audit
from ..models import Institution, InstitutionIdentifier, User, VerifiedIdentity
from .base import Actor, Forbidden, NotFound, ServiceError, _is_superuser, clean, require_role
from .cards import cards_unbind
from .labs import DOMAIN_RE, ROR_RE
from .reverification import grants_reaffirm

Kind = InstitutionIdentifier.Kind
ENTITY_ID_RE = re.compile(r"^(https?://|urn:)[^\s]{1,490}$")
# What a sign-in records; a change of any of these is audited.
RECORDED = (
    "orcid",
    "institution",
    "idp_entity_id",
    "name",
    "affiliations",
    "assurance",
    "principal_name",
    "verified_email",
)


def require_institution_admin(actor: Actor) -> None:
    """Institutions decide what counts as verified: a superuser (admin site, recent password) or an operator's
    command, never a token, a task or a reviewer."""
    require_role(
        actor,
        holds=_is_superuser,
        refusal=_("Only administrators may change institutions."),
        tokens=False,
        trusted=("command",),
    )


# --- institutions -------------------------------------------------------------------------------------------


def _identifiers(*, email_domains, issuers, idp_entity_ids) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for kind, values, field in (
        (Kind.EMAIL_DOMAIN, email_domains, "email_domains"),
        (Kind.OIDC_ISSUER, issuers, "issuers"),
        (Kind.IDP_ENTITY_ID, idp_entity_ids, "idp_entity_ids"),
    ):
        if isinstance(values, str):
            values = values.split()
        if not isinstance(values, list | tuple) or len(values) > 50:
            raise ServiceError(_("Give at most 50 values."), "invalid", field=field)
        cleaned: list[str] = []
        for raw in values:
            value = clean(str(raw), field=field, multiline=False, max_length=500)
            if kind == Kind.EMAIL_DOMAIN:
                value = value.lower().removeprefix("@")
                if not DOMAIN_RE.match(value):
                    raise ServiceError(_("%(domain)s is not an email domain.") % {"domain": value[:80]}, field=field)
                refused = domains_rule.refusal(value)
                if refused is not None:
                    raise ServiceError(refused[1], refused[0], field=field)
            elif kind == Kind.OIDC_ISSUER:
                try:
                    claim_maps.check_issuer("issuer", value, dev_mode=settings.DEV_MODE)
                except ImproperlyConfigured:
                    raise ServiceError(
                        _("%(issuer)s is not an issuer URL (https://…).") % {"issuer": value[:80]}, field=field
                    ) from None
            elif not ENTITY_ID_RE.match(value):
                raise ServiceError(
                    _("%(value)s is not an entity id (a URL or a URN).") % {"value": value[:80]}, field=field
                )
            if value and value not in cleaned:
                cleaned.append(value)
        found[kind] = cleaned
    return found


def _ror(ror_id: str) -> str:
    ror_id = clean(ror_id or "", field="ror_id", multiline=False, max_length=60).lower()
    ror_id = ror_id.removeprefix("https://ror.org/").removeprefix("ror.org/")
    if not ROR_RE.match(ror_id):
        raise ServiceError(_("A ROR id looks like 02mhbdp94."), "invalid", field="ror_id")
    return ror_id


def _set_identifiers(institution: Institution, identifiers: dict[str, list[str]]) -> dict:
    """Replace the institution's identifiers; refuse one that names another institution. Returns what changed."""
    taken = (
        InstitutionIdentifier.objects.exclude(institution=institution)
        .filter(
            Q(kind=Kind.EMAIL_DOMAIN, value__in=identifiers[Kind.EMAIL_DOMAIN])
            | Q(kind=Kind.OIDC_ISSUER, value__in=identifiers[Kind.OIDC_ISSUER])
            | Q(kind=Kind.IDP_ENTITY_ID, value__in=identifiers[Kind.IDP_ENTITY_ID])
        )
        .select_related("institution")
        .first()
    )
    if taken is not None:
        raise ServiceError(
            _("%(value)s already identifies %(institution)s.")
            % {"value": taken.value, "institution": taken.institution},
            "identifier_taken",
        )
    changes = {}
    for kind, values in identifiers.items():
        before = set(institution.identifiers.filter(kind=kind).values_list("value", flat=True))
        if before == set(values):
            continue
        institution.identifiers.filter(kind=kind).exclude(value__in=values).delete()
        InstitutionIdentifier.objects.bulk_create(
            [InstitutionIdentifier(institution=institution, kind=kind, value=v) for v in values if v not in before]
        )
        changes[kind] = {"added": sorted(set(values) - before), "removed": sorted(before - set(values))}
    _resolve_identities(institution)
    return changes


def _resolve_identities(institution: Institution) -> None:
    """Point the verified identities this institution's issuers and IdPs assert at it (and none it lost)."""
    issuers = list(institution.identifiers.filter(kind=Kind.OIDC_ISSUER).values_list("value", flat=True))
    idps = list(institution.identifiers.filter(kind=Kind.IDP_ENTITY_ID).values_list("value", flat=True))
    mine = Q(idp_entity_id__in=idps) | Q(idp_entity_id="", issuer__in=issuers)
    VerifiedIdentity.objects.filter(institution=institution).exclude(mine).update(institution=None)
    VerifiedIdentity.objects.filter(mine).update(institution=institution)


def institution_create(
    *,
    actor: Actor,
    ror_id: str,
    name: str,
    email_domains=(),
    issuers=(),
    idp_entity_ids=(),
) -> Institution:
    """A new institution, not yet confirmed: it verifies nothing until `institution_confirm`."""
    require_institution_admin(actor)
    ror_id = _ror(ror_id)
    name = clean(name, field="name", multiline=False, name=True, max_length=200)
    if not name:
        raise ServiceError(_("Give the institution's name."), "invalid", field="name")
    identifiers = _identifiers(email_domains=email_domains, issuers=issuers, idp_entity_ids=idp_entity_ids)
    try:
        with transaction.atomic():
            institution = Institution.objects.create(ror_id=ror_id, name=name)
            _set_identifiers(institution, identifiers)
            audit(
                actor=actor,
                action="institution.created",
                target=institution,
                data={"ror_id": ror_id, "name": name, **identifiers},
            )
    except IntegrityError:
        raise ServiceError(_("An institution with this ROR id exists."), "ror_id_taken", field="ror_id") from None
    return institution


def institution_update(
    *, actor: Actor, institution: Institution, name=None, email_domains=None, issuers=None, idp_entity_ids=None
) -> Institution:
    """Change what identifies an institution (None leaves a part as it is); audited with what changed."""
    require_institution_admin(actor)
    current = {kind: institution.identifiers_of(kind) for kind in Kind.values}
    identifiers = _identifiers(
        email_domains=current[Kind.EMAIL_DOMAIN] if email_domains is None else email_domains,
        issuers=current[Kind.OIDC_ISSUER] if issuers is None else issuers,
        idp_entity_ids=current[Kind.IDP_ENTITY_ID] if idp_entity_ids is None else idp_entity_ids,
    )
    changes: dict = {}
    with transaction.atomic():
        if name is not None:
            name = clean(name, field="name", multiline=False, name=True, max_length=200)
            if not name:
                raise ServiceError(_("Give the institution's name."), "invalid", field="name")
            if name != institution.name:
                changes["name"] = {"from": institution.name, "to": name}
                institution.name = name
                institution.save(update_fields=["name", "updated_at"])
        changes.update(_set_identifiers(institution, identifiers))
        if changes:
            audit(actor=actor, action="institution.updated", target=institution, data={"changes": changes})
    return institution


def institution_confirm(*, actor: Actor, institution: Institution, confirmed: bool = True) -> Institution:
    """Confirm (or withdraw the confirmation of) an institution's identifiers: from then on its domains and
    providers verify affiliations (or no longer do)."""
    require_institution_admin(actor)
    if confirmed == institution.is_confirmed:
        return institution
    with transaction.atomic():
        institution.confirmed_at = timezone.now() if confirmed else None
        institution.confirmed_by = actor.user if confirmed and actor.user and actor.user.pk else None
        institution.save(update_fields=["confirmed_at", "confirmed_by", "updated_at"])
        audit(
            actor=actor,
            action="institution.confirmed" if confirmed else "institution.unconfirmed",
            target=institution,
            data={"ror_id": institution.ror_id, "identifiers": {k: institution.identifiers_of(k) for k in Kind.values}},
        )
    return institution


# --- verified identities -----------------------------------------------------------------------------------


def institution_for(*, issuer: str, idp: str = "") -> Institution | None:
    """The institution a provider (by its issuer) or, through CILogon, a university's IdP (by its entity id)
    belongs to; confirmed or not (access.identities reads only confirmed ones)."""
    kind, value = (Kind.IDP_ENTITY_ID, idp) if idp else (Kind.OIDC_ISSUER, issuer)
    row = InstitutionIdentifier.objects.filter(kind=kind, value=value).select_related("institution").first()
    return row.institution if row else None


def _require_owner(actor: Actor, user: User) -> None:
    if actor.is_trusted and actor.kind == "command":
        return
    if actor.user is None or actor.user.pk != user.pk or not user.is_active:
        raise Forbidden(_("Only the account's owner may link or unlink its identities."))


def _stated(identity: VerifiedIdentity) -> dict:
    return {
        name: (identity.institution.ror_id if identity.institution else None)
        if name == "institution"
        else getattr(identity, name)
        for name in RECORDED
    }


def _diff(before: dict, after: dict) -> dict:
    changed = {}
    for name in RECORDED:
        old, new = before[name], after[name]
        if old == new:
            continue
        if isinstance(new, list):
            changed[name] = {"added": [v for v in new if v not in old], "removed": [v for v in old if v not in new]}
        else:
            changed[name] = {"from": old, "to": new}
    return changed


def identity_record(
    *, actor: Actor, user: User, account: SocialAccount, issuer: str, facts: dict, how: str = "sign_in"
) -> VerifiedIdentity:
    """Record what the provider behind `account` asserted at this sign-in (access.claims facts), for the account
    signing in: `identity.linked` the first time (with `how`: sign_up, account_page, verified_email_domain),
    `identity.refreshed` with what changed afterwards. An identity another account holds is refused."""
    _require_owner(actor, user)
    if account.user_id != user.pk:
        raise Forbidden(_("This identity is linked to another account."), "identity_taken")
    now = timezone.now()
    stated = {
        "orcid": facts.get("orcid") or "",
        "idp_entity_id": facts.get("idp") or "",
        "name": facts.get("name") or "",
        "affiliations": list(facts.get("affiliations") or []),
        "assurance": list(facts.get("assurance") or []),
        "principal_name": facts.get("principal_name") or "",
        "verified_email": facts["email"] if facts.get("email") and facts.get("email_verified") else "",
    }
    institution = institution_for(issuer=issuer, idp=stated["idp_entity_id"])
    with transaction.atomic():
        identity = VerifiedIdentity.objects.select_for_update().filter(issuer=issuer, subject=facts["subject"]).first()
        if identity is not None and identity.user_id != user.pk:
            raise Forbidden(_("This identity is linked to another account."), "identity_taken")
        if identity is None:
            identity = VerifiedIdentity.objects.create(
                user=user,
                account=account,
                provider=account.provider,
                issuer=issuer,
                subject=facts["subject"],
                institution=institution,
                first_seen_at=now,
                last_seen_at=now,
                **stated,
            )
            audit(
                actor=actor,
                action="identity.linked",
                target=identity,
                data={"provider": identity.provider, "issuer": issuer, "how": how, **_stated(identity)},
            )
            grants_reaffirm(actor=actor, identity=identity)
            return identity
        before = _stated(identity)
        for name, value in stated.items():
            setattr(identity, name, value)
        identity.institution = institution
        identity.account = account
        identity.provider = account.provider
        identity.last_seen_at = now
        identity.save()
        changed = _diff(before, _stated(identity))
        if changed:
            audit(
                actor=actor,
                action="identity.refreshed",
                target=identity,
                data={"provider": identity.provider, "issuer": issuer, "changed": changed},
            )
        grants_reaffirm(actor=actor, identity=identity)
    return identity


def identity_unlink(*, actor: Actor, identity: VerifiedIdentity) -> None:
    """Unlink an identity from its account (its facts go with it). Only the account's owner may, and not the
    last way into an account without a password."""
    user = identity.user
    _require_owner(actor, user)
    with transaction.atomic():
        identity = VerifiedIdentity.objects.select_for_update().filter(pk=identity.pk, user=user).first()
        if identity is None:
            raise NotFound(_("Not found."))
        others = SocialAccount.objects.filter(user=user).exclude(pk=identity.account_id).exists()
        if not others and not user.has_usable_password():
            raise ServiceError(
                _(
                    "This is the only way into your account. Set a password first (Forgot your password? sends a "
                    "link to your address), then unlink it."
                ),
                "last_sign_in_method",
            )
        data = {"provider": identity.provider, "issuer": identity.issuer, "subject": identity.subject}
        audit(actor=actor, action="identity.unlinked", target=identity, data=data)
        cards_unbind(actor=actor, identity=identity)
        identity.account.delete()  # the identity goes with its link
