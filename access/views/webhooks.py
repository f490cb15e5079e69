"""Webhook endpoints for admins and release managers: register one (its secret is shown once), follow its
delivery log, switch it on or off, re-key it, remove it, and send a delivery again."""

from __future__ import annotations

from functools import wraps

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from .. import services, webhooks
from ..decorators import recent_login_required
from ..forms import WebhookEndpointForm
from ..http import actor_for
from ..models import WebhookDelivery, WebhookEndpoint

NEW_SECRET_SESSION_KEY = "webhook_new_secret"  # noqa: S105 (a session key, not a secret)
LOG_SIZE = 100


def manager_required(view):
    """Others get a 404: the pages do not exist for them."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not services.can_manage_webhooks(request.user):
            raise Http404
        return view(request, *args, **kwargs)

    return wrapper


def _show_secret_once(request, endpoint: WebhookEndpoint, secret: str):
    # Through the session to the page the browser is sent to: shown once, and a reload makes nothing new.
    request.session[NEW_SECRET_SESSION_KEY] = [endpoint.public_id, secret]
    return redirect("webhook-detail", public_id=endpoint.public_id)


@manager_required
@recent_login_required
@require_http_methods(["GET", "HEAD", "POST"])
def endpoints(request):
    form = WebhookEndpointForm(request.POST or None, event_types=webhooks.EVENT_TYPES)
    if request.method == "POST" and form.is_valid():
        try:
            endpoint, secret = services.webhook_endpoint_create(
                actor=actor_for(request),
                url=form.cleaned_data["url"],
                events=form.cleaned_data["events"],
                release=form.cleaned_data["release"],
                description=form.cleaned_data["description"],
            )
        except services.ServiceError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            return _show_secret_once(request, endpoint, secret)
    context = {"form": form, "endpoints": WebhookEndpoint.objects.select_related("owner", "release")}
    return render(request, "access/webhooks/list.html", context)


@manager_required
@recent_login_required
@require_http_methods(["GET", "HEAD", "POST"])
def endpoint_detail(request, public_id):
    endpoint = WebhookEndpoint.objects.select_related("owner", "release").filter(public_id=public_id).first()
    if endpoint is None:
        raise Http404
    if request.method == "POST":
        return _act(request, endpoint)
    new_secret = None
    shown = request.session.pop(NEW_SECRET_SESSION_KEY, None)
    if shown and shown[0] == endpoint.public_id:
        new_secret = shown[1]
    deliveries = list(endpoint.deliveries.prefetch_related("attempt_log")[:LOG_SIZE])
    response = render(
        request,
        "access/webhooks/detail.html",
        {"endpoint": endpoint, "deliveries": deliveries, "new_secret": new_secret},
    )
    response["Cache-Control"] = "no-store"
    return response


def _act(request, endpoint: WebhookEndpoint):
    actor = actor_for(request)
    action = request.POST.get("action")
    try:
        if action in ("enable", "disable"):
            services.webhook_endpoint_set_active(actor=actor, endpoint=endpoint, active=action == "enable")
        elif action == "rotate":
            return _show_secret_once(
                request, endpoint, services.webhook_endpoint_rotate_secret(actor=actor, endpoint=endpoint)
            )
        elif action == "delete":
            services.webhook_endpoint_delete(actor=actor, endpoint=endpoint)
            messages.success(request, _("Endpoint removed."))
            return redirect("webhooks")
        elif action == "redeliver":
            delivery = WebhookDelivery.objects.filter(endpoint=endpoint, public_id=request.POST.get("delivery")).first()
            if delivery is None:
                raise Http404
            services.webhook_redeliver(actor=actor, delivery=delivery)
            messages.success(request, _("Delivery queued again."))
        else:
            messages.error(request, _("Unknown action."))
    except services.ServiceError as exc:
        messages.error(request, str(exc))
    return redirect("webhook-detail", public_id=endpoint.public_id)
