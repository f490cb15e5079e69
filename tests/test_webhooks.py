"""Signed webhooks: what is told to whom, where the portal will post, and delivery against a real receiver that
verifies every signature with the standardwebhooks library, through a real Celery worker."""

import ipaddress
import itertools
import json
import os
import re
import socket
import subprocess
import sys
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from access import services, webhooks
from access.models import (
    AuditEvent,
    Grant,
    OutboundEmail,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from tests.factories import ANSWERS, AccessRequestFactory, ReleaseFactory, UserFactory, grant_for
from tests.support.auth import login_recently
from tests.support.processes import CeleryWorker, wait_until
from tests.support.webhook_receiver import Receiver

pytestmark = pytest.mark.django_db
LOCAL = ["127.0.0.0/8"]
# One worker for grants, emails and webhooks, where a test is about delivery itself.
BOTH_QUEUES = ["celery", "webhooks"]


@pytest.fixture
def manager(db):
    return UserFactory(email="ada@portal.example", is_staff=True, is_superuser=True)


@pytest.fixture
def as_manager(manager):
    return services.Actor(user=manager, credential="session", reauthenticated=True)


@pytest.fixture
def local_ok(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = [ipaddress.ip_network(n) for n in LOCAL]


@pytest.fixture
def gated(db):
    return ReleaseFactory(repo_id="facebook/opt-175b", access="gated")


def endpoint(as_manager, url="http://127.0.0.1:9/hooks", **kwargs):
    return services.webhook_endpoint_create(actor=as_manager, url=url, events=kwargs.pop("events", []), **kwargs)


def deliveries(**filters):
    return list(WebhookDelivery.objects.filter(**filters).order_by("id").values_list("event_type", flat=True))


# --- What is told to whom -----------------------------------------------------------------------------------


def test_every_access_event_becomes_one_delivery_per_endpoint(local_ok, as_manager, gated, alice, bob, reviewer):
    endpoint(as_manager)
    rita = services.Actor(user=reviewer, credential="session", reauthenticated=True)
    request = services.request_submit(
        actor=services.Actor(user=alice, credential="session"),
        release=gated,
        data={**ANSWERS, "noncommercial_attested": True},
        license_accepted=True,
    )
    services.request_ask_info(actor=rita, access_request=request, question="Which lab?")
    services.request_answer(
        actor=services.Actor(user=alice, credential="session"), access_request=request, answer="Mine."
    )
    services.request_approve(actor=rita, access_request=request)
    grant = services.grant_issue(request_id=request.pk)  # what the worker runs on commit
    services.grant_revoke(actor=rita, grant=grant, reason="Shared the weights.")
    withdrawn = AccessRequestFactory(applicant=bob, release=gated)
    services.request_withdraw(actor=services.Actor(user=bob, credential="session"), access_request=withdrawn)
    rejected = AccessRequestFactory(release=gated)
    services.request_reject(actor=rita, access_request=rejected, reason="No.")
    assert deliveries() == [
        "access_request.submitted",
        "access_request.needs_info",
        "access_request.answered",
        "access_request.approved",
        "grant.issued",
        "grant.revoked",
        "grant.closeout_asked",  # the revoked holder is asked to certify deletion
        "access_request.withdrawn",
        "access_request.rejected",
    ]


def test_the_steps_of_stewardship_are_told(local_ok, as_manager, gated, alice, reviewer):
    endpoint(as_manager)
    grant = grant_for(alice, gated, reviewer)
    holder = services.Actor(user=alice, credential="session")
    services.progress_report_file(actor=holder, grant=grant, report={"summary": "Studied calibration."})
    services.grant_close(actor=holder, grant=grant)
    services.closeout_file(
        actor=holder, grant=grant, deleted_on=timezone.now().date(), locations=1, statement="Deleted."
    )
    told = deliveries()
    assert told[-4:] == ["grant.progress_report", "grant.closed", "grant.closeout_asked", "grant.closeout_completed"]
    payload = WebhookDelivery.objects.filter(event_type="grant.closeout_completed").get().payload
    assert payload["data"]["closeout"]["scope"] == "personal" and payload["data"]["grant"]["id"] == grant.public_id
    assert "Deleted." not in str(payload)


def test_expiry_warnings_and_expiries_are_told(local_ok, as_manager, gated, alice, reviewer, settings):
    endpoint(as_manager, events=["grant.expiring", "grant.expired"])
    grant = grant_for(alice, gated, reviewer)
    Grant.objects.filter(pk=grant.pk).update(expires_at=timezone.now() + timedelta(days=3))
    services.grants_expire()
    Grant.objects.filter(pk=grant.pk).update(
        issued_at=timezone.now() - timedelta(days=400), expires_at=timezone.now() - timedelta(minutes=1)
    )
    services.grants_expire()
    services.grants_expire()  # idempotent: told once each
    assert deliveries() == ["grant.expiring", "grant.expired"]
    payload = WebhookDelivery.objects.get(event_type="grant.expired").payload
    assert payload["data"]["grant"]["id"] == grant.public_id and payload["data"]["grant"]["active"] is False


def test_endpoints_get_only_their_events_and_release(local_ok, as_manager, gated, alice, reviewer):
    other = ReleaseFactory(repo_id="facebook/opt-66b", access="gated")
    approvals = endpoint(as_manager, events=["access_request.approved"])[0]
    only_other = endpoint(as_manager, release=other)[0]
    switched_off = endpoint(as_manager)[0]
    services.webhook_endpoint_set_active(actor=as_manager, endpoint=switched_off, active=False)
    grant_for(alice, gated, reviewer)
    assert deliveries(endpoint=approvals) == ["access_request.approved"]
    assert deliveries(endpoint=only_other) == [] and deliveries(endpoint=switched_off) == []
    grant_for(alice, other, reviewer)
    assert deliveries(endpoint=only_other) == ["access_request.approved", "grant.issued"]


def test_a_change_that_rolls_back_tells_no_one(local_ok, as_manager, gated, reviewer):
    endpoint(as_manager)
    request = AccessRequestFactory(release=gated)
    with pytest.raises(RuntimeError), transaction.atomic():
        services.request_reject(
            actor=services.Actor(user=reviewer, credential="session", reauthenticated=True),
            access_request=request,
            reason="No.",
        )
        raise RuntimeError
    assert not WebhookDelivery.objects.exists()


def test_payloads_carry_ids_and_states_never_people_reasons_or_urls(local_ok, as_manager, gated, alice, reviewer):
    endpoint(as_manager)
    grant = grant_for(alice, gated, reviewer)
    services.grant_revoke(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True),
        grant=grant,
        reason="Shared the weights secretly.",
    )
    for delivery in WebhookDelivery.objects.all():
        text = json.dumps(delivery.payload)
        assert "@" not in text and "secretly" not in text and "/storage/" not in text and "http" not in text
    revoked = WebhookDelivery.objects.get(event_type="grant.revoked").payload
    assert revoked["data"]["access_request"]["id"] == grant.request.public_id
    assert revoked["data"]["grant"]["revoked_at"] is not None


def test_refused_downloads_and_other_audit_events_tell_nothing(local_ok, as_manager, gated, alice):
    endpoint(as_manager)
    services.token_create(actor=services.Actor(user=alice, credential="session", reauthenticated=True), name="t")
    from access import downloads

    downloads.authorize(actor=services.Actor(user=alice, credential="session"), release=gated, via="api")
    assert AuditEvent.objects.filter(action="download.refused").exists()
    assert not WebhookDelivery.objects.exists()


# --- Where the portal will post ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.215.14/hook",  # plain http
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://10.1.2.3/hook",
        "https://192.168.0.1/hook",
        "https://100.64.0.1/hook",  # carrier-grade NAT
        "https://169.254.169.254/latest/meta-data",  # cloud metadata
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://[fe80::1]/hook",
        "https://0.0.0.0/hook",
        "ftp://93.184.215.14/hook",
        "https://user:pass@93.184.215.14/hook",
        "https://no-such-host.invalid/hook",
    ],
)
def test_it_refuses_urls_outside_public_https(url, as_manager):
    with pytest.raises(webhooks.UnsafeUrl):
        webhooks.check_url(url)
    with pytest.raises(services.ServiceError) as exc:
        endpoint(as_manager, url=url)
    assert exc.value.field == "url"
    assert not WebhookEndpoint.objects.exists()


