"""Signed webhooks: access events told to the endpoints admins register, per the Standard Webhooks specification.

The hook is the audit log: `services.audit()` hands every event it writes to `dispatch`, which maps the audit
action to a webhook event type (EVENTS, the one table) and, in the same transaction as the state change, records
one delivery per matching endpoint and enqueues its task on commit. A state change that rolls back tells no one;
one that commits is delivered even if the broker was away (the sweep finds it).

Delivery (`deliver`) claims the delivery with a compare-and-set, so two workers never send the same attempt; signs
the JSON body with the `standardwebhooks` library (`webhook-id` is the same for every attempt of a delivery, the
timestamp and signature are fresh); POSTs it to an address checked again at send time by the rule registration
uses (`refusal`: https only, every resolved address public — or inside WEBHOOK_ALLOWED_NETWORKS —, an IPv6 address
that carries an IPv4 address judged by that address too; connected to the checked address so DNS cannot change in
between, no redirects, short timeouts); logs the attempt; and on failure schedules the next one with exponential
backoff until WEBHOOK_RETRY_WINDOW_SECONDS have passed. An endpoint that has failed every attempt for
WEBHOOK_DISABLE_AFTER_SECONDS is disabled and its owner emailed.

Deliveries run on their own Celery queue (settings.CELERY_TASK_ROUTES: `webhooks`, consumed by webhook workers
only), so an endpoint that does not answer holds a webhook worker and never grant issuance, emails or reminders.
Among endpoints, a circuit breaker (`endpoint_turn`) keeps a failing one from holding the webhook workers: after a
failure it gets no attempt for a pause, then one attempt at a time, while other endpoints' deliveries go by.

Payloads carry ids and states only: no names, emails, reasons, secrets or signed URLs.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import urllib3
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext as _
from standardwebhooks import Webhook

from . import emails, metrics
from .models import (
    AccessRequest,
    Advisory,
    AuditEvent,
    FlawReport,
    Grant,
    LibraryCard,
    ReleaseDocument,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from .taskbase import portal_task

log = logging.getLogger(__name__)
D = WebhookDelivery.Status

# Audit action → webhook event type. Nothing else decides what is told.
EVENTS = {
    "request.submitted": "access_request.submitted",
    "request.request_info": "access_request.needs_info",
    "request.answer": "access_request.answered",
    "request.approve": "access_request.approved",
    "request.reject": "access_request.rejected",
    # A renewal closed because the grant it would renew was revoked: a rejection.
    "request.close": "access_request.rejected",
    "request.withdraw": "access_request.withdrawn",
    # A question left unanswered after its reminder: the portal closed the request as withdrawn.
    "request.lapse": "access_request.withdrawn",
    "grant.issued": "grant.issued",
    "grant.revoked": "grant.revoked",
    "grant.expiring": "grant.expiring",
    "grant.expired": "grant.expired",
    # A holder accepted a new license version, or a lab member accepted the license for the lab's grant.
    "grant.license_accepted": "grant.license_accepted",
    "lab.license_accepted": "grant.license_accepted",
    # Flaw reports: every change of state (access.services.flaws).
    "flaw_report.received": "flaw_report.received",
    "flaw_report.triaged": "flaw_report.triaged",
    "flaw_report.accepted": "flaw_report.accepted",
    "flaw_report.declined": "flaw_report.declined",
    "flaw_report.duplicate": "flaw_report.duplicate",
    "flaw_report.resolved": "flaw_report.resolved",
    "flaw_report.reopened": "flaw_report.reopened",
    # Stewardship: reports, the holder closing their access, close-outs and the public register.
    "grant.progress_report": "grant.progress_report",
    "grant.closed": "grant.closed",
    "closeout.asked": "grant.closeout_asked",
    "closeout.reminded": "grant.closeout_reminded",
    "closeout.completed": "grant.closeout_completed",
    "register.withdrawn": "grant.register_withdrawn",
    # A release's documents: added, a new version, its settings or revisions changed; a holder acknowledged one.
    "document.created": "release_document.published",
    "document.version_added": "release_document.published",
    "document.updated": "release_document.changed",
    "document.attached": "release_document.changed",
    "document.acknowledged": "release_document.acknowledged",
    # A signing official vouched for a researcher, or the card ended (revoked, or the affiliation was lost).
    "library_card.issued": "library_card.issued",
    "library_card.revoked": "library_card.revoked",
    # Advisories: publication (access.services.advisories).
    "advisory.published": "advisory.published",
}
EVENT_TYPES = sorted(set(EVENTS.values()))
# How long a worker holds a claimed delivery before the sweep may try it again (it died mid-send).
CLAIM_SECONDS = 120
# Retries further off than this wait for the sweep instead of a countdown message: a Redis broker redelivers
# messages held longer than its visibility timeout.
COUNTDOWN_MAX_SECONDS = 600
# The sweep leaves a due delivery this long to its own message before enqueuing it again.
SWEEP_GRACE_SECONDS = 30
# The longest a failing endpoint rests between attempts (the circuit breaker's pause grows up to this).
BREAKER_MAX_PAUSE_SECONDS = 3600
USER_AGENT = "model-access-portal-webhooks/1"


class UnsafeUrl(ValueError):
    """A URL the portal will not post to."""


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# --- What is told -----------------------------------------------------------------------------------------


def dispatch(event: AuditEvent, *, target=None, access_request: AccessRequest | None = None) -> list[int]:
    """Record a delivery for each endpoint that wants this event (inside the caller's transaction) and enqueue
    it on commit. Most audit actions (every refused download) map to no event and cost one dict lookup."""
    event_type = EVENTS.get(event.action)
    if event_type is None:
        return []
    grant = target if isinstance(target, Grant) else None
    card = target if isinstance(target, LibraryCard) else None
    access_request = access_request or (target if isinstance(target, AccessRequest) else None)
    flaw_report = target if isinstance(target, FlawReport) else None
    document = target if isinstance(target, ReleaseDocument) else None
    release_id = grant.release_id if grant else access_request.release_id if access_request else None
    release_id = flaw_report.release_id if flaw_report else document.release_id if document else release_id
    advisory = target if isinstance(target, Advisory) else None
    release_id = advisory.release_id if advisory else release_id
    endpoints = WebhookEndpoint.objects.filter(active=True).filter(Q(release__isnull=True) | Q(release_id=release_id))
    created = []
    payload = None
    for endpoint in endpoints:
        if endpoint.events and event_type not in endpoint.events:
            continue
        payload = payload or build_payload(
            event,
            event_type,
            grant=grant,
            access_request=access_request,
            flaw_report=flaw_report,
            document=document,
            card=card,
            advisory=advisory,
        )
        delivery = WebhookDelivery.objects.create(
            endpoint=endpoint,
            audit_event=event,
            event_type=event_type,
            payload=payload,
            next_attempt_at=event.created_at,
            scheduled_at=event.created_at,
        )
        webhook_deliver.enqueue(delivery.pk)
        created.append(delivery.pk)
    return created


def build_payload(
    event: AuditEvent,
    event_type: str,
    *,
    grant,
    access_request,
    flaw_report=None,
    document=None,
    card=None,
    advisory=None,
) -> dict:
    data: dict = {}
    if advisory is not None:
        data["advisory"] = {
            "id": advisory.identifier,
            "public_id": advisory.public_id,
            "release": advisory.release.repo_id,
            "severity": advisory.severity,
            "affected_revisions": sorted(advisory.affected_revisions.values_list("sha", flat=True)),
            "fixed_revision": advisory.fixed_revision.sha if advisory.fixed_revision_id else None,
            "embargo_until": iso(advisory.embargo_until) if advisory.embargo_until else None,
        }
    if flaw_report is not None:
        data["flaw_report"] = {
            "id": flaw_report.public_id,
            "release": flaw_report.release.repo_id,
            "status": flaw_report.status,
            "previous_status": event.data.get("from"),
            "severity": flaw_report.shown_severity,
            "revisions": sorted(flaw_report.revisions.values_list("sha", flat=True)),
            "duplicate_of": flaw_report.duplicate_of.public_id if flaw_report.duplicate_of_id else None,
        }
    if document is not None:
        data["document"] = {
            "id": document.public_id,
            "release": document.release.repo_id,
            "kind": document.kind,
            "title": document.title,
            "visibility": document.visibility,
            "acknowledge_required": document.acknowledge_required,
            "version": event.data.get("version"),
            "sha256": event.data.get("sha256"),
        }
    if card is not None:
        data["library_card"] = {
            "id": card.public_id,
            "institution": card.institution.ror_id,
            "all_releases": card.all_releases,
            "releases": sorted(r.repo_id for r in card.releases.all()),
            "issued_at": iso(card.issued_at),
            "expires_at": iso(card.expires_at),
            "revoked_at": iso(card.revoked_at) if card.revoked_at else None,
            "ending": card.ending or None,
        }
    if access_request is not None:
        data["access_request"] = {
            "id": access_request.public_id,
            "release": access_request.release.repo_id,
            "status": access_request.status,
            "previous_status": event.data.get("from"),
            "origin": access_request.origin,
            "renewal_of": access_request.renewal_of.public_id if access_request.renewal_of_id else None,
        }
    if grant is not None:
        data["grant"] = {
            "id": grant.public_id,
            "release": grant.release.repo_id,
            "access_request": grant.request.public_id,
            "issued_at": iso(grant.issued_at),
            "expires_at": iso(grant.expires_at),
            "revoked_at": iso(grant.revoked_at) if grant.revoked_at else None,
            "active": grant.is_active,
            "lab": grant.lab.public_id if grant.lab_id else None,
        }
        if event_type == "grant.license_accepted":
            data["license"] = {"slug": event.data.get("license"), "version": event.data.get("version")}
        if event_type.startswith("grant.closeout_"):
            data["closeout"] = {k: event.data.get(k) for k in ("closeout", "scope", "reason", "days")}
            data["closeout"]["id"] = data["closeout"].pop("closeout")
        if event_type == "grant.progress_report":
            data["progress_report"] = {"id": event.data.get("report"), "renewal": event.data.get("renewal")}
    return {"type": event_type, "timestamp": iso(event.created_at), "data": data}


# --- Secrets ----------------------------------------------------------------------------------------------


def endpoint_secret(endpoint: WebhookEndpoint) -> str:
    """The endpoint's signing secret, derived from its salt and the server's key, so the database holds none."""
    raw = salted_hmac(
        "access.webhooks.secret", endpoint.secret_salt, secret=settings.WEBHOOK_SECRET_KEY, algorithm="sha256"
    ).digest()
    return "whsec_" + base64.b64encode(raw).decode()


# --- Where it may go --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str
    address: str


def _allowed(ip) -> bool:
    return any(ip in network for network in settings.WEBHOOK_ALLOWED_NETWORKS)


def _public(ip) -> bool:
    return ip.is_global and not ip.is_multicast


@dataclass(frozen=True)
class Embedding:
    """An IPv6 prefix whose addresses carry an IPv4 address, where that address sits, and what it means.

    `kind` says how a webhook to such an address travels:
      "is"       the address is the IPv4 address (the host's own stack connects to it over IPv4): judged as it;
      "reaches"  a NAT64 gateway translates it to the IPv4 address, which alone decides (the IPv6 prefix is only
                 the way there; RFC 6052 forbids the well-known prefix for non-global IPv4 addresses anyway);
      "via"      a 6to4 router at the IPv4 address forwards to a host behind it: that IPv4 address must be
                 public, and the IPv6 address is judged like any other;
      "never"    refused whatever it carries."""

    form: str
    network: ipaddress.IPv6Network
    kind: str
    ipv4: Callable[[ipaddress.IPv6Address], list[ipaddress.IPv4Address]]


def _last_32_bits(ip) -> list:
    return [ipaddress.IPv4Address(ip.packed[12:])]


def _rfc6052(length: int):
    """Where RFC 6052 (section 2.2) puts the IPv4 address under a NAT64 prefix of this length: right after the
    prefix, skipping bits 64-71 (which must be zero; an address with anything there carries no IPv4 address)."""

    def ipv4(ip) -> list:
        if length == 96:
            return _last_32_bits(ip)
        if ip.packed[8]:
            return []
        octets = ip.packed[:8] + ip.packed[9:]
        return [ipaddress.IPv4Address(octets[length // 8 : length // 8 + 4])]

    return ipv4


# The transition forms (RFC 6052 NAT64 and RFC 8215 local-use NAT64, RFC 3056 6to4, RFC 4380 Teredo, RFC 4291
# IPv4-compatible and IPv4-mapped). Python's `is_global` calls several of them global whatever they carry, so
# this table decides, before it. A network's own NAT64 prefixes (WEBHOOK_NAT64_PREFIXES) come first.
TRANSITION_PREFIXES = (
    Embedding("IPv4-mapped", ipaddress.IPv6Network("::ffff:0:0/96"), "is", _last_32_bits),
    Embedding("NAT64", ipaddress.IPv6Network("64:ff9b::/96"), "reaches", _last_32_bits),
    # Local use: where the IPv4 address sits is each network's choice, so unlisted it cannot be read.
    Embedding("local-use NAT64", ipaddress.IPv6Network("64:ff9b:1::/48"), "never", lambda ip: []),
    Embedding("6to4", ipaddress.IPv6Network("2002::/16"), "via", lambda ip: [ip.sixtofour]),
    # A tunnel to a host behind NAT (server and client addresses), never a webhook receiver.
    Embedding("Teredo", ipaddress.IPv6Network("2001::/32"), "never", lambda ip: list(ip.teredo)),
    # Deprecated since 2006: only a hostile resolver answers one (a host's `sit` tunnel would send it over IPv4).
    Embedding("IPv4-compatible", ipaddress.IPv6Network("::/96"), "never", _last_32_bits),
)


def embedding(ip) -> Embedding | None:
    """The transition form of an IPv6 address, if it has one."""
    if ip.version != 6:
        return None
    for prefix in settings.WEBHOOK_NAT64_PREFIXES:
        if ip in prefix:
            return Embedding("NAT64", prefix, "reaches", _rfc6052(prefix.prefixlen))
    return next((form for form in TRANSITION_PREFIXES if ip in form.network), None)


def embedded_ipv4(ip) -> list:
    """The IPv4 addresses an IPv6 address carries, read where its form puts them; [] for any other address."""
    form = embedding(ip)
    return form.ipv4(ip) if form else []


def refusal(host: str, ip, *, https: bool) -> tuple[str | None, object]:
    """Whether a webhook may go to `ip`, one of the addresses `host` resolved to: (None, the address to connect
    to), or (why not, None). The one rule for registration and for every attempt.

    WEBHOOK_ALLOWED_NETWORKS lets chosen networks in, over plain http too. Otherwise: https, to a public address;
    an IPv6 address that carries an IPv4 address is also judged by that address, as its form says."""
    form = embedding(ip)
    carried = form.ipv4(ip) if form else []
    names = {"host": host, "ip": ip}
    if form is not None and form.kind == "is":
        ip = carried[0]
    if _allowed(ip):
        return None, ip
    if not https:
        return _("Webhook URLs must be https:// URLs."), None
    if form is not None and (form.kind == "never" or not carried):
        return _("%(host)s resolves to %(ip)s (%(form)s); webhooks are not sent to such addresses.") % {
            **names,
            "form": form.form,
        }, None
    for ipv4 in carried:
        if not _public(ipv4):
            return _(
                "%(host)s resolves to %(ip)s, which reaches %(ipv4)s (%(form)s), a private, loopback or link-local "
                "address."
            ) % {**names, "ipv4": ipv4, "form": form.form}, None
    # A NAT64 address goes where its IPv4 address goes; any other is judged itself too.
    if (form is None or form.kind == "via") and not _public(ip):
        return _("%(host)s resolves to %(ip)s, a private, loopback or link-local address.") % names, None
    return None, ip


def check_url(url: str) -> Target:
    """Where a webhook URL really points, refusing anything but https to public addresses (`refusal`). Every
    address the host resolves to is checked (one private address among public ones is refused), and the caller
    connects to the address checked here."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeUrl(_("This is not a valid URL.")) from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UnsafeUrl(_("Webhook URLs must be https:// URLs."))
    if parts.username or parts.password:
        raise UnsafeUrl(_("Webhook URLs cannot carry a user name or password."))
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise UnsafeUrl(_("%(host)s does not resolve.") % {"host": parts.hostname}) from None
    addresses = []
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        why, address = refusal(parts.hostname, ip, https=parts.scheme == "https")
        if why:
            raise UnsafeUrl(why)
        addresses.append(address)
    if not addresses:
        raise UnsafeUrl(_("%(host)s does not resolve.") % {"host": parts.hostname})
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, parts.hostname, port, path, str(addresses[0]))


# --- Sending ----------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    ok: bool
    code: int | None = None
    latency_ms: int | None = None
    error: str = ""


def sign(endpoint: WebhookEndpoint, msg_id: str, body: str, when: datetime) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(endpoint_secret(endpoint)).sign(msg_id, when, body),
    }


