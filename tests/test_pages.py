"""What the researcher's pages say and offer, through Django's test client: the model card, the access state of a
gated release in each case, confirmation before withdrawing or revoking, the renewal window, a new token in the
commands, time zones, and the portal's name in pages and emails. (The same pages in a browser, with axe and
phone widths, are in test_pages_browser.)"""

import re
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.core import mail
from django.utils import timezone
from django.utils.html import strip_tags

from access import services
from access.listing import file_listing, natural_key
from access.markdown import TAGS, render_markdown
from access.models import AccessRequest, ApiToken, Grant
from tests.factories import ANSWERS as SUBMIT_ANSWERS
from tests.factories import AccessRequestFactory, ReleaseFactory, add_file, grant_for

pytestmark = pytest.mark.django_db

REPO = "facebook/opt-175b"


@pytest.fixture
def release(local_storage):
    release = ReleaseFactory(repo_id=REPO, access="gated")
    add_file(release, "config.json", b"{}\n")
    return release


def access_section(client, repo=REPO) -> str:
    body = client.get(f"/models/{repo}").content.decode()
    match = re.search(r'<section id="request-access".*?</section>', body, re.S)
    assert match, body
    return match.group(0)


def sentence_text(html: str) -> str:
    return " ".join(strip_tags(html).split())


# --- Model card and file lists ----------------------------------------------------------------------------


def test_it_renders_the_description_as_markdown_and_strips_anything_active(client, release):
    release.description = (
        "# OPT\n\n**Decoder-only** model.\n\n- one\n- two\n\n<script>alert(1)</script>\n\n"
        "[paper](https://arxiv.org/abs/2205.01068) [bad](javascript:alert(1)) <img src=x onerror=alert(1)>\n"
    )
    release.save()
    body = client.get(f"/models/{REPO}").content.decode()
    card = re.search(r'<section class="model-card".*?</section>', body, re.S).group(0)
    assert "<h2>OPT</h2>" in card  # the page's own h1 stays the only one
    assert "<strong>Decoder-only</strong>" in card and "<li>one</li>" in card
    assert '<a href="https://arxiv.org/abs/2205.01068" rel="noopener noreferrer nofollow">paper</a>' in card
    tags = re.findall(r"<[a-z][^>]*>", card)
    assert not [t for t in tags if re.match(r"<(script|img|iframe|style)", t) or re.search(r"\son\w+=|javascript:", t)]
    assert "&lt;script&gt;" in card  # shown as text, never run


def test_rendered_markdown_keeps_only_the_allowed_tags_and_attributes():
    html = render_markdown(
        '<a href="#" onclick="x()">a</a>\n\n<p style="color:red">b</p>\n\n`<b>code</b>`\n\n'
        "| a | b |\n|---|:-:|\n| 1 | 2 |\n\n[x](data:text/html,hi) [y](mailto:a@b.example)"
    )
    tags = re.findall(r"<[a-z][^>]*>", html)
    assert {re.match(r"<([a-z0-9]+)", t).group(1) for t in tags} <= TAGS
    attributes = {a for t in tags for a in re.findall(r"\s([a-z-]+)=", t)}
    assert attributes <= {"href", "rel", "align", "title", "start"}, attributes
    assert "&lt;b&gt;code&lt;/b&gt;" in html and "<table>" in html
    assert 'href="mailto:a@b.example"' in html and 'href="data:' not in html


def test_files_sort_naturally_and_group_by_model_part():
    paths = [f"checkpoint_last-model_part-{p}-shard{s}.pt" for p in (1, 0) for s in (10, 2, 1, 0, 3)]
    files = [SimpleNamespace(path=p, size=10) for p in [*paths, "dict.txt", "config.json"]]
    listing = file_listing(files)
    assert [g.label for g in listing.groups] == [
        "checkpoint_last-model_part-0-shard*.pt",
        "checkpoint_last-model_part-1-shard*.pt",
    ]
    assert [f.path for f in listing.groups[0].files] == [
        f"checkpoint_last-model_part-0-shard{s}.pt" for s in (0, 1, 2, 3, 10)
    ]
    assert [f.path for f in listing.loose] == ["config.json", "dict.txt"]
    assert listing.count == 12 and listing.size == 120
    assert natural_key("shard2") < natural_key("shard10")


