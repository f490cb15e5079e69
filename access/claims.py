"""Which OpenID Providers the portal signs people in with, and which of their claims it takes, from where.

Each provider is one of three kinds. The kind sets the scopes asked for and the claim map: for each fact the
portal records (email, names, affiliations, assurance, principal name, the university's IdP, ORCID iD), the one
place it is taken from, the ID token or the userinfo response, and the claim's name there. `OIDC_<ID>_CLAIMS`
overrides entries of a kind's map (`affiliation=userinfo:eduperson_scoped_affiliation,assurance=none`); a fact the
map does not name is never taken, from anywhere.

- institution: an institution's own OpenID Provider. Affiliations are `eduperson_scoped_affiliation`, assurance
  `eduperson_assurance`; the institution is the one whose confirmed issuers include this provider's issuer.
- cilogon: CILogon (https://cilogon.org) in front of many universities. The university is the `idp` claim (its
  SAML entity id); affiliations are the semicolon-separated `affiliation` claim of the `org.cilogon.userinfo` scope.
- orcid: ORCID (https://orcid.org). The iD is `sub`; no email, no affiliation.

Everything here is pure: settings read providers from the environment with `providers_from_env` (failing loudly on
a bad value), and the sign-in turns verified claims into facts with `facts_from_claims`."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured, ValidationError

from .text import clean_text

PROVIDER_ID_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")
SOURCES = ("id_token", "userinfo")
FACTS = ("email", "name", "given_name", "family_name", "affiliation", "assurance", "principal_name", "idp", "orcid")
CLAIM_RE = re.compile(r"^[A-Za-z0-9_.:/#-]{1,200}$")
# Asymmetric signatures only: `none` proves nothing, and an HMAC key is the client secret, which the portal holds.
SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
DEFAULT_ALGORITHMS = ("RS256", "ES256", "PS256")
# The eduPerson affiliations that say someone belongs to an institution now (not "alum", not "library-walk-in").
AFFILIATION_KINDS = ("faculty", "staff", "employee", "member", "student", "affiliate")
ORCID_RE = re.compile(r"^\d{4}-\d{4}-\d{4}-\d{3}[\dX]$")
MAX_VALUES = 50


@dataclass(frozen=True)
class Kind:
    scopes: tuple[str, ...]
    claims: dict[str, tuple[str, str]]
    issuer: str = ""
    name: str = ""


_PROFILE = {
    "email": ("id_token", "email"),
    "name": ("id_token", "name"),
    "given_name": ("id_token", "given_name"),
    "family_name": ("id_token", "family_name"),
}
KINDS = {
    "institution": Kind(
        scopes=("openid", "profile", "email", "eduperson"),
        claims={
            **_PROFILE,
            "affiliation": ("id_token", "eduperson_scoped_affiliation"),
            "assurance": ("id_token", "eduperson_assurance"),
            "principal_name": ("id_token", "eduperson_principal_name"),
        },
    ),
    "cilogon": Kind(
        scopes=("openid", "email", "profile", "org.cilogon.userinfo"),
        claims={
            **_PROFILE,
            "affiliation": ("id_token", "affiliation"),
            "principal_name": ("id_token", "eppn"),
            "idp": ("id_token", "idp"),
        },
        issuer="https://cilogon.org",
        name="CILogon",
    ),
    "orcid": Kind(
        scopes=("openid",),
        claims={
            "name": ("id_token", "name"),
            "given_name": ("id_token", "given_name"),
            "family_name": ("id_token", "family_name"),
            "orcid": ("id_token", "sub"),
        },
        issuer="https://orcid.org",
        name="ORCID",
    ),
}


# --- configuration ----------------------------------------------------------------------------------------


def parse_claims(var: str, raw: str) -> dict[str, tuple[str, str] | None]:
    """`fact=source:claim,…` (or `fact=none`) → {fact: (source, claim) or None}."""
    overrides: dict[str, tuple[str, str] | None] = {}
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        fact, sep, where = (part.strip() for part in entry.partition("="))
        if not sep or fact not in FACTS:
            raise ImproperlyConfigured(
                f"{var}: {entry!r} must be fact=source:claim with a fact among {', '.join(FACTS)}"
            )
        if where == "none":
            overrides[fact] = None
            continue
        source, _sep, claim = where.partition(":")
        if source not in SOURCES or not CLAIM_RE.match(claim):
            raise ImproperlyConfigured(
                f"{var}: {entry!r} must take {fact} from id_token:<claim> or userinfo:<claim>, or be {fact}=none"
            )
        overrides[fact] = (source, claim)
    return overrides


def check_issuer(var: str, issuer: str, *, dev_mode: bool) -> str:
    """An https URL; plain http only to a loopback address, or in development mode."""
    parts = urlsplit(issuer)
    if (
        parts.scheme not in ("https", "http")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or "@" in (parts.netloc)
    ):
        raise ImproperlyConfigured(
            f"{var} must be the provider's issuer URL, such as https://idp.example.edu; got {issuer!r}"
        )
    if parts.scheme == "http" and not dev_mode and not _loopback(parts.hostname):
        raise ImproperlyConfigured(
            f"{var} must be an https URL (plain http only to a loopback address); got {issuer!r}"
        )
    return issuer


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def provider_ids(raw: str) -> list[str]:
    """OIDC_PROVIDERS: comma-separated provider ids, each lower-case letters, digits and dashes."""
    ids = [p.strip() for p in raw.split(",") if p.strip()]
    if len(set(ids)) != len(ids):
        raise ImproperlyConfigured("OIDC_PROVIDERS names a provider twice.")
    for provider_id in ids:
        if not PROVIDER_ID_RE.match(provider_id):
            raise ImproperlyConfigured(
                f"OIDC_PROVIDERS: {provider_id!r} must be lower-case letters, digits and dashes (at most 40)"
            )
    return ids


def variable_prefix(provider_id: str) -> str:
    return "OIDC_" + provider_id.upper().replace("-", "_")


FIELDS = ("NAME", "KIND", "ISSUER", "CLIENT_ID", "CLIENT_SECRET", "SCOPES", "CLAIMS", "ALGORITHMS")


def providers_from_env(read: Callable[[str], str], *, dev_mode: bool) -> list[dict]:
    """provider_app for every provider OIDC_PROVIDERS names, each read from its OIDC_<ID>_* variables (`read`
    returns a variable's value, "" when unset). portal/settings.py reads them itself, with the same names."""
    return [
        provider_app(
            provider_id,
            **{f.lower(): read(f"{variable_prefix(provider_id)}_{f}") for f in FIELDS},
            dev_mode=dev_mode,
        )
        for provider_id in provider_ids(read("OIDC_PROVIDERS"))
    ]


def provider_app(
    provider_id: str,
    *,
    name: str,
    kind: str,
    issuer: str,
    client_id: str,
    client_secret: str,
    scopes: str,
    claims: str,
    algorithms: str,
    dev_mode: bool,
) -> dict:
    """One provider as an allauth settings-based app of its openid_connect provider. Raises ImproperlyConfigured
    on anything it cannot use: an unknown kind, no issuer, client id or secret, a plain-http issuer outside
    development that is not on loopback, a claim map or algorithm it does not know."""
    var = variable_prefix(provider_id)
    kind_name = kind.strip()
    if kind_name not in KINDS:
        raise ImproperlyConfigured(f"{var}_KIND must be one of {', '.join(KINDS)}; got {kind_name!r}")
    defaults = KINDS[kind_name]
    try:
        name = clean_text(name.strip() or defaults.name, multiline=False)
    except ValidationError:
        name = ""
    if not name or len(name) > 100:
        raise ImproperlyConfigured(f"{var}_NAME must name the provider on one line (at most 100 characters).")
    issuer = issuer.strip() or defaults.issuer
    if not issuer:
        raise ImproperlyConfigured(f"{var}_ISSUER must be set: the provider's issuer URL.")
    check_issuer(f"{var}_ISSUER", issuer, dev_mode=dev_mode)
    client_id, client_secret = client_id.strip(), client_secret.strip()
    if not client_id:
        raise ImproperlyConfigured(f"{var}_CLIENT_ID must be set: the portal's client id at the provider.")
    if not client_secret:
        raise ImproperlyConfigured(f"{var}_CLIENT_SECRET (or {var}_CLIENT_SECRET_FILE) must be set.")
    scope = scopes.split() or list(defaults.scopes)
    if "openid" not in scope:
        raise ImproperlyConfigured(f"{var}_SCOPES must include openid.")
    claim_map = {**defaults.claims, **parse_claims(f"{var}_CLAIMS", claims)}
    allowed = [a.strip() for a in algorithms.split(",") if a.strip()] or list(DEFAULT_ALGORITHMS)
    refused = [a for a in allowed if a not in SIGNING_ALGORITHMS]
    if refused:
        raise ImproperlyConfigured(
            f"{var}_ALGORITHMS: {', '.join(refused)} cannot sign ID tokens for the portal; use among "
            f"{', '.join(SIGNING_ALGORITHMS)} (never none or HMAC)"
        )
    return {
        "provider_id": provider_id,
        "name": name,
        "client_id": client_id,
        "secret": client_secret,
        "settings": {
            # allauth fetches {server_url}/.well-known/openid-configuration.
            "server_url": issuer.rstrip("/"),
            "issuer": issuer,
            "kind": kind_name,
            "scope": scope,
            "claims": {fact: list(where) for fact, where in claim_map.items() if where is not None},
            "algorithms": allowed,
            "oauth_pkce_enabled": True,
        },
    }


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


# --- facts --------------------------------------------------------------------------------------------


def uses_userinfo(claims: dict) -> bool:
    return any(source == "userinfo" for source, _claim in claims.values())


def facts_from_claims(claims: dict, id_token: dict, userinfo: dict | None) -> dict:
    """The facts a verified ID token (and a userinfo response about the same subject) state, each taken only from
    where the claim map says. A value of the wrong shape counts as not stated."""

    def take(fact: str):
        where = claims.get(fact)
        if not where:
            return None, {}
        source, claim = where
        data = id_token if source == "id_token" else (userinfo or {})
        return data.get(claim), data

    email, email_source = take("email")
    email = _email(email)
    verified = bool(email) and email_source.get("email_verified") in (True, "true")
    name = _line(take("name")[0])
    given, family = _line(take("given_name")[0]), _line(take("family_name")[0])
    return {
        "subject": str(id_token["sub"]),
        "email": email,
        "email_verified": verified,
        "name": name or " ".join(part for part in (given, family) if part),
        "given_name": given,
        "family_name": family,
        "affiliations": _values(take("affiliation")[0], lower=True, scoped=True),
        "assurance": _values(take("assurance")[0]),
        "principal_name": _line(take("principal_name")[0], limit=254),
        "idp": _line(take("idp")[0], limit=500),
        "orcid": _orcid(take("orcid")[0]),
    }


def _line(value, *, limit: int = 200) -> str:
    if not isinstance(value, str):
        return ""
    try:
        value = clean_text(value, multiline=False)
    except ValidationError:
        return ""
    return value if len(value) <= limit else ""


def _email(value) -> str:
    value = _line(value, limit=254)
    local, at, domain = value.rpartition("@")
    if not at or not local or not re.fullmatch(r"[A-Za-z0-9.-]+\.[A-Za-z0-9-]+", domain) or " " in value:
        return ""
    return f"{local}@{domain.lower()}"


def _values(value, *, lower: bool = False, scoped: bool = False) -> list[str]:
    """A list claim, or one string of values separated by semicolons, commas or spaces (CILogon's affiliation)."""
    if isinstance(value, str):
        value = re.split(r"[;,\s]+", value)
    if not isinstance(value, list):
        return []
    values = []
    for item in value:
        item = _line(item, limit=500)
        if lower:
            item = item.lower()
        if not item or (scoped and not re.fullmatch(r"[a-z-]+@[a-z0-9.-]+\.[a-z0-9-]+", item)):
            continue
        if item not in values:
            values.append(item)
    return values[:MAX_VALUES]


def _orcid(value) -> str:
    value = _line(value, limit=60).removeprefix("https://orcid.org/").removeprefix("http://orcid.org/")
    return value if ORCID_RE.match(value) else ""
