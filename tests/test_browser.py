"""The portal in a real browser (Playwright's sync API on Debian's chromium) against pytest-django's live server.

Everything a person does is done by clicking and typing; the ORM is used only to publish the release, create the
reviewer and researcher accounts that sign in, and read the locmem email outbox (the live server runs in a thread
of this process). Screenshots of every step go to test-artifacts/browser/<test>/.
"""

from __future__ import annotations

import re
import time

import pytest
from django.core import mail
from playwright.sync_api import expect

from access import services
from tests.factories import LicenseFactory, ReleaseFactory, UserFactory, add_file

pytest_plugins = ["tests.support.browser"]  # browser, new_page, shots
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

REPO = "facebook/opt-175b"
FILES = {
    "config.json": b'{"model_type": "opt", "hidden_size": 12288}\n',
    "checkpoint_last-model_part-0-shard0.pt": b"\x80\x02weights-part-0" * 64,
    "checkpoint_last-model_part-1-shard0.pt": b"\x80\x02weights-part-1" * 64,
}
USER_PASSWORD = "correct horse battery staple"  # tests.factories.UserFactory's password
FULL_NAME = "Ada Researcher"
ANSWERS = {
    "full_name": FULL_NAME,
    "affiliation": "University of Examples",
    "role": "Postdoctoral researcher",
}
INTENDED_USE = (
    "We study calibration and memorisation in large language models across scales, using held-out reasoning "
    "benchmarks; the results and code will be published openly."
)
QUESTION = "Which lab do you work in, and who leads it?"
ANSWER = "The NLP group of Prof. Example at the University of Examples."

QUESTION_SUBJECT = "A reviewer has a question about your request for %(repo)s"
APPROVAL_SUBJECT = "Approved: you can now download %(repo)s"
# What the applicant's pages must say, per language (the zh-hans strings are in locale/zh_Hans).
TEXT = {
    "en": {
        "My requests": "My requests",
        "Request access": "Request access",
        "Submit request": "Submit request",
        "Pending review": "Pending review",
        "More information needed": "More information needed",
        "Approved": "Approved",
        # Emails are written in the account's language: the browser's at sign-up.
        QUESTION_SUBJECT: QUESTION_SUBJECT,
        APPROVAL_SUBJECT: APPROVAL_SUBJECT,
    },
    "zh-hans": {
        "My requests": "我的申请",
        "Request access": "申请访问",
        "Submit request": "提交申请",
        "Pending review": "待审核",
        "More information needed": "需要更多信息",
        "Approved": "已批准",
        QUESTION_SUBJECT: "审核人对您的 %(repo)s 访问申请有疑问",
        APPROVAL_SUBJECT: "已批准：您现在可以下载 %(repo)s",
    },
}


@pytest.fixture
def opt_175b(local_storage, settings, live_server):
    settings.SITE_URL = live_server.url
    license_ = LicenseFactory(
        slug="opt-175b-noncommercial",
        version="1.0",
        title="OPT-175B License Agreement",
        text="Non-commercial research use only. Do not redistribute the weights.",
    )
    release = ReleaseFactory(
        repo_id=REPO, display_name="OPT-175B", parameters=175_000_000_000, access="gated", license=license_
    )
    for path, content in FILES.items():
        add_file(release, path, content)
    return release


@pytest.fixture
def reviewer(db):
    return services.reviewer_add(
        actor=services.command_actor("add_reviewer"), user=UserFactory(email="rita@portal.example")
    )


def sign_in(page, shots, email, step="sign-in"):
    page.goto("/accounts/login/")
    page.locator("input[name=login]").fill(email)
    page.locator("input[name=password]").fill(USER_PASSWORD)
    shots(page, step)
    page.locator("main form button[type=submit]").click()
    expect(page.locator("header .who")).to_have_text(email)


def one(messages, subject_part, to):
    found = [m for m in messages if subject_part in m.subject and m.to == [to]]
    assert len(found) == 1, [(m.subject, m.to) for m in messages]
    return found[0]


