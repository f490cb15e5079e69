"""Signing officials' pages (the researchers of their institution, cards issued and revoked) and a researcher's
own library cards. Every change goes through access.services.cards, which checks who acts."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from .. import officials, services
from ..http import actor_for
from ..models import ModelRelease
from ..oidc import configured_providers


def _institution(request, ror_id: str):
    institution = officials.official_institution(request.user, ror_id)
    if institution is None:
        raise Http404
    return institution


def _providers_of(institution) -> list[dict]:
    """The configured providers whose issuer is one of the institution's (to sign in with it again)."""
    issuers = set(institution.identifiers_of("oidc_issuer"))
    return [p for p in configured_providers() if p["issuer"] in issuers]


@login_required
@require_safe
def official_home(request):
    institutions = officials.official_institutions(request.user)
    if not institutions:
        raise Http404
    if len(institutions) == 1:
        return redirect("official-institution", ror_id=institutions[0].ror_id)
    return render(request, "access/officials/home.html", {"institutions": institutions})


@login_required
@require_safe
def official_institution(request, ror_id):
    institution = _institution(request, ror_id)
    context = {
        "institution": institution,
        "researchers": officials.official_researchers(institution, official=request.user),
        "gated_releases": ModelRelease.objects.filter(published=True, access=ModelRelease.Access.GATED).order_by(
            "repo_id"
        ),
        "card_days": settings.LIBRARY_CARD_DAYS,
        "providers": _providers_of(institution),
    }
    return render(request, "access/officials/institution.html", context)


@login_required
@require_POST
def official_card_issue(request, ror_id):
    institution = _institution(request, ror_id)
    researcher = officials.official_researcher(
        institution, official=request.user, key=request.POST.get("researcher", "")
    )
    if researcher is None:
        raise Http404
    releases = request.POST.getlist("releases") if request.POST.get("scope") == "chosen" else None
    if releases == []:
        messages.error(request, _("Choose at least one release, or issue the card for every gated release."))
        return redirect("official-institution", ror_id=ror_id)
    try:
        services.card_issue(
            actor=actor_for(request),
            institution=institution,
            researcher=researcher.user,
            releases=releases,
            days=request.POST.get("days") or None,
        )
    except services.ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("%(name)s has a library card.") % {"name": researcher.name})
    return redirect("official-institution", ror_id=ror_id)


@login_required
@require_http_methods(["GET", "POST"])
def official_card_revoke(request, ror_id, public_id):
    institution = _institution(request, ror_id)
    card = officials.institution_card(institution, public_id)
    if card is None:
        raise Http404
    if request.method == "GET":
        return render(request, "access/officials/revoke.html", {"institution": institution, "card": card})
    try:
        services.card_revoke(actor=actor_for(request), card=card, reason=request.POST.get("reason", ""))
    except services.ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("The card was revoked."))
    return redirect(reverse("official-institution", kwargs={"ror_id": ror_id}))


@login_required
@require_safe
def library_cards(request):
    return render(request, "access/account/cards.html", {"cards": officials.my_cards(request.user)})