def test_public_https_is_fine_and_an_allow_list_lets_local_receivers_in(settings):
    target = webhooks.check_url("https://93.184.215.14:8443/hook?x=1")
    assert (target.scheme, target.address, target.port, target.path) == ("https", "93.184.215.14", 8443, "/hook?x=1")
    with pytest.raises(webhooks.UnsafeUrl):
        webhooks.check_url("http://127.0.0.1:8000/hook")
    settings.WEBHOOK_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
    assert webhooks.check_url("http://127.0.0.1:8000/hook").address == "127.0.0.1"
    with pytest.raises(webhooks.UnsafeUrl):
        webhooks.check_url("https://10.1.2.3/hook")  # only the listed networks


def test_the_check_is_made_again_when_sending(local_ok, as_manager, gated, reviewer, settings):
    hook = endpoint(as_manager)[0]
    settings.WEBHOOK_ALLOWED_NETWORKS = []  # as if DNS now pointed the host somewhere private
    outcome = webhooks.post(hook, "msg_x", {"type": "t"})
    assert not outcome.ok and outcome.code is None and "https://" in outcome.error


# --- IPv6 forms that carry an IPv4 address ------------------------------------------------------------------

# Each reaches the IPv4 address it embeds (through a NAT64 gateway, a 6to4 relay, a Teredo server, or the
# host's own stack), so each is judged by that address.
EMBEDDING_PRIVATE = [
    "64:ff9b::a9fe:a9fe",  # NAT64 well-known prefix → 169.254.169.254 (cloud metadata)
    "64:ff9b::7f00:1",  # NAT64 → 127.0.0.1
    "64:ff9b::10.1.2.3",  # NAT64 → 10.1.2.3
    "64:ff9b:1::a9fe:a9fe",  # NAT64 local-use prefix
    "64:ff9b:1:a9fe:a9:fe00::",  # the same, as a /48 network-specific prefix would place it
    "2002:a9fe:a9fe::1",  # 6to4 → 169.254.169.254
    "2002:7f00:1::1",  # 6to4 → 127.0.0.1
    "::a9fe:a9fe",  # IPv4-compatible → 169.254.169.254
    "::10.1.2.3",  # IPv4-compatible → 10.1.2.3
    "::ffff:a9fe:a9fe",  # IPv4-mapped → 169.254.169.254
    "2001:0:a9fe:a9fe::1",  # Teredo, server 169.254.169.254
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1 (stored inverted)
]