def researcher_and_reviewer_story(*, lang, new_page, shots, reviewer, email):
    t = TEXT[lang]
    # The browser's own language choice (Accept-Language) picks the portal's language.
    locale = {"en": {"locale": "en-US"}, "zh-hans": {"locale": "zh-CN", "accept_language": "zh-Hans,zh;q=0.9"}}
    page = new_page(**locale[lang])

    # The catalog and the gated release, anonymously.
    page.goto("/")
    expect(page.locator("html")).to_have_attribute("lang", lang)
    shots(page, "catalog")
    page.get_by_role("link", name=REPO, exact=True).click()
    expect(page.locator("#request-access .access-state")).to_have_attribute("data-code", "not_authenticated")
    shots(page, "release-anonymous")

    # Sign up, confirm the address from the email, and come back signed in.
    page.locator("#request-access a[href^='/accounts/signup/']").click()
    page.locator("input[name=email]").fill(email)
    page.locator("input[name=password1]").fill("a long passphrase for tests 42")
    page.locator("input[name=password2]").fill("a long passphrase for tests 42")
    shots(page, "signup-form")
    page.locator("main form button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/accounts/confirm-email/$"))
    shots(page, "verification-sent")
    (verification,) = [m for m in mail.outbox if m.to == [email]]
    link = re.search(r"https?://\S+/accounts/confirm-email/[^\s/]+/", verification.body).group(0)
    page.goto(link)
    shots(page, "confirm-email")
    page.locator("main form button[type=submit]").click()
    expect(page.locator("header .who")).to_have_text(email)
    shots(page, "signed-in")

    # The release page → Request access → the form, first with an intended use that is too short.
    page.locator("header a.brand").click()
    page.get_by_role("link", name=REPO, exact=True).click()
    request_link = page.locator("#request-access-link")
    expect(request_link).to_have_text(t["Request access"])
    shots(page, "release-signed-in")
    request_link.click()
    expect(page.locator("#apply-form")).to_be_visible()
    expect(page.locator("#license-text")).to_contain_text("Non-commercial research use only")
    for name, value in ANSWERS.items():
        page.locator(f"#id_{name}").fill(value)
    page.locator("#id_organization_type").select_option("academic")
    page.locator("#id_country").select_option("NL")
    page.locator("#id_intended_use").press_sequentially("LLM research.")
    page.locator("#id_accept_license").check()
    page.locator("#id_noncommercial_attested").check()
    shots(page, "apply-form-too-short")
    page.get_by_role("button", name=t["Submit request"]).click()

    errors = page.locator("#field-intended_use #errors-intended_use")
    expect(errors).to_be_visible()
    expect(errors).to_contain_text("100")
    expect(page.locator(".errorlist")).to_have_count(1)  # only that field is refused
    for name, value in ANSWERS.items():
        expect(page.locator(f"#id_{name}")).to_have_value(value)
    expect(page.locator("#id_organization_type")).to_have_value("academic")
    expect(page.locator("#id_country")).to_have_value("NL")
    expect(page.locator("#id_intended_use")).to_have_value("LLM research.")
    expect(page.locator("#id_accept_license")).to_be_checked()
    expect(page.locator("#id_noncommercial_attested")).to_be_checked()
    shots(page, "apply-error-shown")

    page.locator("#id_intended_use").fill(INTENDED_USE)
    page.get_by_role("button", name=t["Submit request"]).click()
    status = page.locator("#request-status")
    expect(status).to_have_attribute("data-status", "pending")
    expect(status).to_have_text(t["Pending review"])
    shots(page, "request-pending")
    request_url = page.url

    # The reviewer, in a browser of their own, asks a question.
    review = new_page(locale="en-US")
    sign_in(review, shots, reviewer.email, "reviewer-sign-in")
    review.get_by_role("link", name="Review queue").click()
    review.get_by_role("link", name=FULL_NAME).click()
    expect(review.locator("#review-status")).to_have_attribute("data-status", "pending")
    expect(review.locator("#intended-use")).to_contain_text(INTENDED_USE)
    ask = review.locator("#decide-request_info")
    ask.get_by_label("Your question (shown to the applicant)").fill(QUESTION)
    shots(review, "reviewer-asks")
    ask.get_by_role("button", name="Ask for information", exact=True).click()
    expect(review.locator("#review-status")).to_have_attribute("data-status", "needs_info")
    shots(review, "reviewer-asked")

    # The applicant finds the question under My requests and answers it.
    page.get_by_role("link", name=t["My requests"], exact=True).click()
    page.locator("main").get_by_role("link", name=REPO, exact=True).click()
    assert page.url == request_url
    expect(status).to_have_attribute("data-status", "needs_info")
    expect(status).to_have_text(t["More information needed"])
    expect(page.locator("#info-request")).to_have_text(QUESTION)
    shots(page, "applicant-sees-question")
    page.locator("#needs-info textarea[name=answer]").fill(ANSWER)
    page.locator("#needs-info button[type=submit]").click()
    expect(status).to_have_attribute("data-status", "pending")
    expect(status).to_have_text(t["Pending review"])
    shots(page, "applicant-answered")

    # The request is back in the reviewer's pending queue; they approve it.
    review.get_by_role("link", name="Review queue").click()
    review.get_by_role("link", name=FULL_NAME).click()
    expect(review.locator("#info-response")).to_have_text(ANSWER)
    shots(review, "reviewer-approves")
    review.locator("#decide-approve").get_by_role("button", name="Approve", exact=True).click()
    expect(review.locator("#review-status")).to_have_attribute("data-status", "approved")
    shots(review, "reviewer-approved")

    # The applicant sees the approval and opens the grant (issued on commit: CELERY_TASK_ALWAYS_EAGER).
    page.reload()
    expect(status).to_have_attribute("data-status", "approved")
    expect(status).to_have_text(t["Approved"])
    shots(page, "applicant-approved")
    page.locator("#grant-link").click()
    expect(page).to_have_url(re.compile(r"/grants/[^/]+/$"))
    state = page.locator("#grant-state")
    expect(state).to_have_class(re.compile(r"\bapproved\b"))
    if lang == "en":
        expect(state).to_have_text("Active")
    files = page.locator("#files")
    for path in FILES:
        expect(files).to_contain_text(path)
    expect(page.locator("#batch-downloads")).to_be_visible()
    shots(page, "grant")
    grant_path = re.sub(r"^https?://[^/]+", "", page.url)

    # Both decisions reached the applicant by email; the approval links the grant page, not raw signed URLs.
    asked = one(mail.outbox, t[QUESTION_SUBJECT] % {"repo": REPO}, email)
    assert QUESTION in asked.body
    approved = one(mail.outbox, t[APPROVAL_SUBJECT] % {"repo": REPO}, email)
    assert grant_path in approved.body
    assert "/storage/" not in approved.body
    return page


