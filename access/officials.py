"""Reads for signing officials and library cards: the institutions a person is an official of, the researchers an
official sees, and a person's cards. Writes are in access.services.cards.

An official sees the researchers with a verified affiliation at their institution (a provider's affiliation in
its scope, or a verified address on one of its confirmed domains), and of each only what vouching needs: the
name, the verified facts at this institution, the cards it issued them, and their grants at this portal."""

from __future__ import annotations

from dataclasses import dataclass, field

from allauth.account.models import EmailAddress
from django.db.models import Q

from .identities import VerifiedAffiliation, domains_of, verified_facts_for
from .models import Grant, Institution, LibraryCard, SigningOfficial, User, VerifiedIdentity


@dataclass
class Researcher:
    user: User
    name: str
    # The identity a card would be bound to (None: nothing verified through a provider, no card possible).
    identity: VerifiedIdentity | None
    affiliations: list[VerifiedAffiliation] = field(default_factory=list)
    cards: list[LibraryCard] = field(default_factory=list)
    grants: list[Grant] = field(default_factory=list)

    @property
    def key(self) -> str:
        """How the official's pages and the API name the researcher: their identity's 128-bit id."""
        return self.identity.public_id if self.identity else ""

    @property
    def valid_card(self) -> LibraryCard | None:
        return next((c for c in self.cards if c.is_valid), None)


def official_institutions(user) -> list[Institution]:
    """The confirmed institutions the person is a current signing official of."""
    if user is None or not user.is_authenticated or not user.is_active:
        return []
    rows = SigningOfficial.objects.filter(user=user, ended_at__isnull=True, institution__confirmed_at__isnull=False)
    return [row.institution for row in rows.select_related("institution").order_by("institution__name")]


def official_institution(user, ror_id: str) -> Institution | None:
    """The institution with this ROR id when the person is an official of it; None otherwise (a 404)."""
    return next((i for i in official_institutions(user) if i.ror_id == ror_id), None)


def _candidate_ids(institution: Institution) -> set[int]:
    domains = domains_of(institution)
    ids = set(VerifiedIdentity.objects.filter(institution=institution).values_list("user_id", flat=True))
    if domains:
        on = Q()
        for domain in domains:
            on |= Q(email__iendswith="@" + domain) | Q(email__iendswith="." + domain)
        ids |= set(EmailAddress.objects.filter(on, verified=True).values_list("user_id", flat=True))
        by_provider = Q()
        for domain in domains:
            by_provider |= Q(verified_email__iendswith="@" + domain) | Q(verified_email__iendswith="." + domain)
        ids |= set(VerifiedIdentity.objects.filter(by_provider).values_list("user_id", flat=True))
    return ids


def _identity_for(facts, affiliations: list[VerifiedAffiliation]) -> VerifiedIdentity | None:
    for fact in affiliations:
        if not fact.provider:
            continue
        for identity in facts.identities:
            if identity.provider == fact.provider and (
                fact.value in (identity.affiliations or []) or fact.value == identity.verified_email.lower()
            ):
                return identity
    return None


def official_researchers(institution: Institution, *, official: User, key: str | None = None) -> list[Researcher]:
    """The researchers with a verified affiliation at the institution (the official themselves left out), by
    name; with `key`, only the one whose identity has that id."""
    if not institution.is_confirmed:
        return []
    ids = _candidate_ids(institution) - {official.pk}
    users = list(User.objects.filter(pk__in=ids, is_active=True))
    facts_by_user = verified_facts_for(users)
    found: list[Researcher] = []
    for user in users:
        facts = facts_by_user[user.pk]
        here = [f for f in facts.affiliations if f.institution.pk == institution.pk]
        if not here:
            continue
        identity = _identity_for(facts, here)
        if key is not None and (identity is None or identity.public_id != key):
            continue
        name = facts.name or user.get_full_name() or user.email
        found.append(Researcher(user=user, name=name, identity=identity, affiliations=here))
    by_user = {r.user.pk: r for r in found}
    cards = (
        LibraryCard.objects.filter(institution=institution, user_id__in=by_user)
        .select_related("issued_by", "revoked_by")
        .prefetch_related("releases")
        .order_by("-issued_at")
    )
    for card in cards:
        by_user[card.user_id].cards.append(card)
    grants = (
        Grant.objects.filter(user_id__in=by_user, lab__isnull=True).select_related("release").order_by("-issued_at")
    )
    for grant in grants:
        by_user[grant.user_id].grants.append(grant)
    return sorted(found, key=lambda r: (r.name.casefold(), r.user.pk))


def official_researcher(institution: Institution, *, official: User, key: str) -> Researcher | None:
    found = official_researchers(institution, official=official, key=key)
    return found[0] if found else None


def my_cards(user) -> list[LibraryCard]:
    """A person's library cards, newest first, with who issued them."""
    return list(
        LibraryCard.objects.filter(user=user)
        .select_related("institution", "issued_by", "revoked_by")
        .prefetch_related("releases")
        .order_by("-issued_at", "-id")
    )


def institution_card(institution: Institution, public_id: str) -> LibraryCard | None:
    """A card the institution issued, by its id (another institution's card does not exist for its officials)."""
    return (
        LibraryCard.objects.select_related("institution", "user")
        .filter(institution=institution, public_id=public_id)
        .first()
    )