def resolving(monkeypatch, host: str, address: str):
    """`host` resolves to `address` (as getaddrinfo answers); every other name resolves as usual."""
    real = socket.getaddrinfo

    def getaddrinfo(name, port, *args, **kwargs):
        if name != host:
            return real(name, port, *args, **kwargs)
        ip = ipaddress.ip_address(address)
        if ip.version == 6:
            return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port or 443, 0, 0))]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port or 443))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize("address", EMBEDDING_PRIVATE)
def test_it_refuses_ipv6_forms_that_embed_a_private_ipv4_when_registering(address, as_manager, client, manager):
    url = f"https://[{address}]/hook"
    with pytest.raises(webhooks.UnsafeUrl):
        webhooks.check_url(url)
    with pytest.raises(services.ServiceError) as exc:
        endpoint(as_manager, url=url)
    assert (exc.value.code, exc.value.field) == ("unsafe_url", "url")
    login_recently(client, manager)
    refused = client.post("/webhooks/", {"url": url})
    assert refused.status_code == 200 and 'id="errors-url"' in refused.content.decode()
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize("address", EMBEDDING_PRIVATE)
def test_a_name_that_resolves_to_such_a_form_is_refused_when_registering(address, as_manager, monkeypatch):
    resolving(monkeypatch, "hooks.example.org", address)
    with pytest.raises(services.ServiceError) as exc:
        endpoint(as_manager, url="https://hooks.example.org/in")
    assert exc.value.field == "url" and str(ipaddress.ip_address(address)) in str(exc.value)
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize("address", EMBEDDING_PRIVATE)
def test_a_name_that_resolves_to_such_a_form_at_send_time_is_not_posted_to(
    address, as_manager, gated, reviewer, monkeypatch
):
    resolving(monkeypatch, "hooks.example.org", "93.184.215.14")
    hook = endpoint(as_manager, url="https://hooks.example.org/in")[0]
    services.request_reject(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True),
        access_request=AccessRequestFactory(release=gated),
        reason="No.",
    )
    delivery = WebhookDelivery.objects.get(endpoint=hook)
    resolving(monkeypatch, "hooks.example.org", address)  # the name's owner points it elsewhere after registering
    outcome = webhooks.post(hook, delivery.webhook_id, delivery.payload)
    assert not outcome.ok and outcome.code is None and outcome.latency_ms is None  # no connection was made
    assert str(ipaddress.ip_address(address)) in outcome.error
    webhooks.deliver(delivery_id=delivery.pk)
    attempt = WebhookAttempt.objects.get(delivery=delivery)
    assert not attempt.succeeded and attempt.response_code is None and attempt.error == outcome.error


@pytest.mark.parametrize(
    ("address", "connects_to"),
    [
        ("64:ff9b::5db8:d70e", "64:ff9b::5db8:d70e"),  # NAT64 to 93.184.215.14: what DNS64 answers on IPv6-only hosts
        ("64:ff9b::93.184.215.14", "64:ff9b::5db8:d70e"),
        ("::ffff:93.184.215.14", "93.184.215.14"),  # IPv4-mapped: that IPv4 address itself
        ("2002:5db8:d70e::1", "2002:5db8:d70e::1"),  # 6to4 behind a public IPv4 address
    ],
)
def test_a_public_ipv4_inside_nat64_6to4_or_a_mapped_address_is_allowed(address, connects_to, as_manager, monkeypatch):
    assert webhooks.check_url(f"https://[{address}]/hook").address == connects_to
    resolving(monkeypatch, "hooks.example.org", address)
    assert webhooks.check_url("https://hooks.example.org/in").address == connects_to
    hook, _ = endpoint(as_manager, url="https://hooks.example.org/in")
    assert hook.pk


@pytest.mark.parametrize(
    "address",
    [
        "::93.184.215.14",  # IPv4-compatible: deprecated since 2006, no host has one
        "2001:0:4136:e378:8000:63bf:a247:28f1",  # Teredo, server 65.54.227.120, client 93.184.215.14
        "64:ff9b:1::5db8:d70e",  # local-use NAT64: where its IPv4 sits is the network's choice
    ],
)
def test_forms_whose_ipv4_is_not_where_the_connection_goes_are_refused_even_when_public(address, as_manager):
    with pytest.raises(webhooks.UnsafeUrl):
        webhooks.check_url(f"https://[{address}]/hook")