def test_a_long_file_list_is_collapsed_behind_its_count_and_size(client, release):
    for i in range(30):
        add_file(release, f"pytorch_model-{i + 1:05d}-of-00030.bin", b"w" * 100)
    body = client.get(f"/models/{REPO}").content.decode()
    assert re.search(r'<details id="file-list">', body)  # closed
    # The group's name, which may break at its separators on a phone.
    assert "pytorch_model-*-of-00030.bin" in body.replace("<wbr>", "")
    assert "pytorch_<wbr>model-<wbr>" in body
    assert "31 files" in body and 'id="total-size"' in body


# --- The access state of a gated release ------------------------------------------------------------------


def test_a_signed_in_researcher_without_a_request_gets_the_request_access_button(client, alice, release):
    client.force_login(alice)
    section = access_section(client)
    assert 'data-code="gated"' in section and 'id="request-access-link"' in section
    assert f'href="/models/{REPO}/apply"' in section
    assert "http" not in sentence_text(section)


def test_a_pending_request_links_to_itself(client, alice, release):
    request = AccessRequestFactory(applicant=alice, release=release)
    client.force_login(alice)
    section = access_section(client)
    assert 'data-code="pending"' in section and 'data-status="pending"' in section
    assert f'href="/requests/{request.public_id}/"' in section and "UTC" in section
    assert "request-access-link" not in section and "http" not in sentence_text(section)


def test_a_question_from_the_reviewer_links_to_the_answer_form(client, alice, reviewer, release):
    request = AccessRequestFactory(applicant=alice, release=release)
    services.request_ask_info(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True),
        access_request=request,
        question="Which lab?",
    )
    client.force_login(alice)
    section = access_section(client)
    assert 'data-status="needs_info"' in section
    assert f'href="/requests/{request.public_id}/#needs-info"' in section


def test_a_rejection_shows_the_reason_and_when_to_apply_again(client, alice, reviewer, release, settings):
    request = AccessRequestFactory(applicant=alice, release=release)
    services.request_reject(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True),
        access_request=request,
        reason="Too vague.",
    )
    client.force_login(alice)
    section = access_section(client)
    request.refresh_from_db()
    again = request.decided_at + timedelta(days=settings.REJECTION_COOLDOWN_DAYS)
    assert 'data-code="rejected"' in section and "Too vague." in section
    assert f"{again:%Y-%m-%d %H:%M} UTC" in section
    assert "request-access-link" not in section  # not yet
    assert 'href="/help#contact"' in section and "http" not in sentence_text(section)

    AccessRequest.objects.filter(pk=request.pk).update(decided_at=timezone.now() - timedelta(days=31))
    section = access_section(client)
    assert 'id="request-access-link"' in section


def test_a_revoked_grant_shows_the_reason_and_offers_no_renewal(client, alice, reviewer, release):
    grant = grant_for(alice, release, reviewer)
    services.grant_revoke(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True),
        grant=grant,
        reason="Shared the weights.",
    )
    client.force_login(alice)
    section = access_section(client)
    assert 'data-code="revoked"' in section and "Shared the weights." in section
    assert "/renew" not in section and "request-access-link" not in section
    page = client.get(f"/grants/{grant.public_id}/").content.decode()
    assert "Shared the weights." in page and 'id="renew-button"' not in page


def test_an_expired_grant_offers_a_renewal(client, alice, reviewer, release):
    grant = grant_for(alice, release, reviewer)
    Grant.objects.filter(pk=grant.pk).update(
        issued_at=timezone.now() - timedelta(days=400), expires_at=timezone.now() - timedelta(days=1)
    )
    client.force_login(alice)
    section = access_section(client)
    assert 'data-code="expired"' in section
    assert f'action="/grants/{grant.public_id}/renew"' in section