def _connect_seconds() -> float:
    return min(3.0, settings.WEBHOOK_TIMEOUT_SECONDS)


def attempt_seconds() -> float:
    """The longest one attempt can take (connecting, then WEBHOOK_TIMEOUT_SECONDS for the whole answer)."""
    return _connect_seconds() + settings.WEBHOOK_TIMEOUT_SECONDS


def post(endpoint: WebhookEndpoint, msg_id: str, payload: dict) -> Outcome:
    """One signed POST. Never raises: whatever goes wrong is the attempt's outcome."""
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    try:
        target = check_url(endpoint.url)
    except UnsafeUrl as exc:
        return Outcome(False, error=str(exc)[:300])
    headers = {
        **sign(endpoint, msg_id, body, timezone.now()),
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Host": target.host if target.port in (80, 443) else f"{target.host}:{target.port}",
    }
    # `total` bounds the whole exchange: a receiver dripping one byte at a time cannot hold a worker.
    timeout = urllib3.Timeout(
        connect=_connect_seconds(), read=settings.WEBHOOK_TIMEOUT_SECONDS, total=attempt_seconds()
    )
    if target.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            target.address,
            target.port,
            timeout=timeout,
            retries=False,
            server_hostname=target.host,
            assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
        )
    else:
        pool = urllib3.HTTPConnectionPool(target.address, target.port, timeout=timeout, retries=False)
    started = time.perf_counter()
    try:
        with pool:
            response = pool.urlopen(
                "POST", target.path, body=body.encode(), headers=headers, redirect=False, preload_content=False
            )
            response.read(4096)  # the body is not kept; a receiver may not stream forever
            response.release_conn()
    except Exception as exc:  # every transport error is a failed attempt, retried on the schedule below
        latency = int((time.perf_counter() - started) * 1000)
        return Outcome(False, latency_ms=latency, error=f"{type(exc).__name__}: {exc}"[:300])
    latency = int((time.perf_counter() - started) * 1000)
    metrics.WEBHOOK_LATENCY.observe(latency / 1000)
    if 200 <= response.status < 300:
        return Outcome(True, response.status, latency)
    error = "redirects are not followed" if 300 <= response.status < 400 else f"HTTP {response.status}"
    return Outcome(False, response.status, latency, error)