# RFC 6052, section 2.4: 192.0.2.33 under a network-specific prefix of each allowed length.
RFC6052_EXAMPLES = [
    ("2001:db8::/32", "2001:db8:c000:221::"),
    ("2001:db8:100::/40", "2001:db8:1c0:2:21::"),
    ("2001:db8:122::/48", "2001:db8:122:c000:2:2100::"),
    ("2001:db8:122:300::/56", "2001:db8:122:3c0:0:221::"),
    ("2001:db8:122:344::/64", "2001:db8:122:344:c0:2:2100:0"),
    ("2001:db8:122:344::/96", "2001:db8:122:344::192.0.2.33"),
]


def nat64(prefix: str, ipv4: str) -> str:
    """The address RFC 6052 gives `ipv4` under `prefix` (bits 64-71 stay zero)."""
    network = ipaddress.ip_network(prefix)
    octets = ipaddress.ip_address(ipv4).packed
    if network.prefixlen == 96:
        return str(ipaddress.ip_address(network.network_address.packed[:12] + octets))
    head = network.network_address.packed[: network.prefixlen // 8] + octets
    head = head[:8] + b"\0" + head[8:]
    return str(ipaddress.ip_address(head.ljust(16, b"\0")))


@pytest.mark.parametrize(("prefix", "example"), RFC6052_EXAMPLES)
def test_a_networks_own_nat64_prefix_is_unwrapped_at_the_place_rfc_6052_gives_its_length(
    prefix, example, settings, as_manager, monkeypatch
):
    assert nat64(prefix, "192.0.2.33") == str(ipaddress.ip_address(example))  # the helper agrees with the RFC
    settings.WEBHOOK_NAT64_PREFIXES = [ipaddress.ip_network(prefix)]
    assert webhooks.embedded_ipv4(ipaddress.ip_address(example)) == [ipaddress.ip_address("192.0.2.33")]
    for private in ("169.254.169.254", "127.0.0.1", "10.1.2.3", "192.0.2.33"):
        with pytest.raises(webhooks.UnsafeUrl, match=re.escape(private)):
            webhooks.check_url(f"https://[{nat64(prefix, private)}]/hook")
    public = nat64(prefix, "93.184.215.14")
    assert webhooks.check_url(f"https://[{public}]/hook").address == public
    resolving(monkeypatch, "hooks.example.org", nat64(prefix, "169.254.169.254"))
    with pytest.raises(services.ServiceError):
        endpoint(as_manager, url="https://hooks.example.org/in")
    settings.WEBHOOK_NAT64_PREFIXES = []  # unlisted, the prefix is a documentation range: refused as not public
    with pytest.raises(webhooks.UnsafeUrl):
        webhooks.check_url(f"https://[{public}]/hook")


def test_a_listed_local_use_nat64_prefix_is_unwrapped_as_listed(settings):
    settings.WEBHOOK_NAT64_PREFIXES = [ipaddress.ip_network("64:ff9b:1:ab00::/56")]
    public = nat64("64:ff9b:1:ab00::/56", "93.184.215.14")
    assert webhooks.check_url(f"https://[{public}]/hook").address == public
    with pytest.raises(webhooks.UnsafeUrl, match=re.escape("169.254.169.254")):
        webhooks.check_url(f"https://[{nat64('64:ff9b:1:ab00::/56', '169.254.169.254')}]/hook")
    with pytest.raises(webhooks.UnsafeUrl):  # the rest of the local-use /48 is still refused
        webhooks.check_url("https://[64:ff9b:1::5db8:d70e]/hook")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2001:db8::/80", "32, 40, 48, 56, 64 or 96"),
        ("192.0.2.0/24", "IPv6"),
        ("not-a-prefix", "WEBHOOK_NAT64_PREFIXES"),
    ],
)
def test_a_nat64_prefix_of_another_length_stops_the_process(value, message):
    result = subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; print(settings.WEBHOOK_NAT64_PREFIXES)"],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings", "WEBHOOK_NAT64_PREFIXES": value},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr, result.stderr[-500:]


# --- Secrets and who manages endpoints ---------------------------------------------------------------------


