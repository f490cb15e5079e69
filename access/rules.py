"""Decision rules: which of a release's requests decide themselves, on verified facts.

A release has an ordered list of rules (access.models.DecisionRule), each conditions (all must hold) and an
action; the first rule whose conditions all hold decides: *approve* (through the same approve service as a
reviewer, as the actor `rule:<id>`), *review* (a reviewer decides, as when no rule matches) or *refuse* (only for
the release's restricted countries). Requests with uploads, lab requests and license re-reviews always go to a
reviewer.

Each condition is one entry of CONDITIONS: whether it is verified (an *approve* rule needs at least one verified
condition: declared facts alone would be a blind approval), how its value is cleaned, and how it is matched
against the applicant's facts (`ApplicantFacts`). Matching returns the facts it used, which the audit, the
applicant's decision text and the grant record. A new kind of fact is one more field of ApplicantFacts, read by
`applicant_facts`, and one more entry here (as the library card a signing official issued is).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from allauth.account.models import EmailAddress
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django_countries import countries as COUNTRIES

from .claims import AFFILIATION_KINDS
from .identities import AFFILIATION, KIND_LABELS, VerifiedAffiliation, verified_facts
from .models import AccessQuestion, AccessRequest, DecisionRule, LibraryCard, User

PROVIDER_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
ROR_RE = re.compile(r"^0[a-z0-9]{6}[0-9]{2}$")
DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
MAX_RULES = 50
MAX_VALUES = 100


class RuleError(ValueError):
    """A rule that cannot be saved; `field` names the condition."""

    def __init__(self, message: str, field: str = "rules"):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ApplicantFacts:
    """What the rules read about an applicant: verified facts, then what the request declares."""

    affiliations: tuple[VerifiedAffiliation, ...] = ()
    verified_emails: tuple[str, ...] = ()
    orcid: str = ""
    organization_type: str = ""
    country: str = ""
    # Valid library cards covering the release, bound to an identity the account still holds.
    cards: tuple[CardFact, ...] = ()


@dataclass(frozen=True)
class CardFact:
    pk: int
    public_id: str
    institution: str
    institution_id: int
    expires_at: datetime


@dataclass(frozen=True)
class Outcome:
    """What the rules decided for a request: the action, the rule (None: no rule matched) and the facts used."""

    action: str
    rule: DecisionRule | None = None
    facts: tuple[dict, ...] = ()


def _affiliation_fact(f: VerifiedAffiliation) -> dict:
    return {
        "kind": "affiliation" if f.method == AFFILIATION else "email",
        "value": f.value,
        "affiliation_kind": f.kind,
        "institution": f.institution.name,
        "institution_id": f.institution.pk,
        "ror_id": f.institution.ror_id,
        "provider": f.provider,
        "provider_name": f.provider_name,
        "seen_at": f.last_seen.isoformat() if f.last_seen else None,
    }


# --- the conditions ---------------------------------------------------------------------------------------


def _strings(value, *, name: str, pattern=None, allowed=None, lower=True) -> list[str]:
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    if not isinstance(value, list | tuple) or not value or len(value) > MAX_VALUES:
        raise RuleError(_("Give between 1 and %(n)d values.") % {"n": MAX_VALUES}, name)
    out = []
    for raw in value:
        item = str(raw).strip()
        item = item.lower().removeprefix("@") if lower else item.upper()
        if (pattern is not None and not pattern.match(item)) or (allowed is not None and item not in allowed):
            raise RuleError(_("%(value)s is not a valid value here.") % {"value": item[:80]}, name)
        if item not in out:
            out.append(item)
    return sorted(out)


def _clean_institutions(value, name):
    if value in ("any", ["any"]):
        return "any"
    return _strings(value, name=name, pattern=ROR_RE)


def _clean_true(value, name):
    if value is not True:
        raise RuleError(_("This condition is either set (true) or left out."), name)
    return True


@dataclass(frozen=True)
class Condition:
    label: str
    verified: bool
    clean: Callable
    # Which of the candidate affiliations it keeps (affiliation conditions hold together on one affiliation).
    keeps: Callable | None = None
    # For conditions on their own fact: (facts, value) -> the facts used, or None when it does not hold.
    holds: Callable | None = None


def _declared(name):
    def holds(facts: ApplicantFacts, value) -> list | None:
        found = getattr(facts, name)
        return [{"kind": "declared", "field": name, "value": found}] if found in value else None

    return holds


def _emails(facts: ApplicantFacts, value) -> list | None:
    used = [a for a in facts.verified_emails if a.rpartition("@")[2] in value]
    return [{"kind": "email", "value": used[0]}] if used else None


def _orcid(facts: ApplicantFacts, value) -> list | None:
    return [{"kind": "orcid", "value": facts.orcid}] if facts.orcid else None


def _card(facts: ApplicantFacts, value) -> list | None:
    if not facts.cards:
        return None
    card = facts.cards[0]
    return [
        {
            "kind": "library_card",
            "card_id": card.pk,
            "value": card.public_id,
            "institution": card.institution,
            "institution_id": card.institution_id,
            "expires_at": card.expires_at.isoformat(),
        }
    ]


CONDITIONS: dict[str, Condition] = {
    "providers": Condition(
        gettext_lazy("Signed in through"),
        True,
        lambda v, n: _strings(v, name=n, pattern=PROVIDER_RE),
        keeps=lambda f, v: f.provider in v,
    ),
    "affiliation_kinds": Condition(
        gettext_lazy("Affiliation"),
        True,
        lambda v, n: _strings(v, name=n, allowed=AFFILIATION_KINDS),
        keeps=lambda f, v: f.method == AFFILIATION and f.kind in v,
    ),
    "institutions": Condition(
        gettext_lazy("Institution"),
        True,
        _clean_institutions,
        keeps=lambda f, v: v == "any" or f.institution.ror_id in v,
    ),
    "email_domains": Condition(
        gettext_lazy("Verified email domain"),
        True,
        lambda v, n: _strings(v, name=n, pattern=DOMAIN_RE),
        holds=_emails,
    ),
    "orcid": Condition(gettext_lazy("ORCID iD linked"), True, _clean_true, holds=_orcid),
    "library_card": Condition(gettext_lazy("Valid library card"), True, _clean_true, holds=_card),
    "organization_types": Condition(
        gettext_lazy("Organization type (declared)"),
        False,
        lambda v, n: _strings(v, name=n, allowed=AccessRequest.OrganizationType.values),
        holds=_declared("organization_type"),
    ),
    "countries": Condition(
        gettext_lazy("Country (declared)"),
        False,
        lambda v, n: _strings(v, name=n, allowed=dict(COUNTRIES), lower=False),
        holds=_declared("country"),
    ),
}


def clean_conditions(conditions, *, action: str, restricted: list[str]) -> dict:
    """A rule's conditions as stored, or RuleError."""
    if not isinstance(conditions, dict):
        raise RuleError(_("Conditions are an object of condition: value."))
    unknown = sorted(set(conditions) - set(CONDITIONS))
    if unknown:
        raise RuleError(_("Unknown condition: %(name)s.") % {"name": unknown[0][:40]}, unknown[0][:40])
    cleaned = {name: CONDITIONS[name].clean(value, name) for name, value in sorted(conditions.items())}
    if action == DecisionRule.Action.APPROVE and not any(CONDITIONS[n].verified for n in cleaned):
        raise RuleError(
            _("An approving rule needs at least one verified condition: declared facts alone approve anyone."),
            "conditions",
        )
    if action == DecisionRule.Action.REFUSE:
        countries = cleaned.get("countries") or []
        if not countries or not set(countries) <= set(restricted):
            raise RuleError(
                _("A refusing rule is only for the release's restricted countries: name them, and only them."),
                "countries",
            )
    return cleaned