def retry_delay(attempts: int) -> float:
    """Seconds before attempt number attempts+1: WEBHOOK_RETRY_BASE_SECONDS doubled after each failure."""
    return settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1)


def breaker_pause(failing_for: timedelta) -> float:
    """Seconds a failing endpoint rests after a failed attempt: as long as it has been failing, from
    WEBHOOK_RETRY_BASE_SECONDS up to BREAKER_MAX_PAUSE_SECONDS, so the pauses about double, as one delivery's
    retries do (and a lone delivery's schedule is unchanged: its next retry is never sooner than the pause)."""
    seconds = max(settings.WEBHOOK_RETRY_BASE_SECONDS, failing_for.total_seconds())
    return min(seconds, max(BREAKER_MAX_PAUSE_SECONDS, settings.WEBHOOK_RETRY_BASE_SECONDS))


def endpoint_turn(endpoint_id: int, *, now: datetime | None = None) -> datetime | None:
    """Whether a delivery may be attempted at this endpoint now (None), or when to come back: the circuit breaker.

    An endpoint that answers takes every delivery at once. One that is failing takes none until the pause after
    its last failure is over, then one at a time: the attempt that gets the turn holds the endpoint for the
    longest an attempt can take, and the others come back after it. So endpoints that do not answer hold at most
    one webhook worker each, once per pause, and every other endpoint's deliveries go by."""
    now = now or timezone.now()
    if not WebhookEndpoint.objects.filter(pk=endpoint_id, failing_since__isnull=False).exists():
        return None
    held = now + timedelta(seconds=attempt_seconds() + 5)
    turn = WebhookEndpoint.objects.filter(pk=endpoint_id, failing_since__isnull=False).filter(
        Q(paused_until__isnull=True) | Q(paused_until__lte=now)
    )
    if turn.update(paused_until=held):
        return None
    endpoint = WebhookEndpoint.objects.only("failing_since", "paused_until").get(pk=endpoint_id)
    if endpoint.failing_since is None or endpoint.paused_until is None:
        return None  # it answered meanwhile
    return endpoint.paused_until