def test_a_researcher_signs_up_applies_answers_a_question_and_is_approved(new_page, shots, opt_175b, reviewer):
    researcher_and_reviewer_story(lang="en", new_page=new_page, shots=shots, reviewer=reviewer, email="ada@uni.example")


def test_the_same_story_in_simplified_chinese(new_page, shots, opt_175b, reviewer):
    from django.utils import translation

    with translation.override("zh-hans"):
        missing = [s for s, zh in TEXT["zh-hans"].items() if translation.gettext(s) != zh]
    if missing:
        pytest.fail(
            f"locale/zh_Hans lacks compiled translations for {missing}: run `make messages` "
            "(SECRET_KEY=x manage.py compilemessages --ignore=.venv)"
        )
    researcher_and_reviewer_story(
        lang="zh-hans", new_page=new_page, shots=shots, reviewer=reviewer, email="lin@uni.example"
    )


def test_an_api_token_secret_is_shown_once(new_page, shots, db):
    user = UserFactory(email="tok@uni.example")
    page = new_page()
    sign_in(page, shots, user.email)
    page.get_by_role("link", name="API tokens").click()
    expect(page.get_by_text("No tokens yet.")).to_be_visible()
    shots(page, "tokens-empty")
    page.get_by_label("Name").fill("cluster download")
    page.get_by_role("button", name="Create token").click()
    secret = page.locator("#new-token")
    expect(secret).to_be_visible()
    value = secret.inner_text().strip()
    row = page.locator("main table tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("cluster download")
    prefix = row.locator("td.mono").inner_text().rstrip("…")
    assert len(value) > 30 and value.startswith(prefix)
    shots(page, "token-created")

    # Reloading the page that showed the secret (creation redirects, so nothing is resubmitted), then coming back
    # to it, shows the token's prefix only, never the secret, and still one token.
    page.reload()
    for step in ("tokens-reloaded", "tokens-revisited"):
        expect(page.locator("#new-token")).to_have_count(0)
        expect(page.locator("main table tbody tr")).to_have_count(1)
        expect(page.locator("main table tbody tr td.mono")).to_have_text(f"{prefix}…")
        assert value not in page.content()
        shots(page, step)
        page.get_by_role("link", name="API tokens").click()


def test_error_pages_in_the_browser(new_page, shots, opt_175b, settings, monkeypatch):
    page = new_page()

    response = page.goto("/models/facebook/opt-9999b")
    assert response.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    expect(page.get_by_role("link", name="Back to the models")).to_be_visible()
    shots(page, "unknown-release-404")

    response = page.goto(f"/api/v1/models/{REPO}/manifest")
    assert response.status == 401
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["code"] == "not_authenticated"
    shots(page, "manifest-not-authenticated")

    # Signed in without a grant: 403 with the code that says what to do next, in the browser's session too.
    researcher = new_page()
    sign_in(researcher, shots, UserFactory(email="nogrant@uni.example").email, step="sign-in-no-grant")
    response = researcher.goto(f"/api/v1/models/{REPO}/manifest")
    assert response.status == 403
    assert response.json()["code"] == "gated" and "apply" in response.json()["detail"]
    shots(researcher, "manifest-gated-403")

    # The API throttle, at 2 calls an hour per IP. Its windows are fixed, so the three calls must fall in one: a
    # minute's window was crossed now and then on a busy machine.
    from access.api import throttling

    throttling._store().clear()  # the manifest call above counted too
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"ip": "2/hour", "user": "2/hour"},
    }
    if (left := 3600 - time.time() % 3600) < 30:
        time.sleep(left)
    statuses = [page.goto("/api/v1/models/").status for _ in range(2)]
    response = page.goto("/api/v1/models/")
    assert statuses == [200, 200] and response.status == 429
    assert response.json()["code"] == "throttled"
    assert int(response.headers["retry-after"]) > 0
    shots(page, "api-throttled-429")

    # The sign-in form's rate limit (allauth) renders the portal's 429 page.
    settings.ACCOUNT_RATE_LIMITS = {**settings.ACCOUNT_RATE_LIMITS, "login": "1/m/ip"}
    page.goto("/accounts/login/")
    page.locator("input[name=login]").fill("nobody@uni.example")
    page.locator("input[name=password]").fill("wrong password")
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.locator("main form button[type=submit]").click()
    assert posted.value.status == 200  # refused sign-in, the form again
    shots(page, "login-refused")
    page.locator("input[name=password]").fill("another wrong password")
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.locator("main form button[type=submit]").click()
    assert posted.value.status == 429
    expect(page.get_by_role("heading", name="Too many requests")).to_be_visible()
    shots(page, "login-throttled-429")