def test_the_signing_secret_is_shown_once_and_stored_nowhere(local_ok, as_manager, client, manager):
    hook, secret = endpoint(as_manager)
    assert secret.startswith("whsec_") and webhooks.endpoint_secret(hook) == secret
    raw = secret.removeprefix("whsec_")
    rows = json.dumps(list(WebhookEndpoint.objects.values()), default=str)
    events = json.dumps(list(AuditEvent.objects.values()), default=str)
    assert raw not in rows and raw not in events and secret not in rows
    login_recently(client, manager)
    page = client.get(f"/webhooks/{hook.public_id}/").content.decode()
    assert raw not in page  # only the page right after creating or re-keying shows it
    admin_page = client.get(f"/admin/access/webhookendpoint/{hook.pk}/change/")
    assert admin_page.status_code == 200 and hook.url in admin_page.content.decode()
    assert raw not in admin_page.content.decode() and hook.secret_salt not in admin_page.content.decode()
    new = services.webhook_endpoint_rotate_secret(actor=as_manager, endpoint=hook)
    assert new != secret and webhooks.endpoint_secret(WebhookEndpoint.objects.get()) == new


def test_creating_an_endpoint_on_the_page_shows_its_secret_once(local_ok, client, manager, gated):
    login_recently(client, manager)
    response = client.post(
        "/webhooks/",
        {"url": "http://127.0.0.1:9/in", "events": ["grant.issued", "grant.revoked"], "release": gated.pk},
    )
    hook = WebhookEndpoint.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/webhooks/{hook.public_id}/"
    assert (hook.events, hook.release, hook.owner) == (["grant.issued", "grant.revoked"], gated, manager)
    first = client.get(response["Location"]).content.decode()
    assert webhooks.endpoint_secret(hook) in first
    assert webhooks.endpoint_secret(hook) not in client.get(response["Location"]).content.decode()
    refused = client.post("/webhooks/", {"url": "https://10.0.0.1/in"})
    assert refused.status_code == 200 and "private, loopback or link-local" in refused.content.decode()


def test_only_managers_see_the_pages_and_only_with_a_recent_password(local_ok, client, manager, reviewer, alice):
    for someone in (alice, reviewer):
        client.force_login(someone)
        assert client.get("/webhooks/").status_code == 404
        with pytest.raises(services.Forbidden):
            endpoint(services.Actor(user=someone, credential="session", reauthenticated=True))
    client.force_login(manager)  # signed in long ago
    assert client.get("/webhooks/").status_code == 200
    stale = client.post("/webhooks/", {"url": "http://127.0.0.1:9/in"})
    assert stale.status_code == 302 and "/reauthenticate/" in stale["Location"]
    with pytest.raises(services.Forbidden) as exc:
        endpoint(services.Actor(user=manager, credential="session", reauthenticated=False))
    assert exc.value.code == "reauthentication_required"
    with pytest.raises(services.Forbidden):
        endpoint(services.Actor(user=manager, credential="token:1"))
    assert not WebhookEndpoint.objects.exists()


def test_a_release_manager_is_whoever_holds_the_permission(local_ok, client, alice):
    from django.contrib.auth.models import Permission

    alice.user_permissions.add(Permission.objects.get(codename="manage_webhooks"))
    alice = type(alice).objects.get(pk=alice.pk)
    hook, _ = endpoint(services.Actor(user=alice, credential="session", reauthenticated=True))
    assert hook.owner == alice


# --- Delivery against a real receiver, through a real worker ------------------------------------------------


@pytest.fixture
def hook_worker_env(worker_env, local_ok):
    worker_env.update(
        WEBHOOK_ALLOWED_NETWORKS=",".join(LOCAL), WEBHOOK_RETRY_BASE_SECONDS="1", WEBHOOK_TIMEOUT_SECONDS="2"
    )
    return worker_env


@pytest.fixture
def receivers():
    started = []

    def start(receiver):
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


