"""Prometheus metrics: counters and histograms incremented where things happen, and gauges read from the
database when /metrics is scraped.

Several gunicorn workers (and Celery workers on the same host) each count in their own process. With
PROMETHEUS_MULTIPROC_DIR set, before any process starts, to an empty directory they all share, prometheus_client
writes every counter to a file there and a scrape sums them (`MultiProcessCollector`); without it, a process
reports only its own counts, which is right for a single process (`manage.py runserver`).
"""

from __future__ import annotations

import os
import time

from celery import signals
from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily

from . import selectors
from .models import AccessRequest, Grant, WebhookDelivery, WebhookEndpoint

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
TASK_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120)

HTTP_REQUESTS = Counter(
    "portal_http_requests",
    "HTTP requests answered, by route (URL name), method and status",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "portal_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
DOWNLOADS = Counter(
    "portal_downloads", "Downloads allowed by the gate (a signed URL or a manifest handed out)", ["via", "release"]
)
REFUSALS = Counter("portal_download_refusals", "Downloads refused by the gate, by refusal code", ["code", "via"])
TASKS = Counter("portal_celery_tasks", "Celery tasks run, by outcome (success, failure, retry)", ["task", "outcome"])
TASK_DURATION = Histogram("portal_celery_task_duration_seconds", "Celery task run time", ["task"], buckets=TASK_BUCKETS)
EMAILS = Counter(
    "portal_emails", "Emails handed to the mail server (sent) or refused by it (failed)", ["template", "outcome"]
)
WEBHOOKS = Counter(
    "portal_webhook_attempts",
    "Webhook delivery attempts, by event type and outcome (sent, failed)",
    ["event", "outcome"],
)
WEBHOOK_LATENCY = Histogram(
    "portal_webhook_attempt_duration_seconds", "Time for a webhook endpoint to answer", buckets=LATENCY_BUCKETS
)


class StateCollector:
    """Gauges of what is in the database, read at scrape time: one answer whichever process is asked."""

    def collect(self):
        by_status = GaugeMetricFamily("portal_access_requests", "Access requests by status", labels=["status"])
        counts = dict(AccessRequest.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
        for status in AccessRequest.Status.values:
            by_status.add_metric([status], counts.get(status, 0))
        yield by_status
        oldest = AccessRequest.objects.filter(status=AccessRequest.Status.PENDING).aggregate(t=Min("created_at"))["t"]
        yield GaugeMetricFamily(
            "portal_oldest_pending_request_age_seconds",
            "Age of the oldest request waiting for a reviewer (0 when none waits)",
            value=(timezone.now() - oldest).total_seconds() if oldest else 0,
        )
        grants = GaugeMetricFamily(
            "portal_active_grants", "Active grants (issued, not expired, not revoked)", labels=["release"]
        )
        for repo_id, n in Grant.objects.active().values_list("release__repo_id").annotate(n=Count("id")):
            grants.add_metric([repo_id], n)
        yield grants
        due = WebhookDelivery.objects.filter(
            status__in=[WebhookDelivery.Status.PENDING, WebhookDelivery.Status.RETRYING]
        )
        yield GaugeMetricFamily(
            "portal_webhook_deliveries_waiting", "Webhook deliveries not yet delivered", value=due.count()
        )
        yield GaugeMetricFamily(
            "portal_webhook_oldest_due_seconds",
            "How long the oldest webhook delivery whose time has come has waited for a webhook worker (0 when none "
            "waits); it grows without bound when nothing consumes the webhooks queue",
            value=selectors.webhook_queue_state()["oldest_due_seconds"],
        )
        yield GaugeMetricFamily(
            "portal_webhook_endpoints_disabled",
            "Webhook endpoints disabled (by a person or for failing)",
            value=WebhookEndpoint.objects.filter(active=False).count(),
        )


class _ProcessMetrics:
    """This process's own metrics, when there is no shared multiprocess directory."""

    def collect(self):
        yield from REGISTRY.collect()


def exposition() -> bytes:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ProcessMetrics())
    registry.register(StateCollector())
    return generate_latest(registry)


# --- Celery tasks -----------------------------------------------------------------------------------------

_started: dict[str, float] = {}


@signals.task_prerun.connect
def _task_started(task_id=None, **kwargs):
    _started[task_id] = time.perf_counter()


@signals.task_postrun.connect
def _task_finished(task_id=None, task=None, state=None, **kwargs):
    started = _started.pop(task_id, None)
    name = getattr(task, "name", "unknown")
    TASKS.labels(name, (state or "unknown").lower()).inc()
    if started is not None:
        TASK_DURATION.labels(name).observe(time.perf_counter() - started)