# --- The reviewer workspace --------------------------------------------------------------------------------------

WORKSPACE = {
    "en": {
        "Dashboard": "Review dashboard",
        "Show": "Show",
        "Filter": "Filter",
        "Revoke": "Revoke access",
        "last": "That was the last request in this queue.",
        "position": "You are number 2 in the queue for lab/model-a.",
        "wait": "typically decided in 2 days",
    },
    "zh-hans": {
        "Dashboard": "审核仪表板",
        "Show": "显示",
        "Filter": "筛选",
        "Revoke": "撤销访问",
        "last": "这是此队列中的最后一个申请。",
        "position": "你在 lab/model-a 的审核队列中排第 2 位。",
        "wait": "通常在 2 天内作出决定",
    },
}
LOCALES = {"en": {"locale": "en-US"}, "zh-hans": {"locale": "zh-CN", "accept_language": "zh-Hans,zh;q=0.9"}}


def reviewer_workspace_story(*, lang, new_page, shots, reviewer):
    from access.models import AccessRequest, Grant, ReasonTemplate
    from tests.factories import AccessRequestFactory
    from tests.support.review_data import DAY, seed_review_world

    t = WORKSPACE[lang]
    world = seed_review_world()
    r8 = AccessRequestFactory(
        applicant=UserFactory(email="r8@uni.example"),
        release=world.a,
        full_name="Applicant R8",
        created_at=world.now - DAY,
        license_accepted_at=world.now - DAY,
    )
    ReasonTemplate.objects.update_or_create(
        kind="reject", title="Commercial use", defaults={"text": "The intended use is commercial."}
    )

    # The applicant of r5 sees where they stand: behind r4 in lab/model-a's queue; decisions there took 1, 2 and
    # 4 days in the last 90 days, so typically 2.
    applicant = new_page(**LOCALES[lang])
    sign_in(applicant, shots, "r5@uni.example", "applicant-sign-in")
    applicant.goto(f"/requests/{world.requests['r5'].public_id}/")
    expect(applicant.locator("#queue-position")).to_have_attribute("data-position", "2")
    expect(applicant.locator("#queue-position")).to_have_text(t["position"])
    expect(applicant.locator("#typical-wait")).to_have_attribute("data-seconds", "172800")
    expect(applicant.locator("#typical-wait")).to_contain_text(t["wait"])
    shots(applicant, "applicant-position-and-wait")

    # The dashboard: every chart drawn from its table, under the strict CSP (no inline script or style).
    page = new_page(**LOCALES[lang])
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    sign_in(page, shots, reviewer.email, "reviewer-sign-in")
    page.goto("/review/")
    expect(page.locator("header nav .count")).to_have_text("4")  # r4, r5, r8, b2
    page.locator(".page-head a[href='/review/dashboard']").click()
    expect(page.get_by_role("heading", name=t["Dashboard"])).to_be_visible()
    expect(page.locator(".chart-box[data-drawn=true]")).to_have_count(7)
    expect(page.locator("#fig-overdue")).to_have_text("2")
    shots(page, "dashboard-all-releases")
    page.locator("#release").select_option("lab/model-a")
    page.locator("#period").select_option("30")
    page.get_by_role("button", name=t["Show"], exact=True).click()
    expect(page.locator("#fig-overdue")).to_have_text("1")
    expect(page.locator("#fig-p50")).to_contain_text("2.0")
    expect(page.locator("#overdue-list")).to_contain_text("Applicant R4")
    expect(page.locator(".chart-box[data-drawn=true]")).to_have_count(7)
    shots(page, "dashboard-model-a")
    page.locator("#period").select_option("custom")
    expect(page.locator("#from")).to_be_enabled()
    page.locator("#from").fill(str((world.now - 16 * DAY).date()))
    page.locator("#to").fill(str((world.now - 13 * DAY).date()))
    page.get_by_role("button", name=t["Show"], exact=True).click()
    expect(page.locator("#fig-submitted")).to_have_text("1")  # r2 alone was submitted then
    shots(page, "dashboard-date-range")

    # A filtered queue: lab/model-a's pending requests, oldest first; r4 is overdue.
    page.goto("/review/")
    page.locator("#f-release").select_option("lab/model-a")
    page.locator("#queue-filters").get_by_role("button", name=t["Filter"], exact=True).click()
    rows = page.locator("#queue tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_have_class("overdue")
    expect(page.locator("#status-tabs [aria-current=page] .count")).to_have_text("3")
    page.locator("#select-all").check()
    expect(page.locator("#queue input[name=ids]:checked")).to_have_count(3)
    page.locator("#select-all").uncheck()
    shots(page, "queue-filtered")

    # Save and next through the three: approve r4, reject r5 with a saved reason, ask r8 a question.
    rows.nth(0).locator("a").click()
    expect(page.locator("h1")).to_contain_text("Applicant R4")
    shots(page, "decide-r4")
    page.locator("#decide-approve button[name=next]").click()
    expect(page.locator("h1")).to_contain_text("Applicant R5")
    page.locator("#template-reject").select_option(label="Commercial use")
    expect(page.locator("#reason-reject")).to_have_value("The intended use is commercial.")
    page.locator("#reason-reject").press("End")
    page.locator("#reason-reject").press_sequentially(" Apply again for research use.")
    shots(page, "decide-r5-saved-reason")
    page.locator("#decide-reject button[name=next]").click()
    expect(page.locator("h1")).to_contain_text("Applicant R8")
    page.locator("#reason-request_info").fill("Which lab do you work in?")
    shots(page, "decide-r8")
    page.locator("#decide-request_info button[name=next]").click()
    expect(page.locator("main")).to_contain_text(t["last"])
    expect(page.locator("#queue tbody tr")).to_have_count(1)  # nothing pending left: "Nothing matches."
    shots(page, "queue-done")
    statuses = {r.full_name: (r.status, r.decision_reason) for r in AccessRequest.objects.filter(release=world.a)}
    assert statuses["Applicant R4"][0] == "approved"
    assert statuses["Applicant R5"] == ("rejected", "The intended use is commercial. Apply again for research use.")
    assert statuses["Applicant R8"][0] == "needs_info" and r8.pk

    # A confirmed revocation: the danger zone comes first and says how long issued links keep working.
    grant = world.grants["g1"]
    page.goto(f"/review/grants/{grant.public_id}/")
    zone = page.locator("#revoke")
    expect(zone).to_be_visible()
    assert zone.bounding_box()["y"] < page.locator("#fetched-files").bounding_box()["y"]
    expect(page.locator("#fetched")).to_be_hidden()  # the file list is collapsed
    expect(page.locator("#link-lifetimes")).to_contain_text("1")
    page.locator("#id_reason").fill("Shared the weights outside the lab.")
    shots(page, "revoke-unconfirmed")
    zone.get_by_role("button", name=t["Revoke"]).click()
    assert Grant.objects.get(pk=grant.pk).revoked_at is None  # the confirmation is required
    page.locator("#id_confirm").check()
    shots(page, "revoke-confirmed")
    zone.get_by_role("button", name=t["Revoke"]).click()
    expect(page.locator("#grant-state")).to_have_class(re.compile(r"\brevoked\b"))
    shots(page, "revoked")
    assert Grant.objects.get(pk=grant.pk).revoked_at is not None
    assert not [e for e in errors if "Content Security Policy" in e or "Refused" in e], errors


def test_a_reviewer_works_through_the_dashboard_the_queue_and_a_revocation(new_page, shots, reviewer, local_storage):
    reviewer_workspace_story(lang="en", new_page=new_page, shots=shots, reviewer=reviewer)


def test_the_reviewer_workspace_in_simplified_chinese(new_page, shots, reviewer, local_storage):
    reviewer_workspace_story(lang="zh-hans", new_page=new_page, shots=shots, reviewer=reviewer)


def test_bulk_approval_asks_first_with_the_list_of_what_it_approves(new_page, shots, reviewer, local_storage):
    from access.models import AccessRequest
    from tests.support.review_data import seed_review_world

    world = seed_review_world(with_files=False)
    r4, b2 = world.requests["r4"], world.requests["b2"]
    lab = services.lab_create(actor=services.Actor(user=b2.applicant), name="Language Lab")
    AccessRequest.objects.filter(pk=b2.pk).update(lab=lab, all_members=True)

    def statuses():
        return set(AccessRequest.objects.filter(pk__in=[r4.pk, b2.pk]).values_list("status", flat=True))

    page = new_page()
    sign_in(page, shots, reviewer.email)
    page.goto("/review/")
    for r in (r4, b2):
        page.locator(f"#queue input[name=ids][value='{r.public_id}']").check()
    apply = page.get_by_role("button", name="Apply to selected")
    selected = page.locator("#queue input[name=ids]:checked")

    # No action is chosen for the reviewer: applying without one is a form error (the browser's own, as the
    # select is required), and nothing is decided.
    expect(page.locator("#id_action")).to_have_value("")
    apply.click()
    expect(page.locator("#id_action:invalid")).to_have_count(1)
    assert page.locator("#id_action").evaluate("e => e.validationMessage")
    expect(page).to_have_url(re.compile(r"/review/$"))
    expect(selected).to_have_count(2)
    shots(page, "no-action-chosen")
    assert statuses() == {"pending"}

    # Approve: a page lists each selected request (applicant, release, lab or not) and asks once. Cancel.
    page.locator("#id_action").select_option("approve")
    apply.click()
    rows = page.locator("#bulk-selected tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="Applicant R4")).to_contain_text("lab/model-a")
    expect(rows.filter(has_text="Applicant R4")).to_contain_text("Individual")
    expect(rows.filter(has_text="Applicant B2")).to_contain_text("lab/model-b")
    expect(rows.filter(has_text="Applicant B2")).to_contain_text("Language Lab")
    shots(page, "confirm-approval")
    page.get_by_role("link", name="Cancel").click()
    expect(page.locator("#queue")).to_be_visible()
    expect(selected).to_have_count(2)
    shots(page, "cancelled")
    assert statuses() == {"pending"}

    # Approve again and confirm: both approved, and the message counts them.
    page.locator("#id_action").select_option("approve")
    apply.click()
    page.get_by_role("button", name="Approve 2 requests").click()
    expect(page.locator(".messages")).to_contain_text("2 requests approved.")
    shots(page, "approved")
    assert statuses() == {"approved"}