def test_an_active_grant_links_to_its_page(client, alice, reviewer, release):
    grant = grant_for(alice, release, reviewer)
    client.force_login(alice)
    section = access_section(client)
    assert 'data-code="granted"' in section and f'href="/grants/{grant.public_id}/"' in section


# --- Safety: confirmation and the renewal window ----------------------------------------------------------


def test_withdrawing_asks_first_on_a_page_of_its_own(client, alice, release):
    request = AccessRequestFactory(applicant=alice, release=release)
    client.force_login(alice)
    detail = client.get(f"/requests/{request.public_id}/").content.decode()
    assert f'href="/requests/{request.public_id}/withdraw"' in detail
    assert f'action="/requests/{request.public_id}/withdraw"' not in detail  # no one-click withdrawal

    confirm = client.get(f"/requests/{request.public_id}/withdraw")
    assert confirm.status_code == 200
    assert f'action="/requests/{request.public_id}/withdraw"' in confirm.content.decode()
    request.refresh_from_db()
    assert request.status == "pending"

    assert client.post(f"/requests/{request.public_id}/withdraw").status_code == 302
    request.refresh_from_db()
    assert request.status == "withdrawn"


def test_someone_elses_withdraw_confirmation_is_not_found(client, bob, alice, release):
    request = AccessRequestFactory(applicant=alice, release=release)
    client.force_login(bob)
    assert client.get(f"/requests/{request.public_id}/withdraw").status_code == 404


def test_revoking_a_token_asks_first_on_a_page_of_its_own(client, alice, bob):
    token, _secret = services.token_create(
        actor=services.Actor(user=alice, credential="session", reauthenticated=True), name="laptop"
    )
    client.force_login(alice)
    listing = client.get("/tokens/").content.decode()
    assert f'href="/tokens/{token.pk}/revoke"' in listing and f'action="/tokens/{token.pk}/revoke"' not in listing
    confirm = client.get(f"/tokens/{token.pk}/revoke").content.decode()
    assert "laptop" in confirm and f'action="/tokens/{token.pk}/revoke"' in confirm
    token.refresh_from_db()
    assert token.revoked_at is None
    client.post(f"/tokens/{token.pk}/revoke")
    token.refresh_from_db()
    assert token.revoked_at is not None
    client.force_login(bob)
    assert client.get(f"/tokens/{token.pk}/revoke").status_code == 404


def test_ask_for_a_renewal_appears_only_inside_the_expiry_warning_window(client, alice, reviewer, release, settings):
    settings.GRANT_EXPIRY_WARNING_DAYS = 30
    grant = grant_for(alice, release, reviewer)
    client.force_login(alice)
    far = client.get(f"/grants/{grant.public_id}/").content.decode()
    assert 'id="renew-button"' not in far and 'id="renewal-later"' in far and "30 days" in far

    Grant.objects.filter(pk=grant.pk).update(expires_at=timezone.now() + timedelta(days=29))
    near = client.get(f"/grants/{grant.public_id}/").content.decode()
    assert 'id="renew-button"' in near and 'id="expiry-warning"' in near

    Grant.objects.filter(pk=grant.pk).update(expires_at=timezone.now() + timedelta(days=31))
    assert 'id="renew-button"' not in client.get(f"/grants/{grant.public_id}/").content.decode()


# --- Copy-ready commands ----------------------------------------------------------------------------------