def defer(delivery: WebhookDelivery, *, until: datetime) -> WebhookDelivery:
    """Put a claimed delivery back, without an attempt, until its endpoint's turn."""
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=until)
    delay = max(0.0, (until - timezone.now()).total_seconds())
    if delay <= COUNTDOWN_MAX_SECONDS:
        webhook_deliver.enqueue(delivery.pk, countdown=delay)
    delivery.next_attempt_at = until
    return delivery


def deliver(*, delivery_id: int) -> WebhookDelivery | None:
    """Make the attempt that is due, if it is still due (a duplicate message, or a sweep that raced a
    countdown, finds it claimed or done and does nothing), and if its endpoint's breaker lets it (otherwise the
    delivery waits for the endpoint's turn, no attempt made)."""
    now = timezone.now()
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id, status__in=[D.PENDING, D.RETRYING], next_attempt_at__lte=now, endpoint__active=True
    ).update(next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS))
    if not claimed:
        return None
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    turn = endpoint_turn(delivery.endpoint_id, now=now)
    if turn is not None:
        return defer(delivery, until=turn)
    outcome = post(delivery.endpoint, delivery.webhook_id, delivery.payload)
    metrics.WEBHOOKS.labels(delivery.event_type, "sent" if outcome.ok else "failed").inc()
    return record(delivery, outcome, at=now)


