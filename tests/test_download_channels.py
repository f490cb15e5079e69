"""Every download channel, through the real download stack as production runs it: portal.wsgi's application (the
short middleware stack for sessionless per-file downloads, the full one otherwise), committed data, and group
commit on, so each allowed download's row is written by the process's writer thread. One person per shape of
answer (allowed through a grant or a lab seat, refused with a code, not signed in, unknown release, open release):
the rule itself is checked over every combination in memory (tests/test_gate_rule.py); this checks that each
channel asks it, says what it says, and records what it allows."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from access import services
from access.downloads import relay_url
from access.gate import groupcommit
from access.models import AuditEvent, DownloadEvent
from tests.factories import AccessRequestFactory, ReleaseFactory, UserFactory, add_file, grant_for, token_secret
from tests.support.wsgi import wsgi_call

pytestmark = pytest.mark.django_db(transaction=True)

SHARD = "checkpoint_last-model_part-0-shard0.pt"
GATED, OPEN = "facebook/opt-175b", "facebook/opt-125m"


@pytest.fixture
def writer(settings, monkeypatch):
    """Group commit on, as in production; records whether the writer served each download's row."""
    settings.DOWNLOAD_EVENT_GROUP_COMMIT = True
    served = []
    write = groupcommit.write

    def spy(statement, params):
        served.append(write(statement, params))
        return served[-1]

    monkeypatch.setattr(groupcommit, "write", spy)
    yield served
    groupcommit.stop()


def session(user):
    return services.Actor(user=user, credential="session", reauthenticated=True)


@pytest.fixture
def people(local_storage, reviewer):
    gated = ReleaseFactory(repo_id=GATED, access="gated")
    add_file(gated, SHARD, b"secret weights")
    add_file(gated, "config.json", b"{}")
    public = ReleaseFactory(repo_id=OPEN, access="open")
    add_file(public, "pytorch_model.bin", b"open weights")
    holder, member, revoked, pending = (UserFactory(email=f"{n}@uni.example") for n in ("hana", "max", "rev", "pia"))
    grants = {"holder": grant_for(holder, gated, reviewer)}
    services.grant_revoke(actor=session(reviewer), grant=grant_for(revoked, gated, reviewer), reason="Shared it.")
    AccessRequestFactory(applicant=pending, release=gated)
    pi = UserFactory(email="pi@uni.example")
    lab = services.lab_create(actor=session(pi), name="Language Lab")
    _invitation, secret = services.lab_invite(actor=session(pi), lab=lab, email=member.email)
    services.lab_invitation_accept(actor=session(member), token=secret)
    request = AccessRequestFactory(applicant=pi, release=gated, lab=lab, all_members=True)
    services.request_approve(actor=session(reviewer), access_request=request)
    grants["member"] = services.grant_issue(request_id=request.pk)
    services.lab_seat_accept(
        actor=session(member), grant=grants["member"], version="1.0", accept_license=True, noncommercial_attested=True
    )
    users = {"holder": holder, "member": member, "revoked": revoked, "pending": pending, "anonymous": None}
    return {"users": users, "grants": grants, "releases": {GATED: gated, OPEN: public}}


def channels(repo: str, path: str) -> dict:
    base = f"/api/v1/models/{repo}"
    calls = {
        "file": ("GET", f"{base}/files/{path}"),
        "file-head": ("HEAD", f"{base}/files/{path}"),
        "hf-resolve": ("GET", f"/{repo}/resolve/main/{path}"),
        "hf-resolve-head": ("HEAD", f"/{repo}/resolve/main/{path}"),
        "hf-tree": ("GET", f"/api/models/{repo}/tree/main"),
    }
    for fmt in ("json", "aria2", "wget", "sha256sum", "metalink"):
        calls[f"manifest-{fmt}"] = ("GET", f"{base}/manifest?format={fmt}")
    return calls


