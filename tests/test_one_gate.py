"""The one download gate and the role-checking services: each defect found by the outside attack, and the
rules that must hold whichever entry point is used."""

from __future__ import annotations

import ast
from datetime import timedelta
from pathlib import Path

import pytest
from django.core import mail
from django.utils import timezone
from rest_framework.test import APIClient

from access import downloads, services, tasks
from access.models import AccessRequest, ApiToken, AuditEvent, DownloadEvent, Grant, ModelRelease
from access.taskbase import TRANSIENT_ERRORS
from tests.factories import AccessRequestFactory, ReleaseFactory, UserFactory, add_file, grant_for
from tests.support.auth import login_recently

pytestmark = pytest.mark.django_db

SHARD = "checkpoint_last-model_part-0-shard0.pt"
ACCESS = Path(__file__).resolve().parent.parent / "access"


@pytest.fixture
def gated(local_storage):
    release = ReleaseFactory(repo_id="facebook/opt-175b", access="gated")
    add_file(release, SHARD, b"secret weights")
    return release


@pytest.fixture
def rita(db):
    reviewer = UserFactory(email="rita@portal.example")
    services.reviewer_add(actor=services.command_actor("add_reviewer"), user=reviewer)
    return reviewer


def session_client(user, *, recent: bool) -> APIClient:
    client = APIClient()
    if recent:
        login_recently(client, user)
    else:
        client.force_login(user)
    return client