def live_endpoint(as_manager, receivers, **options):
    receiver = Receiver(**options)
    hook, secret = endpoint(as_manager, url=receiver.url)
    receivers(receiver.start(secret))
    return hook, receiver


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_delivers_signed_events_the_receiver_verifies(
    hook_worker_env, as_manager, receivers, gated, alice, reviewer
):
    hook, receiver = live_endpoint(as_manager, receivers)
    worker = CeleryWorker(hook_worker_env, queues=BOTH_QUEUES).start()
    try:
        request = AccessRequestFactory(applicant=alice, release=gated)
        services.request_approve(
            actor=services.Actor(user=reviewer, credential="session", reauthenticated=True), access_request=request
        )
        seen = wait_until(lambda: len(receiver.requests()) >= 2 and receiver.requests(), timeout=30)
    finally:
        worker.stop()
    assert sorted(r["type"] for r in seen) == ["access_request.approved", "grant.issued"]
    assert all(r["verified"] for r in seen), seen
    by_type = {r["type"]: r for r in seen}
    delivery = WebhookDelivery.objects.get(event_type="grant.issued")
    assert by_type["grant.issued"]["id"] == delivery.webhook_id
    assert by_type["grant.issued"]["payload"]["data"]["grant"]["id"] == Grant.objects.get(request=request).public_id
    assert WebhookDelivery.objects.filter(endpoint=hook, status="succeeded").count() == 2
    attempt = WebhookAttempt.objects.filter(delivery=delivery).get()
    assert attempt.succeeded and attempt.response_code == 200 and attempt.latency_ms is not None


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_receiver_that_fails_twice_gets_exactly_one_successful_delivery(
    hook_worker_env, as_manager, receivers, gated, reviewer
):
    _hook, receiver = live_endpoint(as_manager, receivers, fail=2)
    worker = CeleryWorker(hook_worker_env, queues=BOTH_QUEUES).start()
    try:
        request = AccessRequestFactory(release=gated)
        services.request_reject(
            actor=services.Actor(user=reviewer, credential="session", reauthenticated=True),
            access_request=request,
            reason="No.",
        )
        delivery = WebhookDelivery.objects.get()
        wait_until(lambda: WebhookDelivery.objects.get(pk=delivery.pk).status == "succeeded", timeout=30)
    finally:
        worker.stop()
    seen = receiver.requests()
    assert [r["answered"] for r in seen] == [500, 500, 200], seen
    assert all(r["verified"] for r in seen) and {r["id"] for r in seen} == {delivery.webhook_id}
    assert len({r["timestamp"] for r in seen}) >= 2  # each attempt is signed afresh
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("succeeded", 3, 200)
    log = list(WebhookAttempt.objects.filter(delivery=delivery).values_list("succeeded", "response_code"))
    assert log == [(False, 500), (False, 500), (True, 200)]
    times = list(delivery.attempt_log.values_list("created_at", flat=True))
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(times)]
    # Exponential backoff: at least 1 s, then at least 2 s (a loaded machine only adds to either).
    assert gaps[0] >= 0.9 and gaps[1] >= 1.9, gaps


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_an_endpoint_that_keeps_failing_is_disabled_and_its_owner_emailed(
    hook_worker_env, as_manager, manager, receivers, gated, reviewer
):
    hook_worker_env["WEBHOOK_DISABLE_AFTER_SECONDS"] = "2"
    hook, receiver = live_endpoint(as_manager, receivers, status=503)
    worker = CeleryWorker(hook_worker_env, queues=BOTH_QUEUES).start()
    try:
        request = AccessRequestFactory(release=gated)
        services.request_reject(
            actor=services.Actor(user=reviewer, credential="session", reauthenticated=True),
            access_request=request,
            reason="No.",
        )
        wait_until(lambda: not WebhookEndpoint.objects.get(pk=hook.pk).active, timeout=30)
        wait_until(lambda: OutboundEmail.objects.filter(template="webhook_disabled").exists(), timeout=10)
    finally:
        worker.stop()
    hook.refresh_from_db()
    assert hook.disabled_at is not None and "failed" in hook.disabled_reason
    assert OutboundEmail.objects.get(template="webhook_disabled").to == manager.email
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "failed" and delivery.attempts >= 2
    assert all(r["verified"] and r["answered"] == 503 for r in receiver.requests())


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_redirects_are_not_followed_and_a_manual_redelivery_sends_the_same_id(
    hook_worker_env, as_manager, manager, receivers, gated, reviewer, client, settings
):
    settings.WEBHOOK_RETRY_WINDOW_SECONDS = 0  # the first failure is final here
    hook, receiver = live_endpoint(as_manager, receivers, status=302)
    request = AccessRequestFactory(release=gated)
    services.request_reject(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True),
        access_request=request,
        reason="No.",
    )
    delivery = WebhookDelivery.objects.get()
    webhooks.deliver(delivery_id=delivery.pk)  # in this process: the settings above apply
    delivery.refresh_from_db()
    assert (delivery.status, delivery.response_code, delivery.error) == ("failed", 302, "redirects are not followed")
    assert len(receiver.requests()) == 1  # the Location was not visited

    worker = CeleryWorker(hook_worker_env, queues=BOTH_QUEUES).start()
    try:
        login_recently(client, manager)
        response = client.post(f"/webhooks/{hook.public_id}/", {"action": "redeliver", "delivery": delivery.public_id})
        assert response.status_code == 302
        wait_until(lambda: len(receiver.requests()) >= 2, timeout=30)
    finally:
        worker.stop()
    first, second = receiver.requests()[:2]
    assert first["id"] == second["id"] == delivery.webhook_id and second["verified"]
    assert AuditEvent.objects.filter(action="webhook.redelivered", actor=manager).exists()
    page = client.get(f"/webhooks/{hook.public_id}/").content.decode()
    assert "redirects are not followed" in page and "302" in page