def test_right_after_creating_a_token_the_download_commands_carry_it(client, alice, reviewer, release):
    grant_for(alice, release, reviewer)
    client.force_login(alice)
    client.post("/tokens/", {"name": "cluster"})
    body = client.get("/tokens/").content.decode()
    secret = re.search(r'<code id="new-token">([^<]+)</code>', body).group(1)
    assert ApiToken.objects.get(user=alice).prefix == secret[:10]
    commands = re.search(r'<code id="token-commands">(.*?)</code>', body, re.S).group(1)
    assert commands.splitlines()[0] == f"export PORTAL_TOKEN={secret}"
    assert f"python3 download.py {REPO} --portal http://testserver" in commands
    assert 'class="copy"' in body
    # Shown once: the next visit has neither.
    again = client.get("/tokens/").content.decode()
    assert secret not in again and 'id="token-commands"' not in again


def test_every_command_on_the_open_release_page_has_a_copy_button(client, local_storage):
    release = ReleaseFactory(repo_id="facebook/opt-125m", access="open")
    add_file(release, "config.json", b"{}\n")
    body = client.get("/models/facebook/opt-125m").content.decode()
    blocks = re.findall(r'<div class="code"[^>]*>.*?</div>\s*<pre tabindex="0"><code>(.*?)</code></pre>', body, re.S)
    assert len(blocks) == 4 and body.count('class="copy"') == 4
    assert any("download.py facebook/opt-125m" in b for b in blocks)


# --- Time zones and the portal's name ---------------------------------------------------------------------


def test_timestamps_say_their_time_zone(client, alice, reviewer, release):
    grant = grant_for(alice, release, reviewer)
    client.force_login(alice)
    for path in ("/requests/", f"/requests/{grant.request.public_id}/", "/grants/", f"/grants/{grant.public_id}/"):
        body = client.get(path).content.decode()
        stamps = re.findall(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}(?! UTC)(?!:)", body)
        assert "UTC" in body and stamps == [], (path, stamps)


def test_pages_and_emails_name_the_portal_by_site_name(client, alice, release, settings):
    settings.SITE_NAME = "Example Lab Weights"
    body = client.get("/").content.decode()
    assert '<a class="brand" href="/">Example Lab Weights</a>' in body
    assert "<title>Example Lab Weights</title>" in body
    client.post("/accounts/password/reset/", {"email": alice.email})
    (reset,) = mail.outbox
    assert reset.body.startswith("Hello,") and "— Example Lab Weights" in reset.body


def test_the_default_site_name_follows_the_language(client):
    body = client.get("/", HTTP_ACCEPT_LANGUAGE="zh-Hans").content.decode()
    assert '<a class="brand" href="/">模型访问门户</a>' in body


def test_the_footer_links_help_contact_and_terms_and_the_help_page_names_the_contact(client, settings):
    settings.CONTACT_EMAIL = "access@lab.example"
    body = client.get("/").content.decode()
    footer = re.search(r'<footer class="site">.*?</footer>', body, re.S).group(0)
    assert 'href="/help"' in footer and 'href="/help#contact"' in footer and 'href="/help#terms"' in footer
    help_page = client.get("/help").content.decode()
    assert 'href="mailto:access@lab.example"' in help_page and 'id="terms"' in help_page


def test_the_navigation_marks_the_current_page(client, alice):
    client.force_login(alice)
    body = client.get("/tokens/").content.decode()
    assert '<a href="/tokens/" aria-current="page">' in body
    assert '<a href="/grants/" aria-current="page">' not in body


def test_chinese_readers_find_countries_in_pinyin_order(client, alice, release):
    client.force_login(alice)
    body = client.get(f"/models/{REPO}/apply", HTTP_ACCEPT_LANGUAGE="zh-Hans").content.decode()
    select = re.search(r'<select name="country".*?</select>', body, re.S).group(0)
    names = re.findall(r'<option value="[A-Z]{2}"[^>]*>([^<]+)</option>', select)
    assert names.index("阿富汗") < names.index("澳大利亚") < names.index("巴西") < names.index("中国")
    assert names[0] == "阿尔巴尼亚"  # a'erbaniya: the first in pinyin, not the first code point
    english = client.get(f"/models/{REPO}/apply").content.decode()
    english_names = re.findall(r'<option value="[A-Z]{2}"[^>]*>([^<]+)</option>', english)
    assert english_names[0] == "Afghanistan"


