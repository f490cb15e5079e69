"""The access request's state machine. Only the services in requests.py and grants.py move a request, and
each of them checks the actor's role before it calls `transition`."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .. import selectors
from ..audit import audit
from ..models import AccessRequest, AuditEvent
from .base import Actor, InvalidTransition

S = AccessRequest.Status

# action → (states it may start from, state it leads to)
TRANSITIONS: dict[str, tuple[set[str], str]] = {
    "submit": ({S.DRAFT}, S.PENDING),
    "request_info": ({S.PENDING}, S.NEEDS_INFO),
    "answer": ({S.NEEDS_INFO}, S.PENDING),
    "approve": ({S.PENDING, S.NEEDS_INFO}, S.APPROVED),
    "reject": ({S.PENDING, S.NEEDS_INFO}, S.REJECTED),
    "withdraw": ({S.DRAFT, S.PENDING, S.NEEDS_INFO}, S.WITHDRAWN),
    # A renewal whose grant was revoked: closed by the revocation, as a rejection with its reason.
    "close": ({S.PENDING, S.NEEDS_INFO}, S.REJECTED),
    # A question left unanswered after its reminder: closed like a withdrawal (no cool-down), with a notice.
    "lapse": ({S.NEEDS_INFO}, S.WITHDRAWN),
}
ACTION_NAMES = {
    "submit": gettext_lazy("submit"),
    "request_info": gettext_lazy("ask for information on"),
    "answer": gettext_lazy("answer"),
    "approve": gettext_lazy("approve"),
    "reject": gettext_lazy("reject"),
    "withdraw": gettext_lazy("withdraw"),
    "close": gettext_lazy("close"),
    "lapse": gettext_lazy("close"),
}


def lock(access_request: AccessRequest) -> AccessRequest:
    return AccessRequest.objects.select_for_update().get(pk=access_request.pk)


def transition(
    *, actor: Actor, locked: AccessRequest, action: str, reason: str = "", data: dict | None = None
) -> AuditEvent:
    """Move a locked request (inside the caller's transaction) and audit it; anything else is refused."""
    sources, target = TRANSITIONS[action]
    if locked.status not in sources:
        raise InvalidTransition(
            _("Cannot %(action)s a request that is %(status)s.")
            % {"action": ACTION_NAMES[action], "status": locked.get_status_display().lower()}
        )
    previous = locked.status
    locked.status = target
    update = ["status", "updated_at"]
    if action == "request_info":
        locked.info_request, locked.info_response, locked.reviewer = reason, "", actor.user
        locked.info_requested_at, locked.info_reminded_at = timezone.now(), None
        update += ["info_request", "info_response", "reviewer", "info_requested_at", "info_reminded_at"]
    elif action == "answer":
        locked.info_response = reason
        update += ["info_response"]
    elif action == "lapse":
        locked.decision_reason = reason
        update += ["decision_reason"]
    elif action in ("approve", "reject", "close"):
        locked.reviewer, locked.decision_reason, locked.decided_at = actor.user, reason, timezone.now()
        update += ["reviewer", "decision_reason", "decided_at"]
    locked.save(update_fields=update)
    if locked.decided_at is not None and action in ("approve", "reject", "close"):
        # The release's typical wait counts this decision from now on, not once its cache entry has expired.
        transaction.on_commit(lambda: selectors.typical_wait_forget(locked.release_id))
    return audit(
        actor=actor,
        action=f"request.{action}",
        target=locked,
        access_request=locked,
        data={"from": previous, "to": target, "reason": reason, **(data or {})},
    )
