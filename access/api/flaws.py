"""Flaw reports: researchers file them against a release's revisions under its disclosure terms and follow them;
reviewers and release managers triage them. Report ids are random public ids; a report is its reporter's and the
triagers' only."""

from __future__ import annotations

from django.http import FileResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import generics, parsers, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import selectors, services, stats
from ..http import actor_for
from ..models import FlawReport, FlawReportAttachment, FlawReportEntry, User
from ..permissions import IsAuthenticated, IsTriager
from ..storage import get_storage
from .catalog import ERROR, get_release_or_404
from .errors import ApiError, FieldErrors
from .pagination import Pagination
from .parsers import JSONParser


class TermsOutput(serializers.Serializer):
    repo_id = serializers.CharField(source="release.repo_id")
    version = serializers.IntegerField(help_text="send it as terms_version with a report")
    text = serializers.CharField()
    text_zh_hans = serializers.CharField(help_text="the terms in Simplified Chinese, when the release gives them")
    published_at = serializers.DateTimeField()


class FlawAttachmentOutput(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id")
    url = serializers.SerializerMethodField(help_text="where the reporter and reviewers read it")

    class Meta:
        model = FlawReportAttachment
        fields = ["id", "filename", "content_type", "size", "sha256", "created_at", "url"]

    def get_url(self, obj) -> str:
        return reverse(
            "api-flaw-report-attachment", kwargs={"public_id": obj.report.public_id, "attachment_id": obj.public_id}
        )


class EntryOutput(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id")
    by = serializers.SerializerMethodField(help_text="reporter, or reviewer")

    class Meta:
        model = FlawReportEntry
        fields = ["id", "kind", "by", "body", "from_status", "to_status", "created_at"]

    def get_by(self, obj) -> str:
        return "reviewer" if obj.by_reviewer else "reporter"


class FlawReportOutput(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id")
    repo_id = serializers.CharField(source="release.repo_id")
    revisions = serializers.SerializerMethodField(help_text="the affected revisions' 40-hex ids")
    terms_version = serializers.IntegerField(source="terms.version")
    duplicate_of = serializers.SerializerMethodField()
    assignee = serializers.SerializerMethodField()
    attachments = FlawAttachmentOutput(many=True, read_only=True)
    history = EntryOutput(source="entries", many=True, read_only=True)

    class Meta:
        model = FlawReport
        fields = [
            "id",
            "repo_id",
            "revisions",
            "title",
            "category",
            "description",
            "reproduction",
            "observed",
            "expected",
            "severity",
            "other_models",
            "other_models_detail",
            "credit_name",
            "anonymous",
            "terms_version",
            "terms_accepted_at",
            "status",
            "triage_severity",
            "duplicate_of",
            "assignee",
            "created_at",
            "updated_at",
            "triaged_at",
            "decided_at",
            "resolved_at",
            "attachments",
            "history",
        ]

    def get_revisions(self, obj) -> list[str]:
        return sorted(r.sha for r in obj.revisions.all())

    def get_duplicate_of(self, obj) -> str | None:
        return obj.duplicate_of.public_id if obj.duplicate_of_id else None

    def get_assignee(self, obj) -> str | None:
        return obj.assignee.email if obj.assignee_id else None


class ReviewFlawReportOutput(FlawReportOutput):
    reporter = serializers.EmailField(source="reporter.email", help_text="reviewers always see who reported it")
    overdue = serializers.SerializerMethodField(help_text="waiting for triage past the release's triage deadline")

    class Meta(FlawReportOutput.Meta):
        fields = [*FlawReportOutput.Meta.fields, "reporter", "overdue"]

    def get_overdue(self, obj) -> bool:
        return stats.flaw_is_overdue(obj)


class FlawReportInput(serializers.Serializer):
    """What a report says (JSON; or multipart with repeated `revisions` and `attachments` fields)."""

    revisions = serializers.ListField(child=serializers.CharField(), help_text="40-hex revision ids, or main")
    title = serializers.CharField(max_length=200)
    category = serializers.ChoiceField(FlawReport.Category.choices)
    description = serializers.CharField()
    reproduction = serializers.CharField(help_text="prompts, settings, decoding parameters")
    observed = serializers.CharField()
    expected = serializers.CharField()
    severity = serializers.ChoiceField(FlawReport.Severity.choices, help_text="as the reporter sees it")
    other_models = serializers.ChoiceField(FlawReport.OtherModels.choices, required=False)
    other_models_detail = serializers.CharField(required=False)
    credit_name = serializers.CharField(required=False, help_text="the name to credit; empty for none")
    anonymous = serializers.BooleanField(required=False, help_text="anonymous to the public; reviewers see you")
    terms_version = serializers.IntegerField(help_text="the disclosure terms' version the reporter read")
    accept_terms = serializers.BooleanField()
    attachments = serializers.ListField(child=serializers.FileField(), required=False, help_text="multipart only")


TEXT = ("title", "category", "description", "reproduction", "observed", "expected", "severity")
OPTIONAL_TEXT = ("other_models", "other_models_detail", "credit_name")
TRUE = ("true", "1", "on", "yes")


def _report_body(request) -> tuple[dict, list, object, object, list]:
    """The fields of a report from a JSON or multipart body, checked for shape (the service checks the rest)."""
    multipart = hasattr(request.data, "getlist")
    body = request.data if multipart or isinstance(request.data, dict) else {}
    if multipart:
        revisions = body.getlist("revisions")
        flags = {name: str(body.get(name, "")).lower() in TRUE for name in ("anonymous", "accept_terms")}
        uploads = request.FILES.getlist("attachments")
    else:
        revisions = body.get("revisions")
        flags = {name: body.get(name, False) for name in ("anonymous", "accept_terms")}
        uploads = []
    errors = {}
    data = {}
    for name in (*TEXT, *OPTIONAL_TEXT):
        value = body.get(name, "")
        if not isinstance(value, str):
            errors[name] = [_("Expected text.")]
        elif name in TEXT and not value.strip():
            errors[name] = [_("This field is required.")]
        data[name] = value if isinstance(value, str) else ""
    if not isinstance(revisions, list) or not all(isinstance(r, str) for r in revisions) or not revisions:
        errors["revisions"] = [_("Expected a list of revision ids.")]
    for name, value in flags.items():
        if not isinstance(value, bool):
            errors[name] = [_("Expected true or false.")]
    if errors:
        raise FieldErrors(errors)
    data["anonymous"] = flags["anonymous"]
    return data, revisions, body.get("terms_version"), flags["accept_terms"], uploads


class ReleaseFlawReportsApi(APIView):
    """File a flaw report on a release: holders of an active grant or lab seat covering it (or, where the release
    accepts them, any account with a verified email; 403 `not_a_holder` otherwise). Accept the current disclosure
    terms (GET …/disclosure-terms: send its `version` as `terms_version`, 400 `terms_version` if it moved on).
    Files: multipart `attachments`, capped as every upload (413 `upload_too_large`, 429 `upload_limit`)."""

    permission_classes = [IsAuthenticated]
    parser_classes = [JSONParser, parsers.MultiPartParser]

    @extend_schema(
        request={"application/json": FlawReportInput, "multipart/form-data": FlawReportInput},
        responses={201: FlawReportOutput, 400: ERROR, 401: ERROR, 403: ERROR, 404: ERROR, 413: ERROR, 429: ERROR},
        operation_id="models_flaw_reports_create",
    )
    def post(self, request, namespace, name):
        release = get_release_or_404(request, f"{namespace}/{name}")
        data, revisions, terms_version, accept_terms, uploads = _report_body(request)
        report = services.flaw_report_file(
            actor=actor_for(request),
            release=release,
            data=data,
            revisions=revisions,
            terms_version=terms_version,
            accept_terms=accept_terms,
            uploads=uploads,
        )
        return Response(FlawReportOutput(report).data, status=status.HTTP_201_CREATED)


class DisclosureTermsApi(APIView):
    """The release's current disclosure terms (safe harbour, embargo, credit), accepted with each flaw report.
    Separate from the license: a new version refuses no download and asks nobody to accept it again."""

    @extend_schema(
        responses={
            200: inline_serializer(
                "DisclosureTerms",
                {
                    "terms": TermsOutput(),
                    "may_report": serializers.BooleanField(help_text="whether the caller may file a report"),
                },
            ),
            404: ERROR,
        },
        operation_id="models_disclosure_terms",
    )
    def get(self, request, namespace, name):
        release = get_release_or_404(request, f"{namespace}/{name}")
        terms = services.disclosure_terms_current(release=release)
        user = request.user if request.user.is_authenticated else None
        return Response({"terms": TermsOutput(terms).data, "may_report": services.may_report(user, release)})


def _triager(request) -> bool:
    return IsTriager().has_permission(request, None)


def report_or_404(request, public_id) -> FlawReport:
    report = selectors.flaw_report_get(user=request.user, public_id=public_id, triager=_triager(request))
    if report is None:
        raise ApiError(_("Not found."), "not_found", 404)
    return report


class FlawReportListApi(generics.ListAPIView):
    """The reports the caller filed, newest first."""

    permission_classes = [IsAuthenticated]
    serializer_class = FlawReportOutput
    pagination_class = Pagination

    def get_queryset(self):
        return selectors.user_flaw_reports(user=self.request.user).prefetch_related(
            "revisions", "attachments", "entries"
        )

    @extend_schema(operation_id="flaw_reports_list")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class FlawReportDetailApi(APIView):
    """A report with its history (each change and comment) and files: its reporter's, and every triager's."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: FlawReportOutput, 401: ERROR, 404: ERROR}, operation_id="flaw_reports_retrieve")
    def get(self, request, public_id):
        report = report_or_404(request, public_id)
        output = ReviewFlawReportOutput if report.reporter_id != request.user.pk else FlawReportOutput
        return Response(output(report).data)


class CommentInput(serializers.Serializer):
    body = serializers.CharField(max_length=10_000)


class FlawReportCommentsApi(APIView):
    """Comment on a report: its reporter, or a reviewer or release manager (who need a fresh credential). The
    other side is emailed."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=CommentInput,
        responses={201: EntryOutput, 400: ERROR, 401: ERROR, 403: ERROR, 404: ERROR},
        operation_id="flaw_reports_comments_create",
    )
    def post(self, request, public_id):
        report = report_or_404(request, public_id)
        data = CommentInput(data=request.data if isinstance(request.data, dict) else {})
        data.is_valid(raise_exception=True)
        entry = services.flaw_report_comment(actor=actor_for(request), report=report, body=data.validated_data["body"])
        return Response(EntryOutput(entry).data, status=status.HTTP_201_CREATED)


class FlawReportAttachmentsApi(APIView):
    """Add a file to your report (multipart `file`) while it is not resolved; capped as every upload."""

    permission_classes = [IsAuthenticated]
    parser_classes = [parsers.MultiPartParser, JSONParser]

    @extend_schema(
        request=inline_serializer("FlawAttachmentInput", {"file": serializers.FileField()}),
        responses={201: FlawAttachmentOutput, 400: ERROR, 401: ERROR, 404: ERROR, 409: ERROR, 413: ERROR, 429: ERROR},
        operation_id="flaw_reports_attachments_create",
    )
    def post(self, request, public_id):
        report = selectors.flaw_report_get(user=request.user, public_id=public_id)
        if report is None:
            raise ApiError(_("Not found."), "not_found", 404)
        upload = request.FILES.get("file")
        if not upload:
            raise FieldErrors({"file": [_("This field is required.")]})
        attachment = services.flaw_report_attach(actor=actor_for(request), report=report, upload=upload)
        return Response(FlawAttachmentOutput(attachment).data, status=status.HTTP_201_CREATED)


class FlawReportAttachmentApi(APIView):
    """A file of a report, for its reporter and triagers; every read is audited."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: OpenApiTypes.BINARY, 401: ERROR, 404: ERROR}, operation_id="flaw_reports_attachment")
    def get(self, request, public_id, attachment_id):
        report = report_or_404(request, public_id)
        attachment = FlawReportAttachment.objects.filter(report=report, public_id=attachment_id).first()
        if attachment is None:
            raise ApiError(_("Not found."), "not_found", 404)
        return flaw_attachment_response(request, attachment)


def flaw_attachment_response(request, attachment: FlawReportAttachment) -> FileResponse:
    services.audit(
        actor=actor_for(request),
        action="flaw_report.attachment_read",
        target=attachment.report,
        data={"attachment": attachment.public_id, "filename": attachment.filename},
    )
    response = FileResponse(
        get_storage().open(attachment.storage_key),
        as_attachment=True,
        filename=attachment.filename,
        content_type=attachment.content_type,
    )
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response


class ReviewFlawReportListApi(generics.ListAPIView):
    """The triage queue, oldest first: `status` open (the default: received, triaged, accepted), all, or one
    state; `release` a repo id; `assignee` an email address, me or none; `severity`."""

    permission_classes = [IsAuthenticated, IsTriager]
    serializer_class = ReviewFlawReportOutput
    pagination_class = Pagination

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, enum=list(selectors.FLAW_QUEUE_STATUSES), default="open"),
            OpenApiParameter("release", str),
            OpenApiParameter("assignee", str, description="an email address, me, or none"),
            OpenApiParameter(
                "severity", str, enum=FlawReport.Severity.values, description="as reviewers see it (else the reporter)"
            ),
        ],
        operation_id="review_flaw_reports_list",
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        params = self.request.query_params
        status_filter = params.get("status") or "open"
        if status_filter not in selectors.FLAW_QUEUE_STATUSES:
            raise ApiError(_("Unknown status."), "invalid", 400)
        severity = params.get("severity") or None
        if severity is not None and severity not in FlawReport.Severity.values:
            raise ApiError(_("Unknown severity."), "invalid", 400)
        return selectors.flaw_queue(
            severity=severity,
            status=status_filter,
            release=(params.get("release") or "")[:200] or None,
            assignee=(params.get("assignee") or "")[:254] or None,
            user=self.request.user,
        ).prefetch_related("revisions", "attachments", "entries")


class TriageInput(serializers.Serializer):
    status = serializers.ChoiceField(FlawReport.Status.choices)
    severity = serializers.ChoiceField(FlawReport.Severity.choices, required=False, allow_blank=True)
    note = serializers.CharField(required=False, allow_blank=True, max_length=10_000, help_text="the reporter reads it")
    duplicate_of = serializers.RegexField(r"^[0-9a-f]{32}$", required=False, allow_null=True)
    assignee = serializers.EmailField(
        required=False, allow_null=True, help_text="a reviewer's or release manager's email; null unassigns"
    )


class ReviewFlawReportTriageApi(APIView):
    """Triage a report: move it (received → triaged → accepted | declined | duplicate → resolved; declined and
    duplicate reopen to triaged; 409 `invalid_transition` otherwise), set the severity as reviewers see it,
    assign it, and write the reporter a note. Not on a report you filed (403 `own_report`)."""

    permission_classes = [IsAuthenticated, IsTriager]

    @extend_schema(
        request=TriageInput,
        responses={200: ReviewFlawReportOutput, 400: ERROR, 401: ERROR, 403: ERROR, 404: ERROR, 409: ERROR},
        operation_id="review_flaw_reports_triage",
    )
    def post(self, request, public_id):
        report = report_or_404(request, public_id)
        data = TriageInput(data=request.data if isinstance(request.data, dict) else {})
        data.is_valid(raise_exception=True)
        values = data.validated_data
        duplicate_of = None
        if values.get("duplicate_of"):
            duplicate_of = FlawReport.objects.filter(public_id=values["duplicate_of"], release=report.release).first()
            if duplicate_of is None:
                raise FieldErrors({"duplicate_of": [_("No such report on this release.")]})
        assignee = None
        if values.get("assignee"):
            assignee = User.objects.filter(email__iexact=values["assignee"], is_active=True).first()
            if assignee is None or not services.can_triage(assignee):
                raise FieldErrors({"assignee": [_("Assign reviewers or release managers only.")]})
        report = services.flaw_report_triage(
            actor=actor_for(request),
            report=report,
            status=values["status"],
            severity=values.get("severity", ""),
            note=values.get("note", ""),
            duplicate_of=duplicate_of,
            assignee=assignee,
            unassign="assignee" in values and values["assignee"] is None,
        )
        return Response(ReviewFlawReportOutput(report).data)