def test_a_release_with_a_chinese_model_card_shows_it_to_chinese_readers(client, release):
    release.description = "**English** card."
    release.description_zh_hans = "**中文**模型卡片。"
    release.save()
    chinese = client.get(f"/models/{REPO}", HTTP_ACCEPT_LANGUAGE="zh-Hans").content.decode()
    english = client.get(f"/models/{REPO}").content.decode()
    assert "<strong>中文</strong>模型卡片。" in chinese and "English</strong>" not in chinese
    assert "<strong>English</strong> card." in english and "模型卡片" not in english
    release.description_zh_hans = ""
    release.save()
    assert "<strong>English</strong>" in client.get(f"/models/{REPO}", HTTP_ACCEPT_LANGUAGE="zh-Hans").content.decode()


def test_a_license_summary_of_changes_in_chinese_is_shown_to_chinese_readers(client, alice, reviewer, release):
    grant = grant_for(alice, release, reviewer)
    new = services.license_publish(
        actor=services.command_actor("tests"),
        slug=release.license.slug,
        version="2.0",
        title=release.license.title,
        text="New terms.",
        summary_of_changes="Attribution is now required.",
        summary_of_changes_zh_hans="现在需要注明出处。",
    )
    services.release_set_license(actor=services.command_actor("tests"), release=release, license=new)
    client.force_login(alice)
    chinese = client.get(f"/grants/{grant.public_id}/license", HTTP_ACCEPT_LANGUAGE="zh-Hans").content.decode()
    assert "现在需要注明出处。" in chinese and "Attribution is now required." not in chinese
    english = client.get(f"/grants/{grant.public_id}/license").content.decode()
    assert "Attribution is now required." in english


def test_the_verification_page_resends_the_link_through_sign_in(client, settings):
    settings.ACCOUNT_EMAIL_CONFIRMATION_COOLDOWN = 0
    password = "a long passphrase for tests 42"
    response = client.post(
        "/accounts/signup/", {"email": "new@uni.example", "password1": password, "password2": password}
    )
    assert response["Location"] == "/accounts/confirm-email/"
    page = client.get("/accounts/confirm-email/").content.decode()
    assert 'id="resend-link" href="/accounts/login/"' in page
    assert len(mail.outbox) == 1
    again = client.post("/accounts/login/", {"login": "new@uni.example", "password": password})
    assert again["Location"] == "/accounts/confirm-email/"
    assert [m.to for m in mail.outbox] == [["new@uni.example"]] * 2
    assert mail.outbox[1].body.startswith("Hello,") and "— Model access portal" in mail.outbox[1].body


def test_chinese_readers_get_current_country_names_in_pinyin_order(client, alice, release):
    client.force_login(alice)
    body = client.get(f"/models/{REPO}/apply", HTTP_ACCEPT_LANGUAGE="zh-Hans").content.decode()
    select = re.search(r'<select name="country".*?</select>', body, re.S).group(0)
    names = dict(re.findall(r'<option value="([A-Z]{2})"[^>]*>([^<]+)</option>', select))
    assert {code: names[code] for code in ("NP", "TJ", "AS", "WS", "MK", "SZ", "KM")} == {
        "NP": "尼泊尔",
        "TJ": "塔吉克斯坦",
        "AS": "美属萨摩亚",
        "WS": "萨摩亚",
        "MK": "北马其顿",
        "SZ": "埃斯瓦蒂尼",
        "KM": "科摩罗",
    }
    assert len(set(names.values())) == len(names)  # no two countries share a name
    order = list(names.values())
    # Sorted by the corrected names: ni bo'er before ni jialagua, ai siwatini after ai sai'ebiya.
    assert order.index("尼泊尔") < order.index("尼加拉瓜")
    assert order.index("埃塞俄比亚") < order.index("埃斯瓦蒂尼") < order.index("爱尔兰")
    english = client.get(f"/models/{REPO}/apply").content.decode()
    for name in ("Nepal", "Tajikistan", "American Samoa", "Samoa", "North Macedonia", "Eswatini", "Comoros"):
        assert f">{name}</option>" in english