def bearer(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


# --- Defect 1: the password-again rule holds on the API too ---------------------------------------------


def test_it_refuses_an_api_approval_from_a_stale_reviewer_session(gated, rita, alice):
    request = AccessRequestFactory(applicant=alice, release=gated)
    response = session_client(rita, recent=False).post(
        f"/api/v1/review/access-requests/{request.public_id}/approve", {}, format="json"
    )
    assert (response.status_code, response.json()["code"]) == (403, "reauthentication_required")
    request.refresh_from_db()
    assert request.status == "pending"
    ok = session_client(rita, recent=True).post(
        f"/api/v1/review/access-requests/{request.public_id}/approve", {}, format="json"
    )
    assert ok.status_code == 200 and ok.json()["status"] == "approved"


def test_it_refuses_an_api_revocation_from_a_stale_reviewer_session(gated, rita, alice):
    grant = grant_for(alice, gated, rita)
    url = f"/api/v1/review/grants/{grant.public_id}/revoke"
    response = session_client(rita, recent=False).post(url, {"reason": "Breach."}, format="json")
    assert (response.status_code, response.json()["code"]) == (403, "reauthentication_required")
    grant.refresh_from_db()
    assert grant.revoked_at is None


def test_a_reviewers_plain_token_has_no_reviewer_powers(gated, rita, alice):
    request = AccessRequestFactory(applicant=alice, release=gated)
    plain = services.token_create(
        actor=services.Actor(user=rita, credential="session", reauthenticated=True), name="downloads"
    )[1]
    response = bearer(plain).post(f"/api/v1/review/access-requests/{request.public_id}/approve", {}, format="json")
    assert response.status_code == 403
    with pytest.raises(services.Forbidden) as exc:
        services.request_approve(
            actor=services.Actor(user=rita, credential="token:1", token=ApiToken.objects.get(name="downloads")),
            access_request=request,
        )
    assert exc.value.code == "token_scope"


def test_creating_a_token_with_reviewer_access_needs_a_recent_password(client, rita):
    client.force_login(rita)  # signed in long ago
    response = client.post("/tokens/", {"name": "review script", "review": "on"})
    assert response.status_code == 302 and "/reauthenticate/" in response["Location"]
    assert not ApiToken.objects.filter(user=rita).exists()
    # Without reviewer access the same stale session may create a download token.
    response = client.post("/tokens/", {"name": "downloads"})
    assert response.status_code == 302 and ApiToken.objects.get(user=rita).scope == "download"
    login_recently(client, rita)
    client.post("/tokens/", {"name": "review script", "review": "on"})
    assert ApiToken.objects.get(user=rita, name="review script").scope == "review"


def test_a_researcher_cannot_create_a_reviewer_token(alice):
    with pytest.raises(services.Forbidden):
        services.token_create(
            actor=services.Actor(user=alice, credential="session", reauthenticated=True), name="x", review=True
        )


# --- Reviewers never decide their own requests --------------------------------------------------------


@pytest.mark.parametrize("verb", ["approve", "reject", "request-info"])
def test_a_reviewer_cannot_decide_their_own_request(gated, rita, verb):
    own = AccessRequestFactory(applicant=rita, release=gated)
    response = session_client(rita, recent=True).post(
        f"/api/v1/review/access-requests/{own.public_id}/{verb}", {"reason": "Fine."}, format="json"
    )
    assert (response.status_code, response.json()["code"]) == (403, "own_request")
    own.refresh_from_db()
    assert own.status == "pending"


def test_another_reviewer_decides_a_reviewers_request(gated, rita):
    own = AccessRequestFactory(applicant=rita, release=gated)
    other = UserFactory(email="omar@portal.example")
    services.reviewer_add(actor=services.command_actor("add_reviewer"), user=other)
    services.request_approve(
        actor=services.Actor(user=other, credential="session", reauthenticated=True), access_request=own
    )
    own.refresh_from_db()
    assert own.status == "approved"


# --- Defect 3: one cleaning rule for free text on every channel ---------------------------------------


@pytest.mark.parametrize("reason", ["\x1b[2J\x1b[31mred", "bell\x07", "nul\x00byte", "tab\x0bvertical"])
def test_reasons_sent_through_the_api_are_cleaned_like_the_web_form(gated, rita, alice, reason):
    request = AccessRequestFactory(applicant=alice, release=gated)
    response = session_client(rita, recent=True).post(
        f"/api/v1/review/access-requests/{request.public_id}/reject", {"reason": reason}, format="json"
    )
    assert response.status_code == 400 and response.json()["code"] in ("invalid_text", "invalid")
    request.refresh_from_db()
    assert request.status == "pending" and request.decision_reason == ""


def test_a_revocation_reason_with_escapes_is_refused_by_the_service(gated, rita, alice):
    grant = grant_for(alice, gated, rita)
    with pytest.raises(services.ServiceError) as exc:
        services.grant_revoke(
            actor=services.Actor(user=rita, credential="session", reauthenticated=True),
            grant=grant,
            reason="\x1b]8;;evil\x07click",
        )
    assert exc.value.field == "reason"
    grant.refresh_from_db()
    assert grant.revoked_at is None


# --- Defect 6: revoking a grant closes its renewals ---------------------------------------------------


def test_revoking_a_grant_closes_its_pending_renewal(gated, rita, alice, client, django_capture_on_commit_callbacks):
    grant = grant_for(alice, gated, rita)
    renewal = services.request_renew(
        actor=services.Actor(user=alice, credential="session", reauthenticated=True), grant=grant
    )
    assert renewal.status == "pending"
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.grant_revoke(
            actor=services.Actor(user=rita, credential="session", reauthenticated=True),
            grant=grant,
            reason="Shared the weights.",
        )
    renewal.refresh_from_db()
    assert renewal.status == "rejected" and "Shared the weights." in renewal.decision_reason
    assert AuditEvent.objects.filter(action="request.close", request=renewal).exists()
    assert any("Shared the weights." in m.body for m in mail.outbox if "not approved" in m.subject)
    with pytest.raises(services.InvalidTransition):
        services.request_approve(
            actor=services.Actor(user=rita, credential="session", reauthenticated=True), access_request=renewal
        )
    assert not downloads.access_state(user=alice, release=gated).allowed
    # The renewal's review page tells the reviewer what happened to the grant it renews.
    login_recently(client, rita)
    page = client.get(f"/review/requests/{renewal.public_id}/").content.decode()
    assert "renewed-grant-history" in page and "Shared the weights." in page and "Access revoked" in page


# --- One gate: the relay, batches, unpublished releases and inactive accounts --------------------------


def test_the_relay_checks_published_and_records_its_own_channel(gated, rita, alice):
    grant_for(alice, gated, rita)
    file = gated.files.get(path=SHARD)
    url = downloads.relay_url(file.pk, SHARD, user_id=alice.pk, base_url="http://testserver")
    client = APIClient()
    assert client.get(url).status_code == 302
    assert DownloadEvent.objects.filter(file=file, via="relay").count() == 1
    ModelRelease.objects.filter(pk=gated.pk).update(published=False)
    response = client.get(url)
    assert (response.status_code, response.json()["code"]) == (404, "not_found")
    refusal = AuditEvent.objects.filter(action="download.refused").latest("id")
    assert refusal.data["via"] == "relay" and refusal.data["code"] == "not_found"


def test_a_disabled_account_is_refused_on_the_relay(gated, rita, alice):
    grant_for(alice, gated, rita)
    file = gated.files.get(path=SHARD)
    url = downloads.relay_url(file.pk, SHARD, user_id=alice.pk, base_url="http://testserver")
    alice.is_active = False
    alice.save(update_fields=["is_active"])
    response = APIClient().get(url)
    assert (response.status_code, response.json()["code"]) == (403, "account_inactive")


def test_a_batch_is_only_handed_out_for_the_grant_it_belongs_to_while_active(gated, rita, alice, client):
    old = grant_for(alice, gated, rita)
    Grant.objects.filter(pk=old.pk).update(
        issued_at=timezone.now() - timedelta(days=400), expires_at=timezone.now() - timedelta(days=1)
    )
    new = grant_for(alice, gated, rita)  # a renewal: alice holds an active grant again
    client.force_login(alice)
    assert client.get(f"/grants/{new.public_id}/batch.json").status_code == 200
    # The expired grant's page does not hand out its (or the new grant's) links.
    response = client.get(f"/grants/{old.public_id}/batch.json")
    assert response.status_code == 302
    refusal = AuditEvent.objects.filter(action="download.refused").latest("id")
    assert refusal.data == {"code": "expired", "via": "web", "path": "batch.json"}
    assert DownloadEvent.objects.filter(grant=old).count() == 0


@pytest.mark.parametrize("change", ["license", "account"])
def test_a_batch_is_signed_only_when_the_gate_allows_the_holder_then(gated, rita, alice, change):
    """A batch is a week of signed URLs: the worker asks the one gate, not just whether the grant is active."""
    from access.models import UrlBatch

    grant = grant_for(alice, gated, rita)
    batch = UrlBatch.objects.create(grant=grant)  # asked for while the holder could download
    if change == "license":
        gated.license = services.license_publish(
            actor=services.command_actor("tests"), slug=gated.license.slug, version="2.0", title="T", text="Two."
        )
        gated.save()
    else:
        alice.is_active = False
        alice.save()
    tasks.batch_sign(batch.pk)
    batch.refresh_from_db()
    assert (batch.status, batch.urls) == ("failed", [])
    refused = AuditEvent.objects.get(action="grant.batch_refused")
    assert refused.data["code"] == ("license_update" if change == "license" else "account_inactive")


def test_every_channel_records_downloads_with_one_via_each(gated, rita, alice, client):
    grant_for(alice, gated, rita)
    secret = services.token_create(
        actor=services.Actor(user=alice, credential="session", reauthenticated=True), name="t"
    )[1]
    api = bearer(secret)
    api.get(f"/api/v1/models/facebook/opt-175b/files/{SHARD}")
    api.get("/api/v1/models/facebook/opt-175b/manifest")
    api.head(f"/facebook/opt-175b/resolve/main/{SHARD}")
    assert list(DownloadEvent.objects.order_by("id").values_list("via", flat=True)) == ["api", "manifest", "hf"]
    assert set(DownloadEvent.objects.values_list("token__user", flat=True)) == {alice.pk}


# --- One way to change state ------------------------------------------------------------------------


def test_switching_a_release_in_the_admin_goes_through_the_service(client, gated):
    admin = UserFactory(email="admin@portal.example", is_staff=True, is_superuser=True)
    login_recently(client, admin)
    open_release = ReleaseFactory(repo_id="facebook/opt-13b", access="open")
    form = client.get(f"/admin/access/modelrelease/{open_release.pk}/change/")
    assert form.status_code == 200
    data = {
        "display_name": open_release.display_name,
        "description": "",
        "access": "gated",
        "license": gated.license_id,
        "published": "on",
        "license_update_mode": "reconsent",
        "parameters": "",
        "lab_member_cap": "25",
        "review_deadline_days": "7",
    }
    response = client.post(f"/admin/access/modelrelease/{open_release.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    open_release.refresh_from_db()
    assert open_release.access == "gated"
    event = AuditEvent.objects.get(action="release.updated", target_id=str(open_release.pk))
    assert event.credential == "admin:admin@portal.example" and event.actor == admin
    assert event.data["from"]["access"] == "open" and event.data["to"]["access"] == "gated"


def test_editing_a_grants_expiry_and_revoking_in_the_admin_are_audited(client, gated, rita, alice):
    grant = grant_for(alice, gated, rita)
    admin = UserFactory(email="admin@portal.example", is_staff=True, is_superuser=True)
    login_recently(client, admin)
    later = (grant.expires_at + timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S")
    url = f"/admin/access/grant/{grant.pk}/change/"
    response = client.post(url, {"expires_at_0": later[:10], "expires_at_1": later[11:]})
    assert response.status_code == 302
    assert AuditEvent.objects.filter(action="grant.expiry_changed", credential="admin:admin@portal.example").exists()
    grant.refresh_from_db()
    response = client.post(
        url,
        {
            "expires_at_0": grant.expires_at.strftime("%Y-%m-%d"),
            "expires_at_1": grant.expires_at.strftime("%H:%M:%S"),
            "revoke": "on",
            "reason": "Breach of terms.",
        },
    )
    assert response.status_code == 302
    grant.refresh_from_db()
    assert grant.revoked_at is not None and grant.revoke_reason == "Breach of terms."
    assert AuditEvent.objects.get(action="grant.revoked").credential == "admin:admin@portal.example"


def test_the_admin_cannot_edit_requests_or_add_grants(client, gated, rita, alice):
    grant = grant_for(alice, gated, rita)
    admin = UserFactory(email="admin@portal.example", is_staff=True, is_superuser=True)
    login_recently(client, admin)
    request = grant.request
    assert client.post(f"/admin/access/accessrequest/{request.pk}/change/", {"status": "rejected"}).status_code == 403
    assert client.get("/admin/access/grant/add/").status_code == 403
    request.refresh_from_db()
    assert request.status == "approved"


def test_register_release_names_its_actor(tmp_path, local_storage):
    from django.core.management import call_command

    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "config.json").write_text("{}")
    call_command("register_release", "facebook/opt-x", "--from-dir", str(tmp_path / "w"))
    credentials = set(AuditEvent.objects.filter(action__startswith="release.").values_list("credential", flat=True))
    assert credentials == {"command:register_release"}
    assert AuditEvent.objects.filter(action="release.file_added").count() == 1


def test_services_check_roles_even_when_an_entry_point_forgets(gated, alice, bob):
    request = AccessRequestFactory(applicant=alice, release=gated)
    researcher = services.Actor(user=bob, credential="session", reauthenticated=True)
    for verb in (services.request_approve, services.request_reject):
        with pytest.raises(services.Forbidden):
            verb(actor=researcher, access_request=request, reason="x")
    with pytest.raises(services.NotFound):
        services.request_withdraw(actor=researcher, access_request=request)
    request.refresh_from_db()
    assert request.status == "pending"
    assert AccessRequest.objects.open().filter(pk=request.pk).exists()


# --- Tasks and imports ------------------------------------------------------------------------------


def test_tasks_retry_only_transient_errors():
    for task in (tasks.grant_issue, tasks.batch_sign, tasks.request_notify, tasks.grants_reconcile):
        assert tuple(task.autoretry_for) == TRANSIENT_ERRORS
        assert Exception not in task.autoretry_for and ValueError not in task.autoretry_for
        assert task.acks_late and task.max_retries == 10


def _imports(path: Path, module: str) -> set[str]:
    """Modules of the access package that `module` imports at module level."""
    tree = ast.parse(path.read_text())
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    found = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base]) if base else ".".join(parts)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if _module_path(candidate) else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    # Importing access.a.b runs access/a/__init__.py first: an edge to that package too (the cycle test drops
    # edges to the importer's own packages, which are being initialised already).
    found |= {".".join(m.split(".")[:i]) for m in found for i in range(2, m.count(".") + 1)}
    return {m for m in found if m.startswith("access") and _module_path(m)}


def _module_path(module: str) -> Path | None:
    rel = Path(*module.split("."))
    for candidate in (ACCESS.parent / f"{rel}.py", ACCESS.parent / rel / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def test_there_is_no_import_cycle_in_access():
    graph = {}
    for path in ACCESS.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        rel = path.relative_to(ACCESS.parent).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        graph[module] = _imports(path, module)
    # A package's __init__ only re-exports its submodules; importing a submodule is not an edge back to it.
    for module in graph:
        graph[module] = {m for m in graph[module] if m != module and not module.startswith(m + ".")}
    state: dict[str, int] = {}

    def visit(node, trail):
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                raise AssertionError(" → ".join([*trail, node, nxt]))
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [])


def test_no_service_imports_inside_a_function():
    for path in (ACCESS / "services").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                inner = [n for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)]
                assert not inner, f"{path.name}:{node.name} imports inside a function"
