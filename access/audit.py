"""The audit log: one append-only record for every change to access and every refused download. It is also the
one hook for webhooks: each event is offered to `webhooks.dispatch`, which tells the endpoints that want it."""

from __future__ import annotations

from . import webhooks
from .actors import Actor
from .models import AccessRequest, AuditEvent


def audit(
    *, actor: Actor, action: str, target=None, access_request: AccessRequest | None = None, data: dict | None = None
) -> AuditEvent:
    event = AuditEvent.objects.create(
        actor=actor.user if actor.user and actor.user.pk else None,
        credential=actor.credential,
        action=action,
        target_type=type(target).__name__ if target is not None else "",
        target_id=str(getattr(target, "public_id", None) or getattr(target, "pk", "") or "") if target else "",
        request=access_request,
        data=data or {},
        ip=actor.ip,
    )
    webhooks.dispatch(event, target=target, access_request=access_request)
    return event
