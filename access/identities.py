"""Verified facts about an account: what counts as verified, decided when read.

An affiliation is verified only
(a) when a provider asserted it (a scoped affiliation such as faculty@uni.example) and its scope, the part after
    "@", is one of the confirmed email domains (or under one) of the institution that provider or its IdP belongs
    to: a scope of another institution verifies nothing; or
(b) by a verified email address on a confirmed domain of an institution: asserted as verified by a provider whose
    claim map trusts it, or confirmed by the portal's own link.
Only institutions portal staff confirmed count, as confirmed now: withdrawing a confirmation, or a domain, takes
effect at once. Each fact says how it was verified, by which provider and when it was last seen (None for an
address the portal confirmed by link: no provider has seen it).

Decision rules ask `verified_affiliations(user, institution=…)` for "verified faculty at X, seen within N days"
(filter on `kind` and `last_seen`), and the facts' method for "verified email domain"."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from allauth.account.models import EmailAddress
from django.db.models import Prefetch
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .claims import AFFILIATION_KINDS
from .durations import seen_text
from .models import Institution, InstitutionIdentifier, User, VerifiedIdentity
from .oidc import provider_name

KIND_LABELS = {
    "faculty": gettext_lazy("Faculty"),
    "staff": gettext_lazy("Staff"),
    "employee": gettext_lazy("Employee"),
    "member": gettext_lazy("Member"),
    "student": gettext_lazy("Student"),
    "affiliate": gettext_lazy("Affiliate"),
}
AFFILIATION = "affiliation"  # a provider's scoped affiliation
EMAIL = "email"  # a verified address on the institution's domain
Kind = InstitutionIdentifier.Kind


@dataclass(frozen=True)
class VerifiedAffiliation:
    institution: Institution
    kind: str  # faculty, staff, employee, member, student, affiliate; "" when verified by an email address
    value: str  # what was verified: "faculty@uni.example", or the address
    method: str  # AFFILIATION or EMAIL
    provider: str  # the provider id; "" for an address the portal confirmed by link
    provider_name: str
    last_seen: datetime | None

    @property
    def kind_label(self) -> str:
        return str(KIND_LABELS.get(self.kind, "")) if self.kind else str(gettext_lazy("Email address"))

    @property
    def seen_on(self) -> date | None:
        return self.last_seen.date() if self.last_seen else None


@dataclass(frozen=True)
class VerifiedFacts:
    affiliations: list[VerifiedAffiliation] = field(default_factory=list)
    identities: list[VerifiedIdentity] = field(default_factory=list)
    orcid: str = ""
    name: str = ""  # the name the most recently seen provider asserted
    emails: dict[str, str] = field(default_factory=dict)  # provider-verified address → provider name

    @property
    def institutions(self) -> list[Institution]:
        seen: dict[int, Institution] = {}
        for affiliation in self.affiliations:
            seen.setdefault(affiliation.institution.pk, affiliation.institution)
        return list(seen.values())


def under(domain: str, domains) -> bool:
    return any(domain == d or domain.endswith("." + d) for d in domains)


def domains_of(institution: Institution) -> list[str]:
    return [i.value for i in institution.identifiers.all() if i.kind == Kind.EMAIL_DOMAIN]


def _institutions_by_domain(domains: set[str]) -> dict[str, Institution]:
    """Each domain → the confirmed institution it is (or is under) a domain of."""
    suffixes = {d.split(".", i)[-1] for d in domains for i in range(d.count("."))}
    rows = InstitutionIdentifier.objects.filter(
        kind=Kind.EMAIL_DOMAIN, value__in=suffixes, institution__confirmed_at__isnull=False
    ).select_related("institution")
    by_value = {row.value: row.institution for row in rows}
    found = {}
    for domain in domains:
        labels = domain.split(".")
        for i in range(len(labels) - 1):  # the longest confirmed domain the address is under
            institution = by_value.get(".".join(labels[i:]))
            if institution is not None:
                found[domain] = institution
                break
    return found


def verified_facts(user: User) -> VerifiedFacts:
    """Everything verified about an account: its verified affiliations (newest first), its linked identities,
    its ORCID iD, the name and the addresses its providers asserted."""
    if user is None or not getattr(user, "is_authenticated", False):
        return VerifiedFacts()
    return verified_facts_for([user])[user.pk]


def verified_facts_for(users) -> dict[int, VerifiedFacts]:
    """verified_facts for many accounts at once (a page of the reviewers' queue), in a few queries."""
    ids = {user.pk for user in users}
    identifiers = Prefetch("institution__identifiers", queryset=InstitutionIdentifier.objects.all())
    identities: dict[int, list[VerifiedIdentity]] = {pk: [] for pk in ids}
    rows = (
        VerifiedIdentity.objects.filter(user_id__in=ids)
        .select_related("institution")
        .prefetch_related(identifiers)
        .order_by("-last_seen_at", "id")
    )
    for identity in rows:
        identities[identity.user_id].append(identity)
    confirmed: dict[int, set[str]] = {pk: set() for pk in ids}
    for user_id, email in EmailAddress.objects.filter(user_id__in=ids, verified=True).values_list("user_id", "email"):
        confirmed[user_id].add(email.lower())
    domains = {a.rpartition("@")[2] for addresses in confirmed.values() for a in addresses}
    domains |= {
        i.verified_email.lower().rpartition("@")[2] for held in identities.values() for i in held if i.verified_email
    }
    by_domain = _institutions_by_domain(domains)
    return {pk: _facts(identities[pk], confirmed[pk], by_domain) for pk in ids}


def _facts(identities: list[VerifiedIdentity], confirmed: set[str], by_domain: dict) -> VerifiedFacts:
    best: dict[tuple, VerifiedAffiliation] = {}

    def add(fact: VerifiedAffiliation) -> None:
        key = (fact.institution.pk, fact.kind, fact.value)
        held = best.get(key)
        if held is None or (fact.last_seen and (held.last_seen is None or fact.last_seen > held.last_seen)):
            best[key] = fact

    for identity in identities:
        institution = identity.institution
        if institution is None or not institution.is_confirmed:
            continue
        domains = domains_of(institution)
        for value in identity.affiliations:
            kind, _at, scope = value.partition("@")
            if kind in AFFILIATION_KINDS and under(scope, domains):
                add(_fact(institution, kind, value, AFFILIATION, identity))
    provider_emails = {i.verified_email.lower(): i for i in identities if i.verified_email}
    for address in sorted(confirmed | set(provider_emails)):
        institution = by_domain.get(address.rpartition("@")[2])
        if institution is None:
            continue
        identity = provider_emails.get(address)
        if identity is not None:
            add(_fact(institution, "", address, EMAIL, identity))
        else:
            add(VerifiedAffiliation(institution, "", address, EMAIL, "", "", None))
    affiliations = sorted(
        best.values(),
        key=lambda f: (f.last_seen is None, -(f.last_seen.timestamp() if f.last_seen else 0), f.method, f.value),
    )
    return VerifiedFacts(
        affiliations=affiliations,
        identities=identities,
        orcid=next((i.orcid for i in identities if i.orcid), ""),
        name=next((i.name for i in identities if i.name), ""),
        emails={address: provider_name(i.provider) for address, i in provider_emails.items()},
    )


def _fact(institution, kind, value, method, identity: VerifiedIdentity) -> VerifiedAffiliation:
    return VerifiedAffiliation(
        institution, kind, value, method, identity.provider, provider_name(identity.provider), identity.last_seen_at
    )


def verified_affiliations(user: User, institution: Institution | None = None) -> list[VerifiedAffiliation]:
    """The account's verified affiliations, at one institution or at any."""
    facts = verified_facts(user).affiliations
    return [f for f in facts if institution is None or f.institution.pk == institution.pk]


def describe(fact: VerifiedAffiliation) -> str:
    """The fact as reviewers read it, in the request's language."""
    if not fact.provider:
        return _("Address confirmed by email (%(institution)s): %(value)s") % {
            "institution": fact.institution.name,
            "value": fact.value,
        }
    return _("Verified by %(provider)s %(when)s: %(value)s") % {
        "provider": fact.provider_name,
        "when": seen_text(fact.last_seen),
        "value": fact.value,
    }


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def submitted_against(facts: VerifiedFacts, *, full_name: str, affiliation: str, email: str) -> dict:
    """For each field an applicant typed that a verified fact speaks to: "verified" when it matches one, "differs"
    when it matches none; None when nothing verified speaks to it."""
    names = [i.name for i in facts.identities if i.name]
    institutions = [i.name for i in facts.institutions]
    emails = set(facts.emails) | {f.value for f in facts.affiliations if f.method == EMAIL}

    def judged(known, matches) -> str | None:
        return None if not known else ("verified" if matches else "differs")

    return {
        "full_name": judged(names, any(_same(full_name, n) for n in names)),
        "affiliation": judged(institutions, any(_same(affiliation, n) for n in institutions)),
        "email": judged(emails, email.lower() in emails),
    }


def application_prefill(facts: VerifiedFacts) -> dict[str, tuple[str, str]]:
    """What the application form fills in from verified facts: {field: (value, who verified it)}."""
    prefill = {}
    named = next((i for i in facts.identities if i.name), None)
    if named is not None:
        prefill["full_name"] = (named.name, provider_name(named.provider))
    if facts.affiliations:
        first = facts.affiliations[0]
        prefill["affiliation"] = (first.institution.name, first.provider_name or first.institution.name)
    return prefill


def has_orcid(user: User) -> bool:
    return bool(
        user is not None
        and getattr(user, "is_authenticated", False)
        and VerifiedIdentity.objects.filter(user=user).exclude(orcid="").exists()
    )