def test_license_acceptances_are_told_for_grants_and_lab_seats(local_ok, as_manager, gated, alice, reviewer):
    endpoint(as_manager, events=["grant.license_accepted"])
    grant = grant_for(alice, gated, reviewer)
    command = services.command_actor("tests")
    newer = services.license_publish(actor=command, slug=gated.license.slug, version="1.1", title="T", text="v1.1")
    services.release_set_license(actor=command, release=gated, license=newer)
    holder = services.Actor(user=alice, credential="session")
    services.grant_accept_license(
        actor=holder, grant=grant, version="1.1", accept_license=True, noncommercial_attested=True
    )
    pi = UserFactory(email="pi@uni.example")
    lab = services.lab_create(actor=services.Actor(user=pi, credential="session", reauthenticated=True), name="Lab")
    lab_request = AccessRequestFactory(applicant=pi, release=gated, lab=lab, all_members=True)
    services.request_approve(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True), access_request=lab_request
    )
    lab_grant = services.grant_issue(request_id=lab_request.pk)
    member = UserFactory(email="max@uni.example")
    _invitation, secret = services.lab_invite(
        actor=services.Actor(user=pi, credential="session", reauthenticated=True), lab=lab, email=member.email
    )
    services.lab_invitation_accept(
        actor=services.Actor(user=member, credential="session", reauthenticated=True), token=secret
    )
    services.lab_seat_accept(
        actor=services.Actor(user=member, credential="session", reauthenticated=True),
        grant=lab_grant,
        version="1.1",
        accept_license=True,
        noncommercial_attested=True,
    )
    told = [d.payload for d in WebhookDelivery.objects.order_by("id")]
    assert [p["data"]["grant"]["id"] for p in told] == [grant.public_id, lab_grant.public_id]
    assert [p["data"]["grant"]["lab"] for p in told] == [None, lab.public_id]
    assert all(p["data"]["license"]["version"] == "1.1" for p in told)
    assert "max@uni.example" not in json.dumps(told) and "alice" not in json.dumps(told)


# --- An endpoint that does not answer holds up nothing else ------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_endpoints_that_never_answer_hold_a_webhook_worker_but_never_a_grant(
    hook_worker_env, as_manager, receivers, gated, alice, reviewer
):
    hook_worker_env["WEBHOOK_TIMEOUT_SECONDS"] = "60"  # longer than this test: the endpoints never answer in it
    dead = [live_endpoint(as_manager, receivers, hold=True)[1] for _ in range(3)]
    # The workers production runs (docs/operators.md, Deploy at scale): the default queue, and the webhooks queue.
    webhook_worker = CeleryWorker(hook_worker_env, queues=["webhooks"]).start()
    worker = CeleryWorker(hook_worker_env).start()
    try:
        services.request_reject(
            actor=services.Actor(user=reviewer, credential="session", reauthenticated=True),
            access_request=AccessRequestFactory(release=gated),
            reason="No.",
        )
        # The webhook worker has taken a delivery and waits for an endpoint that does not answer.
        wait_until(lambda: sum(len(r.requests()) for r in dead) == 1, timeout=30)
        request = AccessRequestFactory(applicant=alice, release=gated)
        services.request_approve(
            actor=services.Actor(user=reviewer, credential="session", reauthenticated=True), access_request=request
        )
        grant = wait_until(lambda: Grant.objects.filter(request=request).first(), timeout=30)
        wait_until(lambda: OutboundEmail.objects.filter(dedupe_key=f"grant-issued:{grant.pk}").exists(), timeout=30)
        assert sum(len(r.requests()) for r in dead) == 1  # ...while the webhook worker is still held
        assert not WebhookAttempt.objects.exists()
        waiting = set(WebhookDelivery.objects.values_list("event_type", flat=True))
        assert waiting == {"access_request.rejected", "access_request.approved", "grant.issued"}
        for receiver in dead:  # the endpoints come back: every delivery is attempted, and delivered
            receiver.release()
        wait_until(lambda: WebhookDelivery.objects.filter(status="succeeded").count() == 9, timeout=60)
    finally:
        worker.stop()
        webhook_worker.stop()
    assert all(len(r.requests()) == 3 and all(e["verified"] for e in r.requests()) for r in dead)
    handled = webhook_worker.output()  # "Task <name>[<id>] received" for each message a worker took
    assert "access.tasks.webhook_deliver[" in handled and "access.tasks.grant_issue[" not in handled
    assert "access.tasks.grant_issue[" in worker.output() and "access.tasks.webhook_deliver[" not in worker.output()


@pytest.mark.django_db(transaction=True)
def test_deliveries_and_the_sweep_that_finds_lost_ones_go_to_the_webhooks_queue(
    celery_broker, local_ok, as_manager, gated, reviewer, manager
):
    import redis

    queues = redis.Redis.from_url(celery_broker.url)
    hook = endpoint(as_manager)[0]
    services.request_reject(  # dispatch: one delivery, enqueued on commit
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True),
        access_request=AccessRequestFactory(release=gated),
        reason="No.",
    )
    delivery = WebhookDelivery.objects.get(endpoint=hook)
    emails = queues.llen("celery")  # the applicant's email
    assert queues.llen("webhooks") == 1 and emails >= 1
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() - timedelta(minutes=5))
    assert webhooks.sweep() == [delivery.pk]  # its message was lost: the sweep sends it again
    services.webhook_redeliver(actor=as_manager, delivery=delivery)
    assert (queues.llen("webhooks"), queues.llen("celery")) == (3, emails)
    from portal.celery import app

    beat = app.send_task("access.tasks.webhooks_sweep")  # as beat sends its schedule
    assert beat.id and queues.llen("webhooks") == 4
    routes = app.conf.task_routes
    assert routes["access.tasks.webhook_deliver"] == routes["access.tasks.webhooks_sweep"] == {"queue": "webhooks"}