def record(delivery: WebhookDelivery, outcome: Outcome, *, at: datetime) -> WebhookDelivery:
    disable = False
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().select_related("endpoint").get(pk=delivery.pk)
        endpoint = delivery.endpoint
        WebhookAttempt.objects.create(
            delivery=delivery,
            created_at=at,
            succeeded=outcome.ok,
            response_code=outcome.code,
            latency_ms=outcome.latency_ms,
            error=outcome.error,
        )
        delivery.attempts += 1
        delivery.last_attempt_at, delivery.response_code = at, outcome.code
        delivery.latency_ms, delivery.error = outcome.latency_ms, outcome.error
        delay = None
        if outcome.ok:
            delivery.status, delivery.next_attempt_at = D.SUCCEEDED, None
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=None, paused_until=None)
        else:
            WebhookEndpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=True).update(failing_since=at)
            endpoint.refresh_from_db(fields=["failing_since"])
            now = timezone.now()
            paused_until = now + timedelta(seconds=breaker_pause(now - (endpoint.failing_since or at)))
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(paused_until=paused_until)
            delay = max(retry_delay(delivery.attempts), (paused_until - now).total_seconds())
            window_ends = (delivery.scheduled_at or delivery.created_at) + timedelta(
                seconds=settings.WEBHOOK_RETRY_WINDOW_SECONDS
            )
            if now + timedelta(seconds=delay) > window_ends:
                delivery.status, delivery.next_attempt_at, delay = D.FAILED, None, None
            else:
                delivery.status = D.RETRYING
                delivery.next_attempt_at = now + timedelta(seconds=delay)
            limit = timedelta(seconds=settings.WEBHOOK_DISABLE_AFTER_SECONDS)
            disable = endpoint.failing_since is not None and at - endpoint.failing_since >= limit
        delivery.save(
            update_fields=[
                "attempts",
                "last_attempt_at",
                "response_code",
                "latency_ms",
                "error",
                "status",
                "next_attempt_at",
            ]
        )
        if delay is not None and delay <= COUNTDOWN_MAX_SECONDS:
            webhook_deliver.enqueue(delivery.pk, countdown=delay)
    if disable:
        disable_failing(endpoint)
    return delivery


