"""The reviewer workspace: the stats API and dashboard against hand-counted data, applicants' wait estimates,
review deadlines and needs_info reminders, the queue, decisions, bulk actions, revocation and exports."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone, translation
from django.utils.translation import ngettext

from access import selectors, services, stats
from access.models import AccessRequest, AuditEvent, ReasonTemplate
from tests.factories import AccessRequestFactory, UserFactory
from tests.support.auth import login_recently
from tests.support.review_data import DAY, seed_review_world

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(local_storage):
    return seed_review_world()


def stats_for(client, reviewer, query=""):
    client.force_login(reviewer)
    response = client.get(f"/api/v1/review/stats{query}")
    assert response.status_code == 200, response.content
    return response.json()


# --- The stats API, against the table in tests/support/review_data.py -----------------------------------------


def test_it_counts_release_a_as_counted_by_hand(client, reviewer, world):
    data = stats_for(client, reviewer, "?release=lab/model-a&period=90")
    assert data["release"] == "lab/model-a" and data["deadline_days"] == 7
    assert data["counts_by_status"] == {"pending": 2, "needs_info": 1, "approved": 2, "rejected": 1, "withdrawn": 1}
    # Decided after 2, 1 and 4 days: nearest-rank median 2 days, 90th percentile 4 days.
    assert data["decision_time"] == {"decided": 3, "p50_seconds": 2 * 86400, "p90_seconds": 4 * 86400}
    assert data["overdue_count"] == 1  # r4: 10 days against a deadline of 7
    ages = {
        (row["min_days"], row["max_days"]): (row["within_deadline"], row["overdue"]) for row in data["pending_ages"]
    }
    assert ages[(2, 3)] == (1, 0) and ages[(7, 14)] == (0, 1)
    assert sum(w + o for w, o in ages.values()) == 2
    totals = {o: sum(week[o] for week in data["requests_per_week"]) for o in ("approved", "rejected", "withdrawn")}
    assert totals == {"approved": 2, "rejected": 1, "withdrawn": 1}
    assert sum(week["pending"] for week in data["requests_per_week"]) == 3  # pending and needs_info
    assert data["decisions_by_organization_type"] == [
        {"key": "academic", "approved": 2, "rejected": 0, "total": 2},
        {"key": "industry_research", "approved": 0, "rejected": 1, "total": 1},
    ]
    assert [row["key"] for row in data["decisions_by_country"]] == ["CN", "DE", "US"]


def test_it_counts_downloads_and_active_grants_per_day(client, reviewer, world):
    data = stats_for(client, reviewer, "?release=lab/model-a&period=30")
    days = {row["day"]: row for row in data["downloads_per_day"]}
    assert len(days) == 30
    today = timezone.localdate()
    three, one = str(today - timedelta(days=3)), str(today - timedelta(days=1))
    assert {k: days[three][k] for k in ("researchers", "files", "bytes", "manifests")} == {
        "researchers": 2,
        "files": 3,
        "bytes": 250,
        "manifests": 1,
    }
    assert {k: days[one][k] for k in ("researchers", "files", "bytes", "manifests")} == {
        "researchers": 1,
        "files": 1,
        "bytes": 100,
        "manifests": 0,
    }
    assert sum(row["files"] for row in data["downloads_per_day"]) == 4
    active = {row["day"]: row["active"] for row in data["active_grants"]}
    assert active[str(today - timedelta(days=19))] == 0
    assert active[str(today - timedelta(days=18))] == 1
    assert active[str(today - timedelta(days=8))] == 2
    assert active[str(today - timedelta(days=2))] == 1  # g3 revoked that day
    assert active[str(today)] == 1


def test_every_release_together(client, reviewer, world):
    data = stats_for(client, reviewer)
    assert data["release"] is None and data["deadline_days"] is None
    assert data["overdue_count"] == 2  # r4 (10 > 7) and b2 (4 > 3)
    # 1, 1, 2 and 4 days: median 1 day, 90th percentile 4 days.
    assert data["decision_time"] == {"decided": 4, "p50_seconds": 86400, "p90_seconds": 4 * 86400}
    per_release = {(row["release"], row["deadline_days"]) for row in data["decision_time_per_month"]}
    assert per_release == {("lab/model-a", 7), ("lab/model-b", 3)}
    assert sum(row["decided"] for row in data["decision_time_per_month"]) == 4


def test_a_date_range_picks_its_days(client, reviewer, world):
    today = timezone.localdate()
    start, end = today - timedelta(days=16), today - timedelta(days=13)
    data = stats_for(client, reviewer, f"?release=lab/model-a&from={start}&to={end}")
    assert (data["from"], data["to"]) == (str(start), str(end))
    assert data["counts_by_status"]["rejected"] == 1 and sum(data["counts_by_status"].values()) == 1  # r2 only
    assert data["decision_time"]["decided"] == 1 and data["decision_time"]["p50_seconds"] == 86400
    assert len(data["downloads_per_day"]) == 4


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("?from=2024-02-30", "invalid_date"),
        ("?to=yesterday", "invalid_date"),
        ("?from=2025-03-01&to=2025-02-01", "invalid_range"),
        ("?from=2020-01-01&to=2025-01-01", "range_too_long"),
        ("?period=7", "invalid_period"),
        ("?period=%00", "invalid"),
        ("?release=nobody/nothing", "unknown_release"),
        ("?release=" + "x" * 5000, "unknown_release"),
    ],
)
def test_bad_parameters_are_a_400_with_a_code(client, reviewer, world, query, code):
    client.force_login(reviewer)
    response = client.get(f"/api/v1/review/stats{query}")
    assert response.status_code == 400
    assert response.json()["code"] == code and response.json()["detail"]


def test_only_reviewers_see_the_numbers(client, world, alice):
    assert client.get("/api/v1/review/stats").status_code in (401, 403)
    client.force_login(alice)
    response = client.get("/api/v1/review/stats")
    assert response.status_code == 403 and response.json()["code"]
    assert client.get("/review/dashboard").status_code == 404


def test_the_schema_documents_the_stats(client):
    schema = client.get("/api/schema", HTTP_ACCEPT="application/json").content.decode()
    assert "/api/v1/review/stats" in schema and "decision_time_per_month" in schema and "unknown_release" in schema


# --- The dashboard page ---------------------------------------------------------------------------------------


def test_the_dashboard_shows_the_same_numbers_in_its_tables(client, reviewer, world):
    client.force_login(reviewer)
    body = client.get("/review/dashboard?release=lab/model-a&period=90").content.decode()
    assert 'id="fig-overdue">1<' in body and 'id="fig-waiting">2<' in body and 'id="fig-submitted">7<' in body
    assert 'id="fig-p50">2.0 d<' in body and 'id="fig-p90">4.0 d<' in body
    assert body.count("data-chart=") == 7
    assert "Applicant R4" in body.split('id="overdue-list"')[1]  # the overdue list names it
    assert "<script>" not in body and "style=" not in body  # nothing inline under the CSP
    zh = client.get("/review/dashboard", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "审核" in zh


def test_bad_dashboard_filters_are_a_400_page(client, reviewer, world):
    client.force_login(reviewer)
    response = client.get("/review/dashboard?from=2024-02-30")
    assert response.status_code == 400 and "YYYY-MM-DD" in response.content.decode()


# --- Applicants: position and typical wait --------------------------------------------------------------------


def test_an_applicant_sees_their_place_and_the_typical_wait(client, world):
    r5 = world.requests["r5"]
    client.force_login(r5.applicant)
    body = client.get(f"/requests/{r5.public_id}/").content.decode()
    assert 'data-position="2"' in body and "number 2 in the queue" in body
    assert 'data-seconds="172800"' in body and "typically decided in 2 days" in body
    api = client.get(f"/api/v1/access-requests/{r5.public_id}").json()
    assert api["queue_position"] == 2 and api["typical_decision_seconds"] == 172800
    assert "number 2" in api["wait_estimate"] and "2 days" in api["wait_estimate"]
    refusal = client.get("/api/v1/models/lab/model-a/manifest").json()
    assert refusal["code"] == "pending"
    assert "number 2 in the queue" in refusal["detail"] and "typically decided in 2 days" in refusal["detail"]
    zh = client.get(f"/requests/{r5.public_id}/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "第 2 位" in zh


def test_the_oldest_pending_request_is_first_and_others_have_no_place(world):
    assert selectors.queue_position(world.requests["r4"]) == 1
    assert selectors.queue_position(world.requests["b2"]) == 1
    assert selectors.queue_position(world.requests["r6"]) is None  # waiting on the applicant
    assert selectors.queue_position(world.requests["r1"]) is None


def test_there_is_no_typical_wait_without_recent_decisions(world):
    AccessRequest.objects.filter(release=world.b).update(decided_at=timezone.now() - 100 * DAY)
    assert selectors.typical_wait(world.b) is None
    assert selectors.typical_wait(world.a) == timedelta(days=2)


# --- Deadlines, reminders, the digest -------------------------------------------------------------------------


def test_overdue_requests_are_marked_in_the_queue(client, reviewer, world):
    login_recently(client, reviewer)
    body = client.get("/review/").content.decode()
    rows = {part.split('"', 1)[0]: part for part in body.split('data-id="')[1:]}
    assert 'class="badge overdue"' in rows[world.requests["r4"].public_id].split("</tr>")[0]
    assert 'class="badge overdue"' in rows[world.requests["b2"].public_id].split("</tr>")[0]
    assert 'class="badge overdue"' not in rows[world.requests["r5"].public_id].split("</tr>")[0]
    assert "waiting 10 days" in body and "waiting 2 days" in body
    assert '<span class="count" title="Pending requests">3</span>' in body  # the navigation's count


def test_the_daily_digest_lists_overdue_requests(world, reviewer, settings):
    settings.REVIEWER_NOTIFICATIONS = "digest"
    from access.services.notifications import reviewer_digest

    assert reviewer_digest() == 1
    (digest,) = [m for m in mail.outbox if m.to == [reviewer.email]]
    assert "2 requests are past their release's review deadline" in digest.body
    assert "Applicant R4" in digest.body and "Applicant B2" in digest.body
    assert "Applicant R5" not in digest.body.split("past their release")[1]


def test_an_unanswered_question_is_reminded_once_then_closed(world, settings, django_capture_on_commit_callbacks):
    r6 = world.requests["r6"]
    settings.NEEDS_INFO_REMINDER_DAYS, settings.NEEDS_INFO_CLOSE_DAYS = 3, 2
    with django_capture_on_commit_callbacks(execute=True):
        assert services.needs_info_sweep() == {"reminded": 1, "closed": 0}  # asked 4 days ago
        assert services.needs_info_sweep() == {"reminded": 0, "closed": 0}  # once only
    reminders = [m for m in mail.outbox if m.to == [r6.email]]
    assert len(reminders) == 1 and "waiting for your answer" in reminders[0].subject
    r6.refresh_from_db()
    AccessRequest.objects.filter(pk=r6.pk).update(info_reminded_at=r6.info_reminded_at - 3 * DAY)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.needs_info_sweep() == {"reminded": 0, "closed": 1}
        assert services.needs_info_sweep() == {"reminded": 0, "closed": 0}
    r6.refresh_from_db()
    assert r6.status == "withdrawn" and "not answered within 5 days" in r6.decision_reason
    closed = [m for m in mail.outbox if m.to == [r6.email] and "was closed" in m.subject]
    assert len(closed) == 1
    actions = list(AuditEvent.objects.filter(request=r6).values_list("action", "credential"))
    assert actions == [("request.info_reminded", "task:needs_info_sweep"), ("request.lapse", "task:needs_info_sweep")]
    # No cool-down: the applicant may apply again.
    from access.selectors import rejection_cooldown_ends

    assert rejection_cooldown_ends(user=r6.applicant, release=r6.release) is None


def test_the_applicant_is_told_when_an_unanswered_question_closes_the_request(client, world, settings):
    settings.NEEDS_INFO_REMINDER_DAYS, settings.NEEDS_INFO_CLOSE_DAYS = 30, 14
    r6 = world.requests["r6"]  # asked 4 days ago
    client.force_login(r6.applicant)
    body = client.get(f"/requests/{r6.public_id}/").content.decode()
    closes = (r6.info_requested_at + timedelta(days=44)).date()
    assert f"closed on {closes} (UTC)" in body


def test_answering_then_being_asked_again_starts_a_new_reminder(world, reviewer, settings):
    r6 = world.requests["r6"]
    AccessRequest.objects.filter(pk=r6.pk).update(info_reminded_at=timezone.now())
    services.request_answer(actor=services.Actor(user=r6.applicant), access_request=r6, answer="Our lab is X.")
    services.request_ask_info(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True),
        access_request=r6,
        question="Who leads it?",
    )
    r6.refresh_from_db()
    assert r6.info_reminded_at is None and r6.info_requested_at > timezone.now() - timedelta(minutes=1)


def test_people_cannot_remind_or_close(world, reviewer):
    with pytest.raises(services.Forbidden):
        services.request_lapse(
            actor=services.Actor(user=reviewer, credential="session"), access_request=world.requests["r6"]
        )


def test_release_managers_set_the_deadline_and_transparency(client, world, reviewer):
    services.release_manager_add(actor=services.command_actor("add_reviewer"), user=reviewer)
    login_recently(client, reviewer)
    assert 'id="review-policy-form"' in client.get("/manage/lab/model-a/").content.decode()
    assert client.get("/models/lab/model-a/transparency").status_code == 404  # off by default
    response = client.post("/manage/lab/model-a/review", {"review_deadline_days": "14", "transparency_public": "on"})
    assert response.status_code == 302
    world.a.refresh_from_db()
    assert world.a.review_deadline_days == 14 and world.a.transparency_public
    event = AuditEvent.objects.filter(action="release.updated").latest("id")
    assert event.data["to"] == {"review_deadline_days": 14, "transparency_public": True}
    assert client.post("/manage/lab/model-a/review", {"review_deadline_days": "0"}).status_code == 400
    assert client.post("/manage/lab/model-a/review", {"review_deadline_days": "abc"}).status_code == 400
    client.logout()
    assert 'id="transparency-link"' in client.get("/models/lab/model-a").content.decode()
    page = client.get("/models/lab/model-a/transparency").content.decode()
    assert "7 requests received" in page and "Median time to decision: 2 days" in page
    assert "Applicant" not in page and "uni.example" not in page  # aggregates only
    assert ">100%<" in page and ">0%<" in page  # academic 2/2, industry research 0/1


def test_reviewers_without_release_manager_powers_cannot_change_the_deadline(world, reviewer):
    with pytest.raises(services.Forbidden):
        services.release_update(
            actor=services.Actor(user=reviewer, credential="session", reauthenticated=True),
            release=world.a,
            changes={"review_deadline_days": 1},
        )


# --- Decisions, save and next, bulk ---------------------------------------------------------------------------


def test_save_and_next_opens_the_next_request_of_the_filtered_queue(client, reviewer, world):
    login_recently(client, reviewer)
    q = "status=pending&release=lab%2Fmodel-a"
    r4, r5 = world.requests["r4"], world.requests["r5"]
    page = client.get(f"/review/?{q}").content.decode()
    assert f"/review/requests/{r4.public_id}/?q=status%3Dpending%26release%3Dlab%252Fmodel-a" in page
    response = client.post(f"/review/requests/{r4.public_id}/", {"action": "approve", "q": q, "next": "1"})
    assert response.status_code == 302 and response["Location"].startswith(f"/review/requests/{r5.public_id}/?q=")
    response = client.post(
        f"/review/requests/{r5.public_id}/", {"action": "reject", "reason": "Commercial.", "q": q, "next": "1"}
    )
    assert response.status_code == 302 and response["Location"] == f"/review/?{q}"  # the last one: back to the queue
    assert AccessRequest.objects.get(pk=r5.pk).status == "rejected"


def test_a_decision_has_no_default_and_reject_needs_a_reason(client, reviewer, world):
    login_recently(client, reviewer)
    r4 = world.requests["r4"]
    page = client.get(f"/review/requests/{r4.public_id}/").content.decode()
    for action in ("approve", "request_info", "reject"):
        assert f'id="decide-{action}"' in page
    assert '<select name="action"' not in page
    assert client.post(f"/review/requests/{r4.public_id}/", {"reason": "x"}).status_code == 400
    response = client.post(f"/review/requests/{r4.public_id}/", {"action": "reject", "reason": "  "})
    assert response.status_code == 400 and "Give a reason" in response.content.decode()
    assert AccessRequest.objects.get(pk=r4.pk).status == "pending"


def test_saved_reasons_are_offered_for_their_action_only(client, reviewer, world):
    ReasonTemplate.objects.create(kind="request_info", title="Lab lead", text="Who leads your lab?")
    login_recently(client, reviewer)
    page = client.get(f"/review/requests/{world.requests['r4'].public_id}/").content.decode()
    ask = page[page.index('id="decide-request_info"') : page.index('id="decide-reject"')]
    assert 'data-text="Who leads your lab?"' in ask and 'data-fills="reason-request_info"' in ask
    assert "Who leads your lab?" not in page[page.index('id="decide-reject"') :]


def test_bulk_approval_lists_what_it_will_approve_and_decides_only_once_confirmed(client, reviewer, world):
    login_recently(client, reviewer)
    r4, r5, b2 = world.requests["r4"], world.requests["r5"], world.requests["b2"]
    lab = services.lab_create(actor=services.Actor(user=b2.applicant), name="Language Lab")
    AccessRequest.objects.filter(pk=b2.pk).update(lab=lab, all_members=True)
    chosen = {"ids": [r4.public_id, b2.public_id], "action": "approve", "next": "/review/?status=pending"}

    # The first POST only asks: a page listing each selected request, its release and whether it is a lab's.
    response = client.post("/review/bulk", chosen)
    assert response.status_code == 200
    body = response.content.decode()
    listed = body.split('id="bulk-selected"')[1].split("</table>")[0]
    assert "Applicant R4" in listed and "lab/model-a" in listed and "Individual" in listed
    assert "Applicant B2" in listed and "lab/model-b" in listed and "Language Lab" in listed
    assert "Applicant R5" not in listed
    assert "Approve these 2 requests?" in body
    assert AccessRequest.objects.filter(status="approved", pk__in=[r4.pk, b2.pk]).count() == 0

    # Confirmed: both approved, and the message counts them.
    response = client.post("/review/bulk", {**chosen, "confirm": "1"}, follow=True)
    assert "2 requests approved." in response.content.decode()
    assert set(AccessRequest.objects.filter(pk__in=[r4.pk, b2.pk]).values_list("status", flat=True)) == {"approved"}
    response = client.post("/review/bulk", {"ids": [r5.public_id], "action": "approve", "confirm": "1"}, follow=True)
    assert "1 request approved." in response.content.decode()
    with translation.override("zh-hans"):
        assert ngettext("%(n)d request approved.", "%(n)d requests approved.", 2) % {"n": 2} == "已批准 2 个申请。"


def test_bulk_has_no_default_action(client, reviewer, world):
    login_recently(client, reviewer)
    r4, r5 = world.requests["r4"], world.requests["r5"]
    queue = client.get("/review/").content.decode()
    action = queue.split('name="action"')[1].split("</select>")[0]
    assert '<option value="" selected>' in action
    response = client.post("/review/bulk", {"ids": [r4.public_id, r5.public_id], "next": "/review/", "confirm": "1"})
    assert response.status_code == 400
    body = response.content.decode()
    assert "Choose an action: approve or reject." in body
    assert 'aria-invalid="true"' in re.search(r'<select name="action"[^>]*>', body).group(0)
    for r in (r4, r5):  # the selection is kept, nothing is decided
        assert "checked" in body.split(f'value="{r.public_id}"')[1].split(">")[0]
    assert set(AccessRequest.objects.filter(pk__in=[r4.pk, r5.pk]).values_list("status", flat=True)) == {"pending"}


def test_bulk_keeps_what_failed_selected_and_says_why(client, reviewer, world):
    login_recently(client, reviewer)
    r4, r5, r1 = world.requests["r4"], world.requests["r5"], world.requests["r1"]
    response = client.post(
        "/review/bulk",
        {
            "ids": [r4.public_id, r1.public_id, r5.public_id],
            "action": "approve",
            "next": "/review/?status=pending",
            "confirm": "1",
        },
        follow=True,
    )
    body = response.content.decode()
    assert "2 requests approved." in body
    assert "Not decided: Applicant R1" in body and "approved" in body
    assert f'value="{r1.public_id}" aria-label="Select Applicant R1" checked' not in body  # r1 is not listed
    assert response.redirect_chain[-1][0].endswith(f"selected={r1.public_id}")
    # A rejection without a reason changes nothing and keeps every box ticked.
    b2 = world.requests["b2"]
    response = client.post("/review/bulk", {"ids": [b2.public_id], "action": "reject", "next": "/review/"}, follow=True)
    body = response.content.decode()
    assert "Nothing was changed" in body and "checked" in body.split(f'value="{b2.public_id}"')[1].split(">")[0]
    assert AccessRequest.objects.get(pk=b2.pk).status == "pending"


def test_the_queue_has_tabs_with_counts_and_clears_filters(client, reviewer, world):
    login_recently(client, reviewer)
    body = client.get("/review/?release=lab/model-a").content.decode()
    tabs = body.split('id="status-tabs"')[1].split("</nav>")[0]
    assert 'aria-current="page" data-status="pending">Pending <span class="count">2</span>' in tabs
    assert 'data-status="needs_info">Waiting on applicant <span class="count">1</span>' in tabs
    assert 'data-status="">All <span class="count">7</span>' in tabs
    assert 'id="clear-filters"' in body and 'for="f-release"' in body and 'id="select-all"' in body


def test_an_answered_question_is_marked(client, reviewer, world):
    r6 = world.requests["r6"]
    services.request_answer(actor=services.Actor(user=r6.applicant), access_request=r6, answer="The NLP group.")
    login_recently(client, reviewer)
    row = client.get("/review/").content.decode().split(f'data-id="{r6.public_id}"')[1].split("</tr>")[0]
    assert 'class="badge answered"' in row


# --- Revocation -----------------------------------------------------------------------------------------------


def test_revoking_needs_a_confirmation_that_states_link_lifetimes(client, reviewer, world, settings):
    settings.SIGNED_URL_TTL, settings.GRANT_URL_TTL = 3600, 7 * 86400
    login_recently(client, reviewer)
    g1 = world.grants["g1"]
    page = client.get(f"/review/grants/{g1.public_id}/").content.decode()
    assert page.index('id="revoke"') < page.index("<h2>Downloads</h2>")  # the control first, the file list after
    assert "for up to 1 hour" in page and "up to 7 days" in page
    assert '<details class="files"' in page
    response = client.post(f"/review/grants/{g1.public_id}/", {"reason": "Breach of license."})
    assert response.status_code == 400 and "Confirm" in response.content.decode()
    g1.refresh_from_db()
    assert g1.revoked_at is None
    response = client.post(f"/review/grants/{g1.public_id}/", {"reason": "Breach of license.", "confirm": "on"})
    assert response.status_code == 302
    g1.refresh_from_db()
    assert g1.revoked_at is not None


# --- Exports --------------------------------------------------------------------------------------------------


def test_exports_follow_the_filters_and_dates_as_csv_and_json(client, reviewer, world):
    login_recently(client, reviewer)
    today = timezone.localdate()
    span = f"from={today - timedelta(days=60)}&to={today}"
    response = client.get(f"/review/export/requests.json?status=pending&release=lab/model-a&{span}")
    assert response["Content-Type"].startswith("application/json")
    rows = json.loads(b"".join(response.streaming_content))
    assert sorted(r["full_name"] for r in rows) == ["Applicant R4", "Applicant R5"]
    response = client.get(f"/review/export/grants.csv?release=lab/model-a&{span}")
    grants = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert sorted(g["state"] for g in grants) == ["active", "revoked"]
    response = client.get(f"/review/export/downloads.json?release=lab/model-b&{span}")
    assert json.loads(b"".join(response.streaming_content)) == []
    assert client.get("/review/export/requests.xml").status_code == 404
    assert client.get("/review/export/secrets.csv").status_code == 404
    assert client.get("/review/export/grants.csv?release=no/such").status_code == 400
    exported = AuditEvent.objects.filter(action="export.downloaded").values_list("data", flat=True)
    assert {"kind": "requests", "format": "json"}.items() <= next(iter(exported)).items()


def test_csv_exports_defuse_formulas(client, reviewer, local_storage):
    login_recently(client, reviewer)
    AccessRequestFactory(full_name='=HYPERLINK("http://evil")', affiliation="+1", role="@x")
    rows = list(csv.reader(io.StringIO(b"".join(client.get("/review/export/requests.csv").streaming_content).decode())))
    row = rows[1]
    assert row[4].startswith("'=") and row[6] == "'+1" and row[9] == "'@x"


def test_stats_are_computed_in_a_few_queries(world, django_assert_max_num_queries):
    f = stats.parse_filters({"period": "365"})
    # A fixed number whatever the rows: the request figures, automatic and human decisions, flaw reports' triage.
    with django_assert_max_num_queries(24):
        stats.review_stats(f)


def test_a_reviewer_cannot_see_their_own_pending_request_decided_by_themselves(client, world):
    reviewer = UserFactory(email="self@portal.example")
    services.reviewer_add(actor=services.command_actor("add_reviewer"), user=reviewer)
    own = AccessRequestFactory(applicant=reviewer, release=world.a)
    login_recently(client, reviewer)
    client.post(f"/review/requests/{own.public_id}/", {"action": "approve"})
    assert AccessRequest.objects.get(pk=own.pk).status == "pending"


def test_closed_days_are_summed_once_and_give_the_same_figures(client, reviewer, world):
    from access.counts import download_days_rollup
    from access.models import DownloadDay, DownloadEvent

    before = stats_for(client, reviewer, "?release=lab/model-a&period=30")["downloads_per_day"]
    assert download_days_rollup() == 3  # from the first event's day (3 days ago) through yesterday
    assert download_days_rollup() == 2  # the last day summed again, and the one before it (late events)
    today = timezone.localdate()
    summed = DownloadDay.objects.get(day=today - timedelta(days=3), release=world.a)
    assert (summed.researchers, summed.files, summed.bytes, summed.manifests) == (2, 3, 250, 1)
    assert DownloadDay.objects.get(day=today - timedelta(days=2), release__isnull=True).files == 0
    assert not DownloadDay.objects.filter(day=today).exists()  # today is not closed
    # Today's events are summed live, beside the closed days.
    DownloadEvent.objects.create(
        release=world.a, file=world.a.files.get(path="f2.bin"), user=world.users["r1"], via="api"
    )
    after = stats_for(client, reviewer, "?release=lab/model-a&period=30")["downloads_per_day"]
    assert after[:-1] == before[:-1]
    assert after[-1]["files"] == before[-1]["files"] + 1 and after[-1]["bytes"] == before[-1]["bytes"] + 50
    every = stats_for(client, reviewer, "?period=30")["downloads_per_day"]
    assert sum(d["files"] for d in every) == 5 and every[-4]["researchers"] == 2


@pytest.mark.parametrize(
    "q", ["status=pending\r\nSet-Cookie: x=1", "//evil.example/", "status=nope&page=%00", "x" * 5000]
)
def test_a_hostile_queue_reference_is_rebuilt_from_known_filters(client, reviewer, world, q):
    login_recently(client, reviewer)
    r4 = world.requests["r4"]
    page = client.get(f"/review/requests/{r4.public_id}/", {"q": q})
    back = page.content.decode().split('id="back-to-queue"')[0].rsplit("<a ", 1)[1]
    assert page.status_code == 200 and back.startswith('href="/review/') and "evil" not in back
    response = client.post(f"/review/requests/{r4.public_id}/", {"action": "approve", "q": q, "next": "1"})
    assert response.status_code == 302
    location = response["Location"]
    assert location.startswith("/review/") and "\r" not in location and "\n" not in location
    assert "evil" not in location and "Set-Cookie" not in location


@pytest.mark.parametrize(
    "query", ["?status=bogus", "?release=%ff%fe", "?country=" + "Z" * 300, "?page=abc", "?selected=" + "a" * 3000]
)
def test_hostile_queue_parameters_are_never_a_500(client, reviewer, world, query):
    login_recently(client, reviewer)
    assert client.get(f"/review/{query}").status_code in (200, 404)
    assert client.get(f"/review/dashboard{query}").status_code in (200, 400)


def test_a_long_file_list_is_paginated_below_the_controls(client, reviewer, world):
    from access.models import DownloadEvent, ModelFile

    g1 = world.grants["g1"]
    files = ModelFile.objects.bulk_create(
        ModelFile(release=world.a, path=f"shard-{i:03d}.pt", size=1, sha256=f"{i:064x}", storage_key=f"k/{i}")
        for i in range(150)
    )
    DownloadEvent.objects.bulk_create(
        DownloadEvent(release=world.a, file=f, user=g1.user, grant=g1, via="api") for f in files
    )
    login_recently(client, reviewer)
    first = client.get(f"/review/grants/{g1.public_id}/").content.decode()
    assert first.index('id="revoke"') < first.index('id="fetched-files"')
    assert first.count('<td class="mono">') == 100 and "Page 1 of 2" in first
    second = client.get(f"/review/grants/{g1.public_id}/?files=2").content.decode()
    assert second.count('<td class="mono">') == 52  # 150 shards and f1.bin, f2.bin
    assert '<details class="files" id="fetched-files" open>' in second
    assert client.get(f"/review/grants/{g1.public_id}/?files=9").status_code == 404


def test_the_admin_sets_the_deadline_through_the_release_service(client, world):
    admin = UserFactory(email="admin@portal.example", is_staff=True, is_superuser=True)
    login_recently(client, admin)
    a = world.a
    data = {
        "display_name": a.display_name,
        "description": "",
        "access": "gated",
        "license": a.license_id,
        "published": "on",
        "license_update_mode": "reconsent",
        "parameters": a.parameters,
        "review_deadline_days": "3",
        "transparency_public": "on",
        "lab_member_cap": "25",
    }
    response = client.post(f"/admin/access/modelrelease/{a.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:1000]
    a.refresh_from_db()
    assert (a.review_deadline_days, a.transparency_public) == (3, True)
    event = AuditEvent.objects.filter(action="release.updated", target_id=str(a.pk)).latest("id")
    assert event.data["to"] == {"review_deadline_days": 3, "transparency_public": True}
    assert event.credential.startswith("admin")
    assert (
        client.post(f"/admin/access/modelrelease/{a.pk}/change/", {**data, "review_deadline_days": "0"}).status_code
        == 200
    )
    a.refresh_from_db()
    assert a.review_deadline_days == 3


def test_a_saved_reason_is_given_in_the_applicants_language(client, reviewer, world):
    template = ReasonTemplate.objects.create(
        kind="reject", title="Commercial", text="Commercial use is not allowed.", text_zh_hans="不允许商业用途。"
    )
    r4, r5 = world.requests["r4"], world.requests["r5"]
    type(r4.applicant).objects.filter(pk=r4.applicant_id).update(language="zh-hans")
    login_recently(client, reviewer)
    page = client.get(f"/review/requests/{r4.public_id}/").content.decode()
    assert 'data-text="不允许商业用途。"' in page
    client.post(f"/review/requests/{r4.public_id}/", {"action": "reject", "reason": "", "template": template.pk})
    client.post(f"/review/requests/{r5.public_id}/", {"action": "reject", "reason": "", "template": template.pk})
    assert AccessRequest.objects.get(pk=r4.pk).decision_reason == "不允许商业用途。"
    assert AccessRequest.objects.get(pk=r5.pk).decision_reason == "Commercial use is not allowed."