def never_answers():
    """A TCP listener that accepts connections (the kernel does) and never reads or answers."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    return listener, f"http://127.0.0.1:{listener.getsockname()[1]}/hooks"


def test_a_failing_endpoint_waits_out_a_pause_and_is_tried_one_delivery_at_a_time(
    local_ok, as_manager, gated, reviewer, receivers, settings
):
    settings.WEBHOOK_TIMEOUT_SECONDS = 1
    listener, url = never_answers()
    dead = endpoint(as_manager, url=url)[0]
    healthy, receiver = live_endpoint(as_manager, receivers)
    for _ in range(3):
        services.request_reject(
            actor=services.Actor(user=reviewer, credential="session", reauthenticated=True),
            access_request=AccessRequestFactory(release=gated),
            reason="No.",
        )
    first, second, third = WebhookDelivery.objects.filter(endpoint=dead).order_by("id")
    try:
        webhooks.deliver(delivery_id=first.pk)  # times out: the endpoint is failing from now on
        dead.refresh_from_db()
        assert dead.failing_since is not None and dead.paused_until > timezone.now()
        deferred = webhooks.deliver(delivery_id=second.pk)  # no attempt while the pause lasts
        assert (deferred.attempts, deferred.status, deferred.next_attempt_at) == (0, "pending", dead.paused_until)
        assert list(WebhookAttempt.objects.values_list("delivery", flat=True)) == [first.pk]
        for delivery in WebhookDelivery.objects.filter(endpoint=healthy):  # other endpoints are not held up
            assert webhooks.deliver(delivery_id=delivery.pk).status == "succeeded"
        assert len(receiver.requests()) == 3
        # The pause is over: one delivery at a time may try the endpoint (it holds it while it tries).
        WebhookEndpoint.objects.filter(pk=dead.pk).update(paused_until=timezone.now())
        assert webhooks.endpoint_turn(dead.pk) is None
        held = webhooks.endpoint_turn(dead.pk)
        assert held is not None and held > timezone.now()
        WebhookDelivery.objects.filter(pk=third.pk).update(next_attempt_at=timezone.now())
        assert webhooks.deliver(delivery_id=third.pk).attempts == 0  # deferred: another attempt holds the turn
        assert WebhookAttempt.objects.filter(delivery__endpoint=dead).count() == 1
        # An answer closes the breaker: every delivery to the endpoint goes at once again.
        WebhookEndpoint.objects.filter(pk=dead.pk).update(url=healthy.url, secret_salt=healthy.secret_salt)
        for delivery in (second, third):
            WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
        WebhookEndpoint.objects.filter(pk=dead.pk).update(paused_until=timezone.now())
        assert webhooks.deliver(delivery_id=second.pk).status == "succeeded"
        dead.refresh_from_db()
        assert (dead.failing_since, dead.paused_until) == (None, None)
        assert webhooks.deliver(delivery_id=third.pk).status == "succeeded"
    finally:
        listener.close()


def test_a_manual_redelivery_ends_the_pause_of_a_failing_endpoint(local_ok, as_manager, gated, reviewer):
    hook = endpoint(as_manager)[0]
    services.request_reject(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True),
        access_request=AccessRequestFactory(release=gated),
        reason="No.",
    )
    now = timezone.now()
    WebhookEndpoint.objects.filter(pk=hook.pk).update(failing_since=now, paused_until=now + timedelta(hours=1))
    services.webhook_redeliver(actor=as_manager, delivery=WebhookDelivery.objects.get())
    assert WebhookEndpoint.objects.get(pk=hook.pk).paused_until is None  # a person asked for it now


def test_healthz_and_metrics_show_when_nothing_consumes_the_webhooks_queue(
    local_ok, as_manager, gated, reviewer, client, settings, local_storage
):
    hook = endpoint(as_manager)[0]
    services.request_reject(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True),
        access_request=AccessRequestFactory(release=gated),
        reason="No.",
    )
    health = client.get("/healthz").json()
    assert health["webhooks"]["stalled"] is False and health["webhooks"]["waiting"] == 1
    # No webhook worker: the delivery's time came ten minutes ago and nothing took it (nor ran the sweep).
    WebhookDelivery.objects.filter(endpoint=hook).update(next_attempt_at=timezone.now() - timedelta(minutes=10))
    response = client.get("/healthz")
    assert response.status_code == 200  # a stalled queue does not take web processes out of a load balancer
    assert response.json()["webhooks"]["stalled"] is True
    assert response.json()["webhooks"]["oldest_due_seconds"] >= 600
    settings.METRICS_TOKEN = "scrape"
    scraped = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape").content.decode()
    line = next(line for line in scraped.splitlines() if line.startswith("portal_webhook_oldest_due_seconds "))
    assert float(line.split()[1]) >= 600
