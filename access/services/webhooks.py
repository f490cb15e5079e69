"""Webhook endpoints: registered, switched on and off, re-keyed and removed by the people allowed to, and
deliveries sent again on request. Delivery itself is access.webhooks."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import webhooks
from ..audit import audit
from ..models import ModelRelease, WebhookDelivery, WebhookEndpoint, new_public_id
from .base import Actor, ServiceError, clean, require_role

MANAGE_PERMISSION = "access.manage_webhooks"


def can_manage_webhooks(user) -> bool:
    return bool(user and user.is_authenticated and user.is_active and user.has_perm(MANAGE_PERMISSION))


def require_webhook_manager(actor: Actor) -> None:
    """Admins (superusers) and whoever holds `manage_webhooks` (given to release managers in the admin), through
    the web with a recently entered password or the admin site; never with an API token."""
    require_role(
        actor,
        holds=can_manage_webhooks,
        refusal=_("Only admins and release managers may manage webhooks."),
        tokens=False,
    )


def _url(url: str) -> str:
    url = clean(url, field="url", multiline=False, max_length=1000)
    try:
        webhooks.check_url(url)
    except webhooks.UnsafeUrl as exc:
        raise ServiceError(str(exc), "unsafe_url", field="url") from None
    return url


def _events(events: list[str]) -> list[str]:
    unknown = set(events) - set(webhooks.EVENT_TYPES)
    if unknown:
        raise ServiceError(_("Unknown events: %(names)s") % {"names": ", ".join(sorted(unknown))}, field="events")
    return sorted(set(events))


def webhook_endpoint_create(
    *, actor: Actor, url: str, events: list[str], release: ModelRelease | None = None, description: str = ""
) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint; returns it and its signing secret, which is shown once (it is derived, never stored).
    No events means every event; no release, every release."""
    require_webhook_manager(actor)
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.create(
            owner=actor.user,
            url=_url(url),
            events=_events(events),
            release=release,
            description=clean(description, field="description", multiline=False, max_length=200),
        )
        audit(actor=actor, action="webhook.created", target=endpoint, data=_summary(endpoint))
    return endpoint, webhooks.endpoint_secret(endpoint)


def _summary(endpoint: WebhookEndpoint) -> dict:
    # The host only: a URL's path or query may itself be a credential (chat services put one there).
    host = urlsplit(endpoint.url).hostname
    return {"host": host, "events": endpoint.events, "release": endpoint.release.repo_id if endpoint.release else None}


def webhook_endpoint_set_active(*, actor: Actor, endpoint: WebhookEndpoint, active: bool) -> WebhookEndpoint:
    """Switch an endpoint off, or on again (which forgets its failures, so it gets a full window again)."""
    require_webhook_manager(actor)
    with transaction.atomic():
        locked = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        if locked.active == active:
            return locked
        locked.active = active
        if active:
            locked.disabled_at, locked.disabled_reason, locked.failing_since = None, "", None
            locked.paused_until = None
        else:
            locked.disabled_at, locked.disabled_reason = (
                timezone.now(),
                _("Disabled by %(who)s.") % {"who": actor.user.email if actor.user else actor.credential},
            )
        locked.save(
            update_fields=["active", "disabled_at", "disabled_reason", "failing_since", "paused_until", "updated_at"]
        )
        audit(actor=actor, action="webhook.enabled" if active else "webhook.disabled", target=locked)
    return locked


def webhook_endpoint_rotate_secret(*, actor: Actor, endpoint: WebhookEndpoint) -> str:
    """A new signing secret (shown once); the old one stops verifying at once."""
    require_webhook_manager(actor)
    with transaction.atomic():
        locked = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        locked.secret_salt = new_public_id()
        locked.save(update_fields=["secret_salt", "updated_at"])
        audit(actor=actor, action="webhook.secret_rotated", target=locked)
    return webhooks.endpoint_secret(locked)


def webhook_endpoint_delete(*, actor: Actor, endpoint: WebhookEndpoint) -> None:
    require_webhook_manager(actor)
    with transaction.atomic():
        audit(actor=actor, action="webhook.deleted", target=endpoint, data=_summary(endpoint))
        endpoint.delete()


def webhook_redeliver(*, actor: Actor, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a delivery again now, with the same webhook-id (receivers deduplicate on it) and a fresh retry
    window. The endpoint must be switched on. A person asking now also ends a failing endpoint's pause (its
    receiver was likely just fixed): this delivery is the next one to try it."""
    require_webhook_manager(actor)
    with transaction.atomic():
        locked = WebhookDelivery.objects.select_for_update().select_related("endpoint").get(pk=delivery.pk)
        if not locked.endpoint.active:
            raise ServiceError(_("Switch the endpoint on before redelivering."), "endpoint_disabled")
        now = timezone.now()
        locked.status, locked.next_attempt_at, locked.scheduled_at = WebhookDelivery.Status.PENDING, now, now
        locked.save(update_fields=["status", "next_attempt_at", "scheduled_at"])
        WebhookEndpoint.objects.filter(pk=locked.endpoint_id).update(paused_until=None)
        audit(actor=actor, action="webhook.redelivered", target=locked, data={"endpoint": locked.endpoint.public_id})
        webhooks.webhook_deliver.enqueue(locked.pk)
    return locked