def disable_failing(endpoint: WebhookEndpoint) -> bool:
    """Stop posting to an endpoint that keeps failing, fail what waits for it, and tell its owner once."""
    now = timezone.now()
    with transaction.atomic():
        disabled = WebhookEndpoint.objects.filter(pk=endpoint.pk, active=True).update(
            active=False,
            disabled_at=now,
            disabled_reason=f"Every attempt failed since {iso(endpoint.failing_since)}.",
        )
        if disabled:
            WebhookDelivery.objects.filter(endpoint=endpoint, status__in=[D.PENDING, D.RETRYING]).update(
                status=D.FAILED, next_attempt_at=None, error="endpoint disabled"
            )
    if not disabled:
        return False
    endpoint.refresh_from_db()
    log.warning("webhook endpoint %s disabled after failing since %s", endpoint.public_id, endpoint.failing_since)
    emails.send_once(
        dedupe_key=f"webhook-disabled:{endpoint.pk}:{now:%Y%m%d%H%M%S}",
        template="webhook_disabled",
        to=endpoint.owner.email,
        context={"endpoint": endpoint},
    )
    return True


@portal_task("access.tasks.webhook_deliver")
def webhook_deliver(delivery_id: int) -> str | None:
    delivery = deliver(delivery_id=delivery_id)
    return delivery.status if delivery else None


def sweep() -> list[int]:
    """Deliveries whose time has come but whose message is gone (a broker outage, a worker killed mid-send, a
    retry too far off for a countdown): enqueue them again."""
    due = WebhookDelivery.objects.filter(
        status__in=[D.PENDING, D.RETRYING],
        next_attempt_at__lte=timezone.now() - timedelta(seconds=SWEEP_GRACE_SECONDS),
        endpoint__active=True,
    ).values_list("pk", flat=True)[:1000]
    due = list(due)
    for pk in due:
        webhook_deliver.apply_async(args=(pk,), retry=False)
    return due


@portal_task("access.tasks.webhooks_sweep")
def webhooks_sweep() -> list[int]:
    return sweep()
