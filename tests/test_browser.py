"""The portal in a real browser (Playwright's sync API on Debian's chromium) against pytest-django's live server.

Everything a person does is done by clicking and typing; the ORM is used only to publish the release, create the
reviewer and researcher accounts that sign in, and read the locmem email outbox (the live server runs in a thread
of this process). Screenshots of every step go to test-artifacts/browser/<test>/.
"""

from __future__ import annotations

import re

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

# What the applicant's pages must say, per language (the zh-hans strings are in locale/zh_Hans).
TEXT = {
    "en": {
        "My requests": "My requests",
        "Request access": "Request access",
        "Submit request": "Submit request",
        "Pending review": "Pending review",
        "More information needed": "More information needed",
        "Approved": "Approved",
    },
    "zh-hans": {
        "My requests": "我的申请",
        "Request access": "申请访问",
        "Submit request": "提交申请",
        "Pending review": "待审核",
        "More information needed": "需要更多信息",
        "Approved": "已批准",
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
    return services.reviewer_add(user=UserFactory(email="rita@portal.example"))


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
    decision = review.locator("#decision-form")
    decision.get_by_label("Action").select_option(label="Ask for information")
    decision.get_by_label("Reason or question (shown to the applicant)").fill(QUESTION)
    shots(review, "reviewer-asks")
    decision.get_by_role("button", name="Record decision").click()
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
    decision.get_by_label("Action").select_option(label="Approve")
    shots(review, "reviewer-approves")
    decision.get_by_role("button", name="Record decision").click()
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
    asked = one(mail.outbox, f"A reviewer has a question about your request for {REPO}", email)
    assert QUESTION in asked.body
    approved = one(mail.outbox, f"Approved: you can now download {REPO}", email)
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

    # The API throttle, at 2 calls a minute per IP.
    from access.api import throttling

    throttling._store().clear()  # the manifest call above counted too
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"ip": "2/minute", "user": "2/minute"},
    }
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
