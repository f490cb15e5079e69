from csp.decorators import csp_update
from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from ..paths import PUBLIC_ID, ROR_ID, hex_id
from . import advisories, catalog, documents, flaws, labs, officials, requests, rules, stats, stewardship, traces

# namespace and name are separate path parameters, so the OpenAPI schema can describe them.
# An advisory by its URL id or, once published, its ADV-YYYY-NNNN id.
ADVISORY = r"(?P<public_id>[0-9a-f]{32}|ADV-[0-9]{4}-[0-9]{4,6})"
ATTACHMENT_ID, MEMBER_ID = hex_id("attachment_id"), hex_id("member_id")
REPO = r"(?P<namespace>[A-Za-z0-9][\w.-]*)/(?P<name>[A-Za-z0-9][\w.-]*)"

urlpatterns = [
    re_path(r"^v1/models/?$", catalog.ReleaseListApi.as_view(), name="api-models"),
    re_path(rf"^v1/models/{REPO}/?$", catalog.ReleaseDetailApi.as_view(), name="api-model"),
    re_path(rf"^v1/models/{REPO}/files/(?P<path>.+)$", catalog.FileDownloadApi.as_view(), name="api-model-file"),
    re_path(rf"^v1/models/{REPO}/manifest/?$", catalog.ManifestApi.as_view(), name="api-model-manifest"),
    re_path(rf"^v1/models/{REPO}/documents/?$", documents.DocumentListApi.as_view(), name="api-model-documents"),
    re_path(
        rf"^v1/models/{REPO}/documents/{PUBLIC_ID}/?$",
        documents.DocumentDetailApi.as_view(),
        name="api-model-document",
    ),
    re_path(
        rf"^v1/models/{REPO}/documents/{PUBLIC_ID}/versions/?$",
        documents.DocumentVersionsApi.as_view(),
        name="api-model-document-versions",
    ),
    re_path(
        rf"^v1/models/{REPO}/documents/{PUBLIC_ID}/acknowledge/?$",
        documents.DocumentAcknowledgeApi.as_view(),
        name="api-model-document-acknowledge",
    ),
    re_path(rf"^v1/models/{REPO}/access-form/?$", requests.AccessFormApi.as_view(), name="api-model-access-form"),
    re_path(rf"^v1/models/{REPO}/rules/?$", rules.ReleaseRulesApi.as_view(), name="api-model-rules"),
    re_path(
        rf"^v1/models/{REPO}/advisories/?$", advisories.ReleaseAdvisoriesApi.as_view(), name="api-model-advisories"
    ),
    re_path(rf"^v1/advisories/{ADVISORY}/?$", advisories.AdvisoryApi.as_view(), name="api-advisory"),
    re_path(
        rf"^v1/advisories/{ADVISORY}/acknowledge/?$",
        advisories.AdvisoryAcknowledgeApi.as_view(),
        name="api-advisory-acknowledge",
    ),
    re_path(r"^v1/review/advisories/?$", advisories.ReviewAdvisoriesApi.as_view(), name="api-review-advisories"),
    re_path(
        rf"^v1/review/advisories/{ADVISORY}/?$", advisories.ReviewAdvisoryApi.as_view(), name="api-review-advisory"
    ),
    re_path(
        rf"^v1/review/advisories/{ADVISORY}/publish/?$",
        advisories.ReviewAdvisoryPublishApi.as_view(),
        name="api-review-advisory-publish",
    ),
    re_path(
        rf"^v1/review/advisories/{ADVISORY}/withdraw-revision/?$",
        advisories.ReviewAdvisoryWithdrawApi.as_view(),
        name="api-review-advisory-withdraw",
    ),
    re_path(
        rf"^v1/models/{REPO}/flaw-reports/?$", flaws.ReleaseFlawReportsApi.as_view(), name="api-model-flaw-reports"
    ),
    re_path(
        rf"^v1/models/{REPO}/disclosure-terms/?$", flaws.DisclosureTermsApi.as_view(), name="api-model-disclosure-terms"
    ),
    re_path(r"^v1/flaw-reports/?$", flaws.FlawReportListApi.as_view(), name="api-flaw-reports"),
    re_path(rf"^v1/flaw-reports/{PUBLIC_ID}/?$", flaws.FlawReportDetailApi.as_view(), name="api-flaw-report"),
    re_path(
        rf"^v1/flaw-reports/{PUBLIC_ID}/comments/?$",
        flaws.FlawReportCommentsApi.as_view(),
        name="api-flaw-report-comments",
    ),
    re_path(
        rf"^v1/flaw-reports/{PUBLIC_ID}/attachments/?$",
        flaws.FlawReportAttachmentsApi.as_view(),
        name="api-flaw-report-attachments",
    ),
    re_path(
        rf"^v1/flaw-reports/{PUBLIC_ID}/attachments/{ATTACHMENT_ID}/?$",
        flaws.FlawReportAttachmentApi.as_view(),
        name="api-flaw-report-attachment",
    ),
    re_path(r"^v1/review/flaw-reports/?$", flaws.ReviewFlawReportListApi.as_view(), name="api-review-flaw-reports"),
    re_path(
        rf"^v1/review/flaw-reports/{PUBLIC_ID}/triage/?$",
        flaws.ReviewFlawReportTriageApi.as_view(),
        name="api-review-flaw-report-triage",
    ),
    re_path(r"^v1/access-requests/?$", requests.AccessRequestListApi.as_view(), name="api-requests"),
    re_path(
        rf"^v1/access-requests/{PUBLIC_ID}/?$",
        requests.AccessRequestDetailApi.as_view(),
        name="api-request",
    ),
    re_path(
        rf"^v1/access-requests/{PUBLIC_ID}/withdraw/?$",
        requests.AccessRequestWithdrawApi.as_view(),
        name="api-request-withdraw",
    ),
    re_path(
        rf"^v1/access-requests/{PUBLIC_ID}/submit/?$",
        requests.AccessRequestSubmitApi.as_view(),
        name="api-request-submit",
    ),
    re_path(
        rf"^v1/access-requests/{PUBLIC_ID}/attachments/?$",
        requests.AccessRequestAttachmentsApi.as_view(),
        name="api-request-attachments",
    ),
    re_path(
        rf"^v1/access-requests/{PUBLIC_ID}/attachments/{ATTACHMENT_ID}/?$",
        requests.AccessRequestAttachmentApi.as_view(),
        name="api-request-attachment",
    ),
    re_path(r"^v1/grants/?$", requests.GrantListApi.as_view(), name="api-grants"),
    re_path(
        rf"^v1/grants/{PUBLIC_ID}/accept-license/?$",
        requests.GrantAcceptLicenseApi.as_view(),
        name="api-grant-accept-license",
    ),
    re_path(
        rf"^v1/grants/{PUBLIC_ID}/progress-reports/?$",
        stewardship.GrantProgressReportsApi.as_view(),
        name="api-grant-reports",
    ),
    re_path(rf"^v1/grants/{PUBLIC_ID}/renew/?$", stewardship.GrantRenewApi.as_view(), name="api-grant-renew"),
    re_path(rf"^v1/grants/{PUBLIC_ID}/close/?$", stewardship.GrantCloseApi.as_view(), name="api-grant-close"),
    re_path(
        rf"^v1/grants/{PUBLIC_ID}/close-out/?$",
        stewardship.GrantCloseOutApi.as_view(),
        name="api-grant-closeout",
    ),
    re_path(
        rf"^v1/grants/{PUBLIC_ID}/register/withdraw/?$",
        stewardship.GrantRegisterWithdrawApi.as_view(),
        name="api-grant-register-withdraw",
    ),
    re_path(rf"^v1/models/{REPO}/register/?$", stewardship.ReleaseRegisterApi.as_view(), name="api-model-register"),
    re_path(
        rf"^v1/models/{REPO}/transparency/?$",
        stewardship.ReleaseTransparencyApi.as_view(),
        name="api-model-transparency",
    ),
    re_path(r"^v1/review/close-outs/?$", stewardship.ReviewCloseOutsApi.as_view(), name="api-review-closeouts"),
    re_path(
        rf"^v1/review/grants/{PUBLIC_ID}/progress-reports/?$",
        stewardship.ReviewGrantReportsApi.as_view(),
        name="api-review-grant-reports",
    ),
    re_path(r"^v1/library-cards/?$", officials.MyCardsApi.as_view(), name="api-library-cards"),
    re_path(
        rf"^v1/institutions/{ROR_ID}/researchers/?$",
        officials.ResearchersApi.as_view(),
        name="api-institution-researchers",
    ),
    re_path(
        rf"^v1/institutions/{ROR_ID}/library-cards/?$",
        officials.InstitutionCardsApi.as_view(),
        name="api-institution-cards",
    ),
    re_path(
        rf"^v1/institutions/{ROR_ID}/library-cards/{PUBLIC_ID}/revoke/?$",
        officials.CardRevokeApi.as_view(),
        name="api-institution-card-revoke",
    ),
    re_path(
        rf"^v1/institutions/{ROR_ID}/officials/?$",
        officials.OfficialsApi.as_view(),
        name="api-institution-officials",
    ),
    re_path(
        rf"^v1/institutions/{ROR_ID}/officials/{PUBLIC_ID}/end/?$",
        officials.OfficialEndApi.as_view(),
        name="api-institution-official-end",
    ),
    re_path(r"^v1/labs/?$", labs.LabListApi.as_view(), name="api-labs"),
    re_path(rf"^v1/labs/{PUBLIC_ID}/?$", labs.LabDetailApi.as_view(), name="api-lab"),
    re_path(rf"^v1/labs/{PUBLIC_ID}/members/?$", labs.LabMembersApi.as_view(), name="api-lab-members"),
    re_path(
        rf"^v1/labs/{PUBLIC_ID}/members/{MEMBER_ID}/?$",
        labs.LabMemberApi.as_view(),
        name="api-lab-member",
    ),
    re_path(
        rf"^v1/labs/{PUBLIC_ID}/invitations/?$",
        labs.LabInvitationsApi.as_view(),
        name="api-lab-invitations",
    ),
    re_path(
        r"^v1/lab-invitations/(?P<token>[A-Za-z0-9_-]{20,100})/accept/?$",
        labs.LabInvitationAcceptApi.as_view(),
        name="api-lab-invitation-accept",
    ),
    re_path(
        rf"^v1/review/lab-seats/{PUBLIC_ID}/approve/?$",
        labs.ReviewLabSeatApi.as_view(),
        name="api-review-seat-approve",
    ),
    re_path(
        rf"^v1/review/lab-seats/{PUBLIC_ID}/reject/?$",
        labs.ReviewLabSeatRejectApi.as_view(),
        name="api-review-seat-reject",
    ),
    re_path(r"^v1/review/traces/?$", traces.TraceApi.as_view(), name="api-review-traces"),
    re_path(r"^v1/review/stats/?$", stats.ReviewStatsApi.as_view(), name="api-review-stats"),
    re_path(r"^v1/review/access-requests/?$", requests.ReviewRequestListApi.as_view(), name="api-review-requests"),
    re_path(
        rf"^v1/review/access-requests/{PUBLIC_ID}/approve/?$",
        requests.ReviewApproveApi.as_view(),
        name="api-review-approve",
    ),
    re_path(
        rf"^v1/review/access-requests/{PUBLIC_ID}/reject/?$",
        requests.ReviewRejectApi.as_view(),
        name="api-review-reject",
    ),
    re_path(
        rf"^v1/review/access-requests/{PUBLIC_ID}/request-info/?$",
        requests.ReviewAskInfoApi.as_view(),
        name="api-review-request-info",
    ),
    re_path(
        rf"^v1/review/attachments/{PUBLIC_ID}/?$",
        requests.ReviewAttachmentApi.as_view(),
        name="api-review-attachment",
    ),
    re_path(
        rf"^v1/review/grants/{PUBLIC_ID}/revoke/?$",
        requests.ReviewGrantRevokeApi.as_view(),
        name="api-review-revoke",
    ),
    path("schema", SpectacularAPIView.as_view(), name="api-schema"),
    # Swagger UI sets inline styles; its script is served separately, so scripts stay 'self' only.
    path(
        "docs",
        csp_update({"style-src": ["'unsafe-inline'"]})(SpectacularSwaggerSplitView.as_view(url_name="api-schema")),
        name="api-docs",
    ),
]
