from django.urls import path, re_path, register_converter

from . import fileserve, views
from .api import hf, hf_review
from .paths import PUBLIC_ID
from .views import (
    account,
    advisories,
    dashboard,
    documents,
    flaws,
    grants,
    labs,
    manage,
    metrics,
    officials,
    requests,
    review,
    stewardship,
    traces,
    webhooks,
)


class MirrorConverter:
    """A mirror name as STORAGE_MIRRORS allows it (MIRROR_NAME_RE): it starts with a letter, so a LocalStorage
    mirror's URLs never match the primary's /storage/<expires>/…"""

    regex = "[a-z][a-z0-9-]{0,31}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(MirrorConverter, "mirror")

REPO = r"(?P<repo_id>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)"

urlpatterns = [
    # The download paths first: Django tries patterns in order, and every pattern tried costs each request a regular
    # expression and a list. No route after them has a URL they match (tests/test_url_order.py).
    path("storage/<int:expires>/<str:signature>/<path:key>", fileserve.storage_file, name="storage-file"),
    path(
        "storage/<mirror:mirror>/<int:expires>/<str:signature>/<path:key>",
        fileserve.storage_file,
        name="storage-mirror-file",
    ),
    path("dl/<str:ticket>/<path:path>", fileserve.download_relay, name="download-relay"),
    re_path(rf"^{REPO}/resolve/(?P<revision>[^/]+)/(?P<path>.+)$", hf.ResolveApi.as_view(), name="hf-resolve"),
    path("", views.catalog, name="catalog"),
    re_path(rf"^models/{REPO}/?$", views.release_detail, name="release-detail"),
    re_path(rf"^models/{REPO}/apply/?$", requests.apply, name="release-apply"),
    re_path(rf"^models/{REPO}/transparency/?$", dashboard.transparency, name="release-transparency"),
    re_path(rf"^models/{REPO}/flaw-reports/new/?$", flaws.report_new, name="flaw-report-new"),
    re_path(rf"^models/{REPO}/register/?$", stewardship.release_register, name="release-register"),
    re_path(rf"^models/{REPO}/license$", documents.release_license, name="release-license"),
    re_path(rf"^models/{REPO}/documents/{PUBLIC_ID}/$", documents.document_detail, name="release-document"),
    re_path(
        rf"^models/{REPO}/documents/{PUBLIC_ID}/v(?P<number>[0-9]{{1,6}})\.md$",
        documents.document_raw,
        name="release-document-raw",
    ),
    re_path(
        rf"^models/{REPO}/documents/{PUBLIC_ID}/acknowledge$",
        documents.document_acknowledge,
        name="release-document-acknowledge",
    ),
    path("licenses/<slug:slug>/", views.license_detail, name="license-latest"),
    path("licenses/<slug:slug>/v<str:version>/", views.license_detail, name="license-detail"),
    re_path(rf"^models/{REPO}/advisories\.atom$", advisories.release_advisories_atom, name="release-advisories-atom"),
    path("advisories/<str:public_id>/", advisories.advisory_detail, name="advisory-detail"),
    path("download.py", views.download_script, name="download-script"),
    path("downloading", views.downloading, name="downloading"),
    path("help", views.help_page, name="help"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", metrics.metrics, name="metrics"),
    # Applicants
    path("requests/", requests.my_requests, name="my-requests"),
    path("requests/<str:public_id>/", requests.request_detail, name="request-detail"),
    path("requests/<str:public_id>/withdraw", requests.request_withdraw, name="request-withdraw"),
    path("requests/<str:public_id>/attachments", requests.request_attach, name="request-attach"),
    path(
        "requests/<str:public_id>/attachments/<str:attachment_id>/remove",
        requests.request_attachment_remove,
        name="request-attachment-remove",
    ),
    path("requests/<str:public_id>/submit", requests.request_submit_draft, name="request-submit"),
    path("grants/", grants.my_grants, name="my-grants"),
    path("grants/<str:public_id>/", grants.grant_detail, name="grant-detail"),
    path("grants/<str:public_id>/status", grants.grant_batch_status, name="grant-batch-status"),
    path("grants/<str:public_id>/batch.<str:fmt>", grants.grant_batch_download, name="grant-batch-download"),
    path("grants/<str:public_id>/refresh", grants.grant_refresh, name="grant-refresh"),
    path("grants/<str:public_id>/files/<path:path>", grants.grant_file, name="grant-file"),
    path("grants/<str:public_id>/renew", stewardship.grant_renew, name="grant-renew"),
    path("grants/<str:public_id>/report", stewardship.grant_report, name="grant-report"),
    path("grants/<str:public_id>/close", stewardship.grant_close, name="grant-close"),
    path("grants/<str:public_id>/close-out", stewardship.grant_closeout, name="grant-closeout"),
    path(
        "grants/<str:public_id>/register/withdraw",
        stewardship.grant_register_withdraw,
        name="grant-register-withdraw",
    ),
    path("grants/<str:public_id>/register/member", stewardship.grant_register_member, name="grant-register-member"),
    path("grants/<str:public_id>/license", grants.grant_license, name="grant-license"),
    # Flaw reports
    path("flaw-reports/", flaws.my_reports, name="my-flaw-reports"),
    path("flaw-reports/<str:public_id>/", flaws.report_detail, name="flaw-report-detail"),
    path(
        "flaw-reports/<str:public_id>/attachments/<str:attachment_id>",
        flaws.report_attachment,
        name="flaw-report-attachment",
    ),
    path("tokens/", grants.tokens, name="tokens"),
    # The account's linked identities and verified facts
    path("account/identities/", account.identities, name="account-identities"),
    path("account/identities/<str:public_id>/unlink", account.identity_unlink, name="account-identity-unlink"),
    path("account/cards/", officials.library_cards, name="library-cards"),
    # Signing officials
    path("official/", officials.official_home, name="official-home"),
    path("official/<str:ror_id>/", officials.official_institution, name="official-institution"),
    path("official/<str:ror_id>/cards", officials.official_card_issue, name="official-card-issue"),
    path(
        "official/<str:ror_id>/cards/<str:public_id>/revoke",
        officials.official_card_revoke,
        name="official-card-revoke",
    ),
    # Labs
    path("labs/", labs.labs, name="labs"),
    path("labs/invitations/<str:token>/", labs.lab_invitation, name="lab-invitation"),
    path("labs/grants/<str:public_id>/", labs.lab_grant, name="lab-grant"),
    path("labs/grants/<str:public_id>/renew", labs.lab_grant_renew, name="lab-grant-renew"),
    path("labs/<str:public_id>/", labs.lab_detail, name="lab-detail"),
    path("labs/<str:public_id>/invite", labs.lab_invite, name="lab-invite"),
    path("labs/<str:public_id>/institution", labs.lab_institution, name="lab-institution"),
    path(
        "labs/<str:public_id>/invitations/<str:invitation_id>/revoke",
        labs.lab_invitation_revoke,
        name="lab-invitation-revoke",
    ),
    path("labs/<str:public_id>/members/<str:member_id>/remove", labs.lab_member_remove, name="lab-member-remove"),
    path("labs/<str:public_id>/members/<str:member_id>/role", labs.lab_member_role, name="lab-member-role"),
    path("tokens/<int:pk>/revoke", grants.token_revoke, name="token-revoke"),
    # Reviewers
    path("review/", review.queue, name="review-queue"),
    path("review/bulk", review.bulk, name="review-bulk"),
    path("review/requests/<str:public_id>/", review.detail, name="review-detail"),
    path("review/attachments/<str:public_id>", review.attachment, name="review-attachment"),
    path("review/close-outs/", stewardship.review_closeouts, name="review-closeouts"),
    path("review/traces/", traces.review_trace, name="review-trace"),
    path("review/grants/", review.grants, name="review-grants"),
    path("review/grants/<str:public_id>/", review.grant_detail, name="review-grant"),
    path("review/lab-seats/<str:public_id>/decide", labs.review_seat_decide, name="review-seat-decide"),
    path("review/export/<str:kind>.<str:fmt>", review.export, name="review-export"),
    path("review/dashboard", dashboard.dashboard, name="review-dashboard"),
    path("review/flaw-reports/", flaws.review_queue, name="review-flaw-reports"),
    path("review/flaw-reports/<str:public_id>/", flaws.review_detail, name="review-flaw-report"),
    # Webhook endpoints (admins and release managers)
    path("webhooks/", webhooks.endpoints, name="webhooks"),
    path("webhooks/<str:public_id>/", webhooks.endpoint_detail, name="webhook-detail"),
    # Release managers
    path("manage/", manage.releases, name="manage-releases"),
    re_path(rf"^manage/{REPO}/$", manage.release, name="manage-release"),
    re_path(rf"^manage/{REPO}/preview$", manage.preview, name="manage-preview"),
    re_path(rf"^manage/{REPO}/license$", manage.license_move, name="manage-license"),
    re_path(rf"^manage/{REPO}/documents/$", documents.manage_documents, name="manage-documents"),
    re_path(rf"^manage/{REPO}/footprint$", documents.manage_footprint, name="manage-footprint"),
    re_path(rf"^manage/{REPO}/documents/{PUBLIC_ID}/$", documents.manage_document, name="manage-document"),
    re_path(rf"^manage/{REPO}/review$", manage.review_policy, name="manage-review-policy"),
    re_path(rf"^manage/{REPO}/rules$", manage.rules, name="manage-rules"),
    re_path(rf"^manage/{REPO}/marking$", manage.marking_enable, name="manage-marking"),
    re_path(rf"^manage/{REPO}/advisories$", advisories.manage_advisories, name="manage-advisories"),
    re_path(
        rf"^manage/{REPO}/advisories/{PUBLIC_ID}$",
        advisories.manage_advisory,
        name="manage-advisory",
    ),
    re_path(rf"^manage/{REPO}/license/versions$", manage.license_version, name="manage-license-version"),
    re_path(rf"^manage/{REPO}/questions/(?P<key>[a-z][a-z0-9_]*)$", manage.question_edit, name="manage-question"),
    re_path(
        rf"^manage/{REPO}/questions/(?P<key>[a-z][a-z0-9_]*)/retire$",
        manage.question_retire,
        name="manage-question-retire",
    ),
    # Hugging Face Hub compatible; /api/ here, since access.api.urls keeps to /api/v1 and the schema
    re_path(rf"^api/models/{REPO}/?$", hf.ModelInfoApi.as_view(), name="hf-model"),
    re_path(rf"^api/models/{REPO}/revision/(?P<revision>.+?)/?$", hf.ModelInfoApi.as_view(), name="hf-model-rev"),
    re_path(rf"^api/models/{REPO}/tree/(?P<revision>[^/]+)(?:/(?P<path>.*))?$", hf.TreeApi.as_view(), name="hf-tree"),
    re_path(
        rf"^api/models/{REPO}/user-access-request/(?P<state>pending|accepted|rejected)/?$",
        hf_review.AccessRequestListApi.as_view(),
        name="hf-access-requests",
    ),
    re_path(
        rf"^api/models/{REPO}/user-access-request/handle/?$",
        hf_review.AccessRequestHandleApi.as_view(),
        name="hf-access-request-handle",
    ),
    re_path(
        rf"^api/models/{REPO}/user-access-request/grant/?$",
        hf_review.AccessRequestGrantApi.as_view(),
        name="hf-access-request-grant",
    ),
    re_path(r"^api/whoami-v2/?$", hf_review.WhoAmIApi.as_view(), name="hf-whoami"),
]
