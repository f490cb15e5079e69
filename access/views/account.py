"""The signed-in account's own page: what is verified about it, and the identities linked to it."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_safe

from .. import services
from ..http import actor_for
from ..identities import verified_facts
from ..models import VerifiedIdentity
from ..oidc import configured_providers, provider_name


@login_required
@require_safe
def identities(request):
    facts = verified_facts(request.user)
    rows = [(identity, provider_name(identity.provider)) for identity in facts.identities]
    context = {"facts": facts, "rows": rows, "providers": configured_providers()}
    return render(request, "access/account/identities.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def identity_unlink(request, public_id):
    """GET asks for confirmation; POST unlinks. Someone else's identity does not exist here."""
    identity = VerifiedIdentity.objects.filter(user=request.user, public_id=public_id).first()
    if identity is None:
        raise Http404
    name = provider_name(identity.provider)
    if request.method == "GET":
        context = {
            "title": _("Unlink %(provider)s?") % {"provider": name},
            "question": _("Unlink your %(provider)s identity from this account?") % {"provider": name},
            "consequence": _(
                "You can no longer sign in with it, and what it verified (affiliations, ORCID iD) is no longer shown "
                "to reviewers. You can link it again later."
            ),
            "confirm_label": _("Unlink"),
            "action": request.path,
            "cancel_url": reverse("account-identities"),
        }
        return render(request, "access/confirm.html", context)
    try:
        services.identity_unlink(actor=actor_for(request), identity=identity)
    except services.ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("%(provider)s was unlinked from your account.") % {"provider": name})
    return redirect("account-identities")