def test_a_signed_out_visitor_reads_a_releases_license_on_its_own_versioned_page(client, release):
    from access.models import License

    old = release.license
    new = License.objects.create(
        slug=old.slug,
        version="2.0",
        title=old.title,
        text="Use for non-commercial research only.\n\nLab members accept it personally.",
        summary_of_changes="Lab members are named.",
        summary_of_changes_zh_hans="写明了实验室成员。",
    )
    release.license = new
    release.save()
    page = client.get(f"/models/{REPO}").content.decode()
    link = re.search(r'<a id="license-link" href="([^"]+)">', page).group(1)
    assert link == f"/licenses/{old.slug}/v2.0/"
    body = client.get(link).content.decode()
    assert "Lab members accept it personally." in body and "Lab members are named." in body
    assert f'href="/licenses/{old.slug}/v1.0/"' in body  # every version, each on its page
    assert "写明了实验室成员。" in client.get(link, HTTP_ACCEPT_LANGUAGE="zh-Hans").content.decode()
    earlier = client.get(f"/licenses/{old.slug}/v1.0/").content.decode()
    assert old.text in earlier and 'id="latest-version"' in earlier
    assert client.get(f"/licenses/{old.slug}/").content.decode().count("Lab members accept it personally.") == 1
    # An open release shows its license too; a license no visible release is under has no page.
    opened = ReleaseFactory(repo_id="facebook/opt-125m", access="open", license=new)
    assert f'href="/licenses/{old.slug}/v2.0/"' in client.get(f"/models/{opened.repo_id}").content.decode()
    License.objects.create(slug="draft", version="1", title="Draft", text="Not yet.")
    assert client.get("/licenses/draft/v1/").status_code == 404
    assert client.get(f"/licenses/{old.slug}/v9/").status_code == 404


def test_the_demo_catalog_puts_the_open_models_under_their_license(local_storage):
    from django.core.management import call_command

    from access.models import ModelRelease

    call_command("load_demo_catalog", "--only", "facebook/opt-125m", "--size", "1")
    licenses = dict(ModelRelease.objects.values_list("repo_id", "license__slug"))
    assert licenses == {"facebook/opt-125m": "opt-175b-noncommercial"}


def test_every_form_sent_back_with_errors_starts_with_a_summary_linking_each_field(client, alice, release):
    client.force_login(alice)
    body = client.post(f"/models/{REPO}/apply", {"intended_use": "Too short."}).content.decode()
    summary = re.search(
        r'<div class="error-summary" id="error-summary" role="alert" tabindex="-1".*?</div>', body, re.S
    )
    assert summary, body
    links = re.findall(r'<a href="#([^"]+)">', summary.group(0))
    assert {"id_full_name", "id_intended_use", "id_accept_license"} <= set(links)
    for target in links:
        assert f'id="{target}"' in body
    assert body.index('id="error-summary"') < body.index('id="id_full_name"')
    # The intended use is counted against its minimum as it is typed.
    assert 'data-count-min="100"' in body and 'id="id_intended_use_count"' in body
    # allauth's forms too.
    client.logout()
    login = client.post("/accounts/login/", {"login": "nobody@uni.example", "password": "wrong"}).content.decode()
    assert 'id="error-summary"' in login