# --- matching ---------------------------------------------------------------------------------------------


def match(conditions: dict, facts: ApplicantFacts) -> list[dict] | None:
    """The facts a rule's conditions used when all hold, else None."""
    used: list[dict] = []
    affiliation_conditions = {n: v for n, v in conditions.items() if CONDITIONS[n].keeps is not None}
    if affiliation_conditions:
        candidates = [
            f for f in facts.affiliations if all(CONDITIONS[n].keeps(f, v) for n, v in affiliation_conditions.items())
        ]
        if not candidates:
            return None
        used.append(_affiliation_fact(candidates[0]))
    for name, value in conditions.items():
        if CONDITIONS[name].holds is None:
            continue
        found = CONDITIONS[name].holds(facts, value)
        if found is None:
            return None
        used += found
    return used


def decide(rules, facts: ApplicantFacts) -> Outcome:
    """The first rule (in order) whose conditions all hold decides; no match sends the request to a reviewer."""
    for rule in rules:
        used = match(rule.conditions, facts)
        if used is not None:
            return Outcome(rule.action, rule, tuple(used))
    return Outcome(DecisionRule.Action.REVIEW)


def current_rules(release) -> list[DecisionRule]:
    return list(release.rules.filter(retired_at__isnull=True).order_by("position", "id"))


