"""The audit log: one append-only record for every change to access and every refused download."""

from __future__ import annotations

from ..models import AccessRequest, AuditEvent
from .base import Actor


def audit(
    *, actor: Actor, action: str, target=None, access_request: AccessRequest | None = None, data: dict | None = None
) -> AuditEvent:
    return AuditEvent.objects.create(
        actor=actor.user if actor.user and actor.user.pk else None,
        credential=actor.credential,
        action=action,
        target_type=type(target).__name__ if target is not None else "",
        target_id=str(getattr(target, "public_id", None) or getattr(target, "pk", "") or "") if target else "",
        request=access_request,
        data=data or {},
        ip=actor.ip,
    )