def test_each_file_on_the_grant_page_downloads_through_the_gate_when_clicked(client, alice, bob, reviewer, release):
    from access.models import DownloadEvent

    grant = grant_for(alice, release, reviewer)
    client.force_login(alice)
    page = client.get(f"/grants/{grant.public_id}/").content.decode()
    link = f"/grants/{grant.public_id}/files/config.json"
    assert f'href="{link}" download' in page
    assert not DownloadEvent.objects.exists()  # showing the page records and signs nothing
    response = client.get(link)
    assert response.status_code == 302 and "/storage/" in response["Location"]
    (event,) = DownloadEvent.objects.all()
    assert (event.user, event.via, event.file.path, event.grant) == (alice, "web", "config.json", grant)
    services.grant_revoke(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True), grant=grant, reason="Ended."
    )
    refused = client.get(link)
    assert refused.status_code == 302 and refused["Location"] == f"/grants/{grant.public_id}/"
    assert DownloadEvent.objects.count() == 1
    client.force_login(bob)
    assert client.get(link).status_code == 404


def test_small_things_a_newcomer_trips_over(client, alice, bob, reviewer, release, django_capture_on_commit_callbacks):
    from access.models import Lab

    # Submitted: the page promises an email once, and the last change was "just now".
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=True):
        request = services.request_submit(
            actor=services.Actor(user=alice, credential="session"),
            release=release,
            data={**SUBMIT_ANSWERS, "noncommercial_attested": True},
            license_accepted=True,
        )
    page = client.get(f"/requests/{request.public_id}/").content.decode()
    assert sentence_text(page).count("email") <= 1 + sentence_text(page).count("Email")
    assert "just now" in client.get("/requests/").content.decode()
    assert "0 minutes ago" not in client.get("/requests/").content.decode()
    # Every email opens with a capital after its greeting.
    for message in mail.outbox:
        parts = message.body.split("\n\n")
        first = parts[1] if parts[0].startswith("Hello") else parts[0]
        assert first[:1].isupper(), message.body
    # The typical wait counts a decision at once; the decided request no longer "waits".
    assert "no typical wait" in sentence_text(client.get(f"/requests/{request.public_id}/").content.decode())
    other = AccessRequestFactory(applicant=bob, release=release)
    with django_capture_on_commit_callbacks(execute=True):
        services.request_approve(
            actor=services.Actor(user=reviewer, credential="session", reauthenticated=True), access_request=request
        )
    client.force_login(bob)
    assert 'id="typical-wait" data-seconds=""' not in client.get(f"/requests/{other.public_id}/").content.decode()
    client.force_login(reviewer)
    approved = client.get("/review/?status=approved").content.decode()
    assert "waiting under a day" not in approved and "decided " in approved
    # allauth's emails in the portal's own words; reviewers land on the queue after signing in.
    client.logout()
    mail.outbox.clear()
    client.post("/accounts/password/reset/", {"email": alice.email})
    (reset,) = mail.outbox
    assert "Someone, probably you" in reset.body and "You're receiving" not in reset.body
    assert reset.subject == "[Model access] Reset your password"
    signed_in = client.post("/accounts/login/", {"login": reviewer.email, "password": "correct horse battery staple"})
    assert signed_in["Location"] == "/review/"
    # The reviewer's grant list marks a lab grant and its members.
    lab = services.lab_create(actor=services.Actor(user=bob), name="Vision Lab")
    lab_request = AccessRequestFactory(applicant=bob, release=release, lab=lab, all_members=True)
    services.request_approve(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True), access_request=lab_request
    )
    services.grant_issue(request_id=lab_request.pk)
    assert Lab.objects.count() == 1
    grants = client.get("/review/grants/").content.decode()
    assert 'class="lab-grant"' in grants and "Lab: Vision Lab" in grants and "1 member:" in grants
    # An invitation's sign-up link fills in the invited address.
    client.logout()
    _invitation, token = services.lab_invite(actor=services.Actor(user=bob), lab=lab, email="zoe@uni.example")
    invitation = client.get(f"/labs/invitations/{token}/").content.decode()
    signup = re.search(r'id="invitation-signup" href="([^"]+)"', invitation).group(1).replace("&amp;", "&")
    assert 'value="zoe@uni.example"' in client.get(signup).content.decode()
    # The API docs page leads back to the portal.
    assert '<a href="/" id="back-to-portal">' in client.get("/api/docs").content.decode()