def applicant_facts(user: User, access_request: AccessRequest) -> ApplicantFacts:
    """What the rules read for a request: the applicant's verified facts now and what the request declares."""
    verified = verified_facts(user)
    emails = {a.lower() for a in verified.emails}
    emails |= {e.lower() for e in EmailAddress.objects.filter(user=user, verified=True).values_list("email", flat=True)}
    return ApplicantFacts(
        affiliations=tuple(verified.affiliations),
        verified_emails=tuple(sorted(emails)),
        orcid=verified.orcid,
        organization_type=access_request.organization_type,
        country=str(access_request.country or "").upper(),
        cards=valid_cards(user, access_request.release, identities=verified.identities),
    )


def valid_cards(user: User, release, *, identities) -> tuple[CardFact, ...]:
    """The account's valid library cards that cover the release and are bound to an identity it still holds
    (newest first)."""
    held = {(i.issuer, i.subject) for i in identities}
    cards = (
        LibraryCard.objects.valid()
        .filter(user=user)
        .select_related("institution")
        .prefetch_related("releases")
        .order_by("-issued_at", "-id")
    )
    return tuple(
        CardFact(c.pk, c.public_id, c.institution.name, c.institution_id, c.expires_at)
        for c in cards
        if (c.issuer, c.subject) in held and c.covers(release)
    )


def always_reviewed(access_request: AccessRequest) -> bool:
    """Requests a rule never decides: uploads, a lab's, a license re-review."""
    return (
        access_request.lab_id is not None
        or access_request.reconsent_of_id is not None
        or access_request.attachments.exists()
        # A renewal carries its earlier answers, a file question's among them (the upload a reviewer judged).
        or access_request.answers.filter(question__kind=AccessQuestion.Kind.FILE).exists()
    )


def explain(facts) -> str:
    """Why a rule approved, as the applicant reads it ("you are verified faculty at Demo University")."""
    parts = []
    for fact in facts:
        if fact["kind"] == "affiliation":
            parts.append(
                _("you are verified %(kind)s at %(institution)s (%(value)s, by %(provider)s)")
                % {
                    "kind": str(_kind_label(fact["affiliation_kind"])).lower(),
                    "institution": fact["institution"],
                    "value": fact["value"],
                    "provider": fact["provider_name"] or fact["institution"],
                }
            )
        elif fact["kind"] == "email":
            parts.append(_("your address %(value)s is verified") % {"value": fact["value"]})
        elif fact["kind"] == "orcid":
            parts.append(_("your ORCID iD %(value)s is linked") % {"value": fact["value"]})
        elif fact["kind"] == "library_card":
            parts.append(_("you hold a library card from %(institution)s") % {"institution": fact["institution"]})
    return "; ".join(parts)


def _kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind)


def describe_conditions(conditions: dict) -> list[tuple[str, str]]:
    """(label, values) for each condition, as release managers and the audit read them."""
    out = []
    for name, value in conditions.items():
        label = str(CONDITIONS[name].label) if name in CONDITIONS else name
        if value is True:
            text = _("yes")
        elif value == "any":
            text = _("any verified")
        else:
            text = ", ".join(value)
        out.append((label, text))
    return out
