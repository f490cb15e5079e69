"""Emails that tell people what happened: the applicant at each step, reviewers about new requests."""

from __future__ import annotations

import datetime

from django.conf import settings
from django.utils import timezone

from .. import emails, selectors, stats
from ..models import AccessRequest, AuditEvent
from ..taskbase import portal_task
from .reviewers import reviewers

# Audit actions that tell the applicant something, and the email template for each.
NOTICES = {
    "request.submitted": "request_submitted",
    "request.submit": "request_submitted",  # a draft sent to the reviewers
    "request.request_info": "request_needs_info",
    "request.reject": "request_rejected",
    "request.close": "request_rejected",
    "request.answer": None,
    "request.info_reminded": "request_info_reminder",
    "request.lapse": "request_closed",
    "grant.revoked": "grant_revoked",
}


@portal_task("access.tasks.request_notify")
def request_notify(event_id: int) -> bool:
    event = AuditEvent.objects.select_related("request__release").filter(pk=event_id).first()
    if event is None or event.request is None or not NOTICES.get(event.action):
        return False
    access_request = event.request
    grant = getattr(access_request, "grant", None) if event.action == "grant.revoked" else None
    return emails.send_once(
        dedupe_key=f"event:{event.pk}",
        template=NOTICES[event.action],
        to=access_request.email,
        context={
            "request": access_request,
            "release": access_request.release,
            "event": event,
            "grant": grant,
            "reapply_after": selectors.reapply_from(access_request),
        },
    )


@portal_task("access.tasks.reviewers_notify")
def reviewers_notify(request_id: int) -> int:
    access_request = AccessRequest.objects.select_related("release").filter(pk=request_id).first()
    if access_request is None:
        return 0
    sent = 0
    for reviewer in reviewers():
        sent += emails.send_once(
            dedupe_key=f"review-new:{request_id}:{reviewer.pk}",
            template="review_new_request",
            to=reviewer.email,
            context={"request": access_request, "release": access_request.release},
        )
    return sent


@portal_task("access.tasks.reviewer_digest")
def reviewer_digest() -> int:
    """Daily: each reviewer gets the requests that arrived in the last day, those past their release's review
    deadline, and how many wait in all."""
    if settings.REVIEWER_NOTIFICATIONS != "digest":
        return 0
    today = timezone.now().date()
    since = timezone.now() - datetime.timedelta(days=1)
    waiting = selectors.review_queue(status="pending")
    new = list(waiting.filter(created_at__gte=since)[:50])
    overdue_all = stats.overdue_requests()
    overdue = list(overdue_all[:50])
    flaw_overdue_all = stats.overdue_flaw_reports()
    flaw_overdue = list(flaw_overdue_all[:50])
    if not new and not overdue and not flaw_overdue:
        return 0
    sent = 0
    for reviewer in reviewers():
        sent += emails.send_once(
            dedupe_key=f"review-digest:{today}:{reviewer.pk}",
            template="review_digest",
            to=reviewer.email,
            context={
                "new": new,
                "waiting": waiting.count(),
                "overdue": overdue,
                "overdue_count": overdue_all.count(),
                "flaw_overdue": flaw_overdue,
                "flaw_overdue_count": flaw_overdue_all.count(),
            },
        )
    return sent
