"""Questions applicants leave unanswered: a request waiting on its applicant (`needs_info`) for
NEEDS_INFO_REMINDER_DAYS is reminded once, and closed NEEDS_INFO_CLOSE_DAYS after the reminder if still
unanswered. Closing is a withdrawal by the portal, with a notice: no rejection, no cool-down; the applicant
may apply again."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from ..audit import audit
from ..models import AccessRequest
from ..taskbase import portal_task
from .base import Actor, require_portal, task_actor
from .notifications import request_notify
from .workflow import lock, transition

S = AccessRequest.Status


def _require_portal(actor: Actor) -> None:
    """Only the portal's own schedule (a task or command) reminds and closes: no person does it through a page."""
    require_portal(actor, _("Only the portal's schedule may do this."))


def request_remind_info(*, actor: Actor, access_request: AccessRequest) -> bool:
    """Remind the applicant of the reviewer's question, once per question; returns whether it reminded."""
    _require_portal(actor)
    with transaction.atomic():
        locked = lock(access_request)
        if locked.status != S.NEEDS_INFO or locked.info_reminded_at is not None:
            return False
        locked.info_reminded_at = timezone.now()
        locked.save(update_fields=["info_reminded_at"])
        closes = locked.info_reminded_at + timedelta(days=settings.NEEDS_INFO_CLOSE_DAYS)
        event = audit(
            actor=actor,
            action="request.info_reminded",
            target=locked,
            access_request=locked,
            data={
                "asked": locked.info_requested_at.isoformat() if locked.info_requested_at else None,
                "closes": closes.isoformat(),
            },
        )
        request_notify.enqueue(event.pk)
    return True


def request_lapse(*, actor: Actor, access_request: AccessRequest) -> bool:
    """Close a request whose question stayed unanswered after its reminder; returns whether it closed."""
    _require_portal(actor)
    reason = _("Closed: the reviewer's question was not answered within %(n)d days. You may apply again.") % {
        "n": settings.NEEDS_INFO_REMINDER_DAYS + settings.NEEDS_INFO_CLOSE_DAYS
    }
    with transaction.atomic():
        locked = lock(access_request)
        if locked.status != S.NEEDS_INFO or locked.info_reminded_at is None:
            return False
        event = transition(actor=actor, locked=locked, action="lapse", reason=reason)
        request_notify.enqueue(event.pk)
    return True


def needs_info_due(now: datetime | None = None) -> tuple[list[int], list[int]]:
    """Ids of requests to remind and of requests to close now."""
    now = now or timezone.now()
    waiting = AccessRequest.objects.filter(status=S.NEEDS_INFO)
    remind = waiting.filter(
        info_reminded_at__isnull=True, info_requested_at__lte=now - timedelta(days=settings.NEEDS_INFO_REMINDER_DAYS)
    )
    close = waiting.filter(info_reminded_at__lte=now - timedelta(days=settings.NEEDS_INFO_CLOSE_DAYS))
    return list(remind.values_list("pk", flat=True)), list(close.values_list("pk", flat=True))


@portal_task("access.tasks.needs_info_sweep")
def needs_info_sweep() -> dict:
    """Daily (beat): remind and close what is due. Running it twice reminds and closes nothing twice."""
    remind, close = needs_info_due()
    reminded = closed = 0
    actor = task_actor("needs_info_sweep")
    for access_request in AccessRequest.objects.filter(pk__in=remind):
        reminded += request_remind_info(actor=actor, access_request=access_request)
    for access_request in AccessRequest.objects.filter(pk__in=close):
        closed += request_lapse(actor=actor, access_request=access_request)
    return {"reminded": reminded, "closed": closed}
