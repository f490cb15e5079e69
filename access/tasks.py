"""Celery tasks: thin wrappers that take primary keys and call services. All are idempotent."""

from __future__ import annotations

import datetime

from celery import shared_task
from django.utils import timezone

from . import emails, selectors, services
from .models import AccessRequest, AuditEvent

COMMON = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "soft_time_limit": 120,
    "time_limit": 150,
    "autoretry_for": (Exception,),
    "retry_backoff": 2,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 10,
}


@shared_task(**COMMON)
def grant_issue(request_id: int) -> str | None:
    grant = services.grant_issue(request_id=request_id)
    return grant.public_id if grant else None


@shared_task(**COMMON)
def batch_issue(batch_id: int) -> None:
    services.batch_fill(batch_id=batch_id)


@shared_task(**COMMON)
def grants_reconcile() -> list[int]:
    return services.grants_reconcile()


@shared_task(**COMMON)
def grants_expire() -> dict:
    return services.grants_expire()


# Audit actions that tell the applicant something, and the email template for each.
NOTICES = {
    "request.submitted": "request_submitted",
    "request.request_info": "request_needs_info",
    "request.reject": "request_rejected",
    "request.answer": None,
    "grant.revoked": "grant_revoked",
}


@shared_task(**COMMON)
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
        context={"request": access_request, "release": access_request.release, "event": event, "grant": grant},
    )


@shared_task(**COMMON)
def reviewers_notify(request_id: int) -> int:
    access_request = AccessRequest.objects.select_related("release").filter(pk=request_id).first()
    if access_request is None:
        return 0
    sent = 0
    for reviewer in services.reviewers():
        sent += emails.send_once(
            dedupe_key=f"review-new:{request_id}:{reviewer.pk}",
            template="review_new_request",
            to=reviewer.email,
            context={"request": access_request, "release": access_request.release},
        )
    return sent


@shared_task(**COMMON)
def reviewer_digest() -> int:
    """Daily: each reviewer gets the requests that arrived in the last day and how many wait in all."""
    from django.conf import settings

    if settings.REVIEWER_NOTIFICATIONS != "digest":
        return 0
    today = timezone.now().date()
    since = timezone.now() - datetime.timedelta(days=1)
    waiting = selectors.review_queue(status="pending")
    new = list(waiting.filter(created_at__gte=since)[:50])
    if not new:
        return 0
    sent = 0
    for reviewer in services.reviewers():
        sent += emails.send_once(
            dedupe_key=f"review-digest:{today}:{reviewer.pk}",
            template="review_digest",
            to=reviewer.email,
            context={"new": new, "waiting": waiting.count()},
        )
    return sent