def call(method: str, url: str, token: str | None) -> tuple[int, str, bool]:
    """(status, the refusal's code or '', whether it went through the short download stack)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    status, response_headers, body = wsgi_call(url, method=method, headers=headers)
    code = response_headers.get("x-error-code", "")
    if status >= 400 and method != "HEAD" and response_headers.get("content-type", "").startswith("application/json"):
        code = json.loads(body).get("code", code)
    short = response_headers.get("content-security-policy", "").startswith("default-src 'none'")
    return status, code, short


# What each person is answered on a gated release's channels: (status of a download, code).
GATED_ANSWERS = {
    "holder": (None, ""),
    "member": (None, ""),
    "revoked": (403, "revoked"),
    "pending": (403, "pending"),
    "anonymous": (401, "not_authenticated"),
}
PER_FILE = ("file", "file-head", "hf-resolve", "hf-resolve-head")


def expected_status(name: str, allowed_status: int | None) -> int:
    if allowed_status is not None:
        return allowed_status
    return 302 if name in PER_FILE else 200


def test_every_channel_asks_the_gate_answers_in_its_shape_and_records_through_the_writer(people, writer):
    failures = []
    for who, (refused_status, code) in GATED_ANSWERS.items():
        user = people["users"][who]
        token = token_secret(user) if user else None
        for name, (method, url) in channels(GATED, SHARD).items():
            rows, refusals, written = DownloadEvent.objects.count(), AuditEvent.objects.count(), len(writer)
            status, got_code, short = call(method, url, token)
            want = expected_status(name, refused_status)
            # A HEAD has no body: the Hub's endpoints say why in X-Error-Code, the API's only by the status.
            want_code = code if method == "GET" else "GatedRepo" if name.startswith("hf-") else ""
            if (status, got_code if refused_status else "") != (want, want_code if refused_status else ""):
                failures.append(f"{who} {name}: expected {want} {want_code}, got {status} {got_code}")
            if name in PER_FILE and not short:
                failures.append(f"{who} {name}: not through the download stack")
            if refused_status:
                refused = AuditEvent.objects.filter(action="download.refused").order_by("-id").first()
                if DownloadEvent.objects.count() != rows or refused is None or refused.data["code"] != code:
                    failures.append(f"{who} {name}: the refusal was not audited alone")
                continue
            if name == "hf-tree":
                continue  # decided by the gate, but hands out no URL: nothing to record
            event = DownloadEvent.objects.order_by("-id").first()
            if DownloadEvent.objects.count() != rows + 1 or writer[written:] != [True]:
                failures.append(f"{who} {name}: the writer did not write its row ({writer[written:]})")
                continue
            grant = people["grants"][who]
            release = people["releases"][GATED]
            if (event.user_id, event.grant_id, event.revision_id) != (user.pk, grant.pk, release.main_revision_id):
                failures.append(f"{who} {name}: recorded {event.user_id, event.grant_id, event.revision_id}")
            assert AuditEvent.objects.count() == refusals
    assert not failures, "\n".join(failures)


def test_the_relay_and_the_grant_pages_batch_record_through_the_writer(people, writer):
    holder, grant = people["users"]["holder"], people["grants"]["holder"]
    shard = people["releases"][GATED].files.get(path=SHARD)
    relay = relay_url(shard.pk, SHARD, user_id=holder.pk, base_url="http://testserver").removeprefix(
        "http://testserver"
    )
    status, _code, _short = call("GET", relay, None)
    assert status == 302 and writer == [True]
    client = Client()
    client.force_login(holder)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    status, _headers, body = wsgi_call(f"/grants/{grant.public_id}/batch.json", headers={"Cookie": cookie})
    assert status == 200 and json.loads(body)["files"]
    assert writer == [True, True]
    assert list(DownloadEvent.objects.order_by("id").values_list("via", "user_id", "grant_id")) == [
        ("relay", holder.pk, grant.pk),
        ("web", holder.pk, grant.pk),
    ]
    revoked = people["users"]["revoked"]
    ticket = relay_url(shard.pk, SHARD, user_id=revoked.pk, base_url="http://testserver")
    assert call("GET", ticket.removeprefix("http://testserver"), None)[:2] == (403, "revoked")
    assert len(writer) == 2


def test_unknown_releases_and_open_ones_keep_their_shapes(people, writer):
    for name, (method, url) in channels("facebook/opt-999b", "weights.bin").items():
        status, code, _short = call(method, url, None)
        assert status == 404, name
        assert code in ("not_found", "RepoNotFound", ""), (name, code)
    token = token_secret(people["users"]["holder"])
    for name, (method, url) in channels(OPEN, "pytorch_model.bin").items():
        rows = DownloadEvent.objects.count()
        assert call(method, url, None)[0] == expected_status(name, None), name
        # Anonymous per-file downloads of an open release are counted, not logged; manifests leave a row.
        anonymous_row = name.startswith("manifest-")
        assert DownloadEvent.objects.count() == rows + anonymous_row, name
        assert call(method, url, token)[0] == expected_status(name, None), name
        assert DownloadEvent.objects.count() == rows + anonymous_row + (name != "hf-tree"), name
    assert writer and all(writer)
