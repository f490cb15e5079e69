"""Access requests and grants: the applicant's own (applying headless included), and the reviewers' actions."""

from django.http import FileResponse
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _
from django_countries.serializer_fields import CountryField
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, inline_serializer
from rest_framework import generics, parsers, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import questions, selectors, services
from ..durations import wait_estimate_text
from ..forms import INTENDED_USE_MIN, AccessRequestForm
from ..http import actor_for, base_url
from ..identities import describe, submitted_against, verified_facts, verified_facts_for
from ..models import AccessQuestion, AccessRequest, Grant, RequestAttachment
from ..permissions import IsAuthenticated, IsReviewer
from ..storage import get_storage
from .accessform import access_form_schema
from .catalog import ERROR, get_release_or_404
from .errors import ApiError, FieldErrors, form_errors
from .pagination import Pagination
from .parsers import JSONParser


class AttachmentOutput(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id")
    question = serializers.CharField(source="question.key")
    url = serializers.SerializerMethodField(help_text="where reviewers read it")

    class Meta:
        model = RequestAttachment
        fields = ["id", "question", "filename", "content_type", "size", "sha256", "created_at", "url"]

    def get_url(self, obj) -> str:
        return reverse("api-review-attachment", kwargs={"public_id": obj.public_id})


class RequestOutput(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id")
    repo_id = serializers.CharField(source="release.repo_id")
    country = CountryField()
    grant = serializers.SerializerMethodField()
    answers = serializers.SerializerMethodField(help_text="answers to the release's own questions, by question id")
    questions = serializers.SerializerMethodField(help_text="the question each answer answered: label and version")
    attachments = AttachmentOutput(many=True, read_only=True)

    class Meta:
        model = AccessRequest
        fields = [
            "id",
            "repo_id",
            "status",
            "full_name",
            "email",
            "affiliation",
            "organization_type",
            "country",
            "role",
            "intended_use",
            "publications",
            "license_version",
            "license_accepted_at",
            "info_request",
            "info_response",
            "decision_reason",
            "decided_at",
            "created_at",
            "updated_at",
            "grant",
            "answers",
            "questions",
            "attachments",
            "lab",
            "all_members",
            "members",
        ]

    lab = serializers.CharField(source="lab.public_id", allow_null=True, default=None)
    members = serializers.SerializerMethodField(help_text="the lab members a named-members lab request covers")

    def get_members(self, obj) -> list[str]:
        if obj.lab_id is None:
            return []
        return sorted(user.email for user in obj.covered_members.all())

    def get_grant(self, obj) -> str | None:
        grant = Grant.objects.filter(request=obj).only("public_id").first()
        return grant.public_id if grant else None

    def get_answers(self, obj) -> dict:
        return {answer.question.key: answer.value for answer in obj.answers.all()}

    def get_questions(self, obj) -> dict:
        language = translation.get_language() or ""
        return {
            answer.question.key: {"label": answer.question.label(language), "version": answer.question.version}
            for answer in obj.answers.all()
        }


class InstitutionOutput(serializers.Serializer):
    ror_id = serializers.CharField()
    name = serializers.CharField()


class VerifiedAffiliationOutput(serializers.Serializer):
    institution = InstitutionOutput()
    kind = serializers.CharField(
        help_text="faculty, staff, employee, member, student or affiliate; empty when an address verified it"
    )
    value = serializers.CharField(
        help_text="what was verified: a scoped affiliation (faculty@uni.example) or an address"
    )
    method = serializers.ChoiceField(
        choices=["affiliation", "email"],
        help_text="affiliation: asserted by the institution's (or its IdP's) sign-in in one of its confirmed domains; "
        "email: a verified address on a confirmed domain of the institution",
    )
    provider = serializers.CharField(help_text="the provider id; empty for an address the portal confirmed by link")
    provider_name = serializers.CharField()
    last_seen = serializers.DateTimeField(allow_null=True, help_text="the provider's last sign-in that asserted it")
    text = serializers.SerializerMethodField(help_text="the fact as a sentence in the request's language")

    def get_text(self, obj) -> str:
        return describe(obj)


class MatchesOutput(serializers.Serializer):
    full_name = serializers.ChoiceField(choices=["verified", "differs"], allow_null=True)
    affiliation = serializers.ChoiceField(choices=["verified", "differs"], allow_null=True)
    email = serializers.ChoiceField(choices=["verified", "differs"], allow_null=True)


class VerifiedFactsOutput(serializers.Serializer):
    affiliations = VerifiedAffiliationOutput(many=True, help_text="verified affiliations, most recently seen first")
    orcid = serializers.CharField(allow_blank=True, help_text="the ORCID iD linked to the account, or empty")
    name = serializers.CharField(allow_blank=True, help_text="the name the applicant's provider asserted, or empty")
    emails = serializers.ListField(child=serializers.CharField(), help_text="addresses a provider asserted verified")
    matches = MatchesOutput(
        help_text="whether what the applicant typed (full_name, affiliation, email) matches what is verified: "
        "verified, differs, or null when nothing verified speaks to it"
    )


def verified_output(access_request: AccessRequest, facts=None) -> dict:
    facts = facts if facts is not None else verified_facts(access_request.applicant)
    matches = submitted_against(
        facts, full_name=access_request.full_name, affiliation=access_request.affiliation, email=access_request.email
    )
    body = {
        "affiliations": facts.affiliations,
        "orcid": facts.orcid,
        "name": facts.name,
        "emails": sorted(facts.emails),
        "matches": matches,
    }
    return VerifiedFactsOutput(body).data


class ReviewRequestOutput(RequestOutput):
    """A request as reviewers see it: with what is verified about the applicant, apart from what they typed."""

    verified = serializers.SerializerMethodField(
        help_text="what the applicant's institution, ORCID or a confirmed address verified; not typed by them"
    )

    class Meta(RequestOutput.Meta):
        fields = [*RequestOutput.Meta.fields, "verified"]

    @extend_schema_field(VerifiedFactsOutput)
    def get_verified(self, obj) -> dict:
        return verified_output(obj, (self.context.get("verified") or {}).get(obj.applicant_id))


class RequestDetailOutput(RequestOutput):
    """One request with where it stands: its place in the release's queue and the release's typical wait."""

    queue_position = serializers.SerializerMethodField(
        help_text="1 for the request reviewers reach first among the release's pending ones; null unless pending"
    )
    typical_decision_seconds = serializers.SerializerMethodField(
        help_text="median time from application to decision for this release over the last 90 days; null if none"
    )
    wait_estimate = serializers.SerializerMethodField(help_text="the same, as a sentence in the request's language")

    class Meta(RequestOutput.Meta):
        fields = [*RequestOutput.Meta.fields, "queue_position", "typical_decision_seconds", "wait_estimate"]

    def _typical(self, obj):
        if obj.status != AccessRequest.Status.PENDING:
            return None
        if not hasattr(obj, "_typical_wait"):
            obj._typical_wait = selectors.typical_wait(obj.release)
        return obj._typical_wait

    def get_queue_position(self, obj) -> int | None:
        if not hasattr(obj, "_queue_position"):
            obj._queue_position = selectors.queue_position(obj)
        return obj._queue_position

    def get_typical_decision_seconds(self, obj) -> int | None:
        typical = self._typical(obj)
        return round(typical.total_seconds()) if typical is not None else None

    def get_wait_estimate(self, obj) -> str:
        return wait_estimate_text(
            repo_id=obj.release.repo_id, position=self.get_queue_position(obj), typical=self._typical(obj)
        )


class RequestInput(serializers.Serializer):
    """Documents the body; it is validated by access.forms.AccessRequestForm, the web form's validator."""

    repo_id = serializers.CharField(max_length=200)
    full_name = serializers.CharField(max_length=200)
    affiliation = serializers.CharField(max_length=300)
    organization_type = serializers.ChoiceField(choices=AccessRequest.OrganizationType.choices)
    country = CountryField()
    role = serializers.CharField(max_length=200)
    intended_use = serializers.CharField(min_length=INTENDED_USE_MIN, max_length=5000)
    publications = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
    accept_license = serializers.BooleanField()
    noncommercial_attested = serializers.BooleanField()
    answers = serializers.DictField(required=False, help_text="answers to the release's questions (see access-form)")
    draft = serializers.BooleanField(required=False, default=False, help_text="create it unsubmitted, to upload files")
    lab = serializers.CharField(required=False, help_text="apply for this lab (its owner or an admin)")
    members = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="the lab's member ids the request covers"
    )
    all_members = serializers.BooleanField(
        required=False, default=False, help_text="cover all members, up to the release's cap"
    )


def validated_application(request, release) -> tuple[AccessRequestForm, bool]:
    """The JSON body through the web form's own validator; field errors are the form's, under its field names
    (the release's questions as `answers.<id>`)."""
    body = request.data if isinstance(request.data, dict) else {}
    answers = body.get("answers", {})
    extra = {}
    if answers is None:
        answers = {}
    if not isinstance(answers, dict):
        extra["answers"] = [_("Expected an object of answers by question id.")]
        answers = {}
    form_questions = selectors.release_questions(release=release)
    by_key = {question.key: question for question in form_questions}
    for key in answers:
        question = by_key.get(key)
        if question is None:
            extra[questions.field_name(str(key))[:100]] = [_("Unknown question.")]
        elif question.kind == AccessQuestion.Kind.FILE:
            extra[questions.field_name(key)] = [
                _("This question takes a file: create the request as a draft and upload it to its attachments.")
            ]
    data = {k: v for k, v in body.items() if k not in ("answers", "draft", "repo_id", "lab", "members", "all_members")}
    data.update({questions.field_name(k): v for k, v in answers.items() if k in by_key})
    draft = body.get("draft", False)
    if not isinstance(draft, bool):
        extra["draft"] = [_("Expected true or false.")]
    form = AccessRequestForm(data=data, release=release, questions=form_questions, api=True)
    valid = form.is_valid()
    if not valid or extra:
        raise FieldErrors({**(form_errors(form) if not valid else {}), **extra})
    return form, draft


class ReasonInput(serializers.Serializer):
    reason = serializers.CharField(max_length=5000, required=False, allow_blank=True, default="")


class GrantOutput(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id")
    repo_id = serializers.CharField(source="release.repo_id")
    active = serializers.BooleanField(source="is_active")
    user = serializers.EmailField(source="user.email")
    license = serializers.CharField(source="license.slug", allow_null=True, default=None)
    license_version = serializers.CharField(source="license.version", allow_null=True, default=None)
    license_current = serializers.BooleanField(help_text="whether the holder accepted the release's current version")
    current_license_version = serializers.CharField(source="release.license.version", allow_null=True, default=None)

    class Meta:
        model = Grant
        fields = [
            "id",
            "repo_id",
            "user",
            "issued_at",
            "expires_at",
            "revoked_at",
            "revoke_reason",
            "active",
            "license",
            "license_version",
            "license_accepted_at",
            "license_current",
            "current_license_version",
        ]


class AcceptLicenseInput(serializers.Serializer):
    version = serializers.CharField(max_length=40)
    accept_license = serializers.BooleanField()
    noncommercial_attested = serializers.BooleanField()


class AccessRequestListApi(generics.ListAPIView):
    permission_classes = [IsAuthenticated]
    serializer_class = RequestOutput
    pagination_class = Pagination

    def get_queryset(self):
        return selectors.with_answers(selectors.user_requests(user=self.request.user))

    @extend_schema(operation_id="access_requests_list")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request=RequestInput,
        responses={201: RequestOutput, 400: ERROR, 401: ERROR, 404: ERROR, 409: ERROR},
        operation_id="access_requests_create",
    )
    def post(self, request):
        body = request.data if isinstance(request.data, dict) else {}
        repo_id = body.get("repo_id")
        if not isinstance(repo_id, str) or not repo_id:
            raise FieldErrors({"repo_id": [_("This field is required.")]})
        release = selectors.release_get(repo_id=repo_id[:200], user=request.user)
        if release is None:
            raise ApiError(_("No such release."), "not_found", 404)
        if not release.is_gated:
            raise ApiError(_("%(repo)s is open: no request is needed.") % {"repo": release.repo_id}, "not_gated", 400)
        lab, members, all_members = lab_application(request, body)
        form, draft = validated_application(request, release)
        try:
            application = {
                "actor": actor_for(request),
                "release": release,
                "data": form.cleaned_data,
                "license_accepted": form.cleaned_data["accept_license"],
                "answers": form.answers(),
                "draft": draft,
            }
            if lab is None:
                access_request = services.request_submit(**application)
            else:
                access_request = services.request_submit_for_lab(
                    **application, lab=lab, members=members, all_members=all_members
                )
        except services.OpenRequestExists as exc:
            raise ApiError(str(exc), exc.code, 409) from None
        return Response(RequestOutput(access_request).data, status=status.HTTP_201_CREATED)


def lab_application(request, body: dict):
    """The lab a request is for and whom it covers, checked for shape (the service checks roles and members)."""
    lab_id = body.get("lab")
    if lab_id is None:
        if body.get("members") or body.get("all_members"):
            raise FieldErrors({"lab": [_("Name the lab the members belong to.")]})
        return None, None, False
    if not isinstance(lab_id, str):
        raise FieldErrors({"lab": [_("Expected a lab id.")]})
    lab = selectors.lab_get(user=request.user, public_id=lab_id)
    if lab is None:
        raise ApiError(_("No such lab."), "not_found", 404)
    members, all_members = body.get("members"), body.get("all_members", False)
    if not isinstance(all_members, bool):
        raise FieldErrors({"all_members": [_("Expected true or false.")]})
    if members is not None and not (isinstance(members, list) and all(isinstance(m, str) for m in members)):
        raise FieldErrors({"members": [_("Expected a list of member ids.")]})
    return lab, members, all_members


class AccessFormApi(APIView):
    """The release's request form as JSON Schema: what to POST to /api/v1/access-requests."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 404: ERROR}, operation_id="models_access_form")
    def get(self, request, namespace, name):
        release = get_release_or_404(request, f"{namespace}/{name}")
        if not release.is_gated or release.license is None:
            raise ApiError(_("%(repo)s is open: no request is needed.") % {"repo": release.repo_id}, "not_gated", 404)
        return Response(access_form_schema(release, base_url=base_url(request)))


def own_request_or_404(request, public_id) -> AccessRequest:
    access_request = selectors.user_request_get(user=request.user, public_id=public_id)
    if access_request is None:
        raise ApiError(_("Not found."), "not_found", 404)
    return access_request


class AccessRequestSubmitApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=None,
        responses={200: RequestOutput, 400: ERROR, 401: ERROR, 404: ERROR, 409: ERROR, 413: ERROR},
        operation_id="access_requests_submit",
    )
    def post(self, request, public_id):
        """Send a draft to the reviewers. 413 `upload_too_large` while it holds more files than a request or a
        question takes (remove some with DELETE …/attachments/{attachment_id})."""
        access_request = services.request_submit_draft(
            actor=actor_for(request), access_request=own_request_or_404(request, public_id)
        )
        return Response(RequestOutput(access_request).data)


class AccessRequestAttachmentsApi(APIView):
    """Upload a file for one of the release's file questions (multipart: `question`, `file`), to a draft or while
    the reviewer asks for more information. A question takes UPLOAD_MAX_FILES_PER_QUESTION files and a request
    UPLOAD_MAX_FILES_PER_REQUEST (413 `upload_too_large`); each person uploads UPLOAD_MAX_BYTES_PER_USER_DAY bytes
    per UTC day (429 `upload_limit`, with Retry-After). The detail says the numbers."""

    permission_classes = [IsAuthenticated]
    # JSON too, so a body of the wrong kind is a field error (and a session's CSRF check can read any body).
    parser_classes = [parsers.MultiPartParser, JSONParser]

    @extend_schema(
        request=inline_serializer(
            "AttachmentInput", {"question": serializers.CharField(), "file": serializers.FileField()}
        ),
        responses={201: AttachmentOutput, 400: ERROR, 401: ERROR, 404: ERROR, 409: ERROR, 413: ERROR, 429: ERROR},
        operation_id="access_requests_attachments_create",
    )
    def post(self, request, public_id):
        access_request = own_request_or_404(request, public_id)
        upload, key = request.FILES.get("file"), request.data.get("question")
        missing = {
            name: [_("This field is required.")] for name, value in (("question", key), ("file", upload)) if not value
        }
        if missing:
            raise FieldErrors(missing)
        attachment = services.request_attach(
            actor=actor_for(request), access_request=access_request, question_key=str(key), upload=upload
        )
        return Response(AttachmentOutput(attachment).data, status=status.HTTP_201_CREATED)


class AccessRequestAttachmentApi(APIView):
    """Remove one of your uploads from a draft, or while the reviewer asks for more information. Nobody sees it
    afterwards; it still counts toward the day's upload bytes."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=None,
        responses={204: None, 401: ERROR, 404: ERROR, 409: ERROR},
        operation_id="access_requests_attachments_destroy",
    )
    def delete(self, request, public_id, attachment_id):
        access_request = own_request_or_404(request, public_id)
        attachment = RequestAttachment.objects.filter(request=access_request, public_id=attachment_id).first()
        if attachment is None:
            raise ApiError(_("Not found."), "not_found", 404)
        services.request_attachment_remove(
            actor=actor_for(request), access_request=access_request, attachment=attachment
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class AccessRequestDetailApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses={200: RequestDetailOutput, 401: ERROR, 404: ERROR}, operation_id="access_requests_retrieve"
    )
    def get(self, request, public_id):
        return Response(RequestDetailOutput(own_request_or_404(request, public_id)).data)


class AccessRequestWithdrawApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=None,
        responses={200: RequestOutput, 401: ERROR, 404: ERROR, 409: ERROR},
        operation_id="access_requests_withdraw",
    )
    def post(self, request, public_id):
        access_request = selectors.user_request_get(user=request.user, public_id=public_id)
        if access_request is None:
            raise ApiError(_("Not found."), "not_found", 404)
        access_request = services.request_withdraw(actor=actor_for(request), access_request=access_request)
        return Response(RequestOutput(access_request).data)


class GrantListApi(generics.ListAPIView):
    permission_classes = [IsAuthenticated]
    serializer_class = GrantOutput
    pagination_class = Pagination

    def get_queryset(self):
        return selectors.user_grants(user=self.request.user).select_related("license", "release__license")


class GrantAcceptLicenseApi(APIView):
    """Accept the release's current license version for this grant (the version the caller read)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=AcceptLicenseInput,
        responses={
            200: inline_serializer(
                "LicenseAccepted",
                {
                    "grant": GrantOutput(),
                    "review_request": serializers.CharField(allow_null=True),
                    "seat": serializers.CharField(required=False, help_text="on a lab grant: the caller's place"),
                },
            ),
            400: ERROR,
            401: ERROR,
            404: ERROR,
            409: ERROR,
        },
        operation_id="grants_accept_license",
    )
    def post(self, request, public_id):
        grant = selectors.user_grant_get(user=request.user, public_id=public_id)
        data = AcceptLicenseInput(data=request.data)
        if grant is None:
            lab_grant = selectors.member_lab_grant_get(user=request.user, public_id=public_id)
            if lab_grant is None:
                raise ApiError(_("Not found."), "not_found", 404)
            data.is_valid(raise_exception=True)
            seat = services.lab_seat_accept(actor=actor_for(request), grant=lab_grant[0], **data.validated_data)
            grant = Grant.objects.select_related("license", "release__license", "user").get(pk=lab_grant[0].pk)
            return Response({"grant": GrantOutput(grant).data, "review_request": None, "seat": seat.status})
        data.is_valid(raise_exception=True)
        try:
            accepted = services.grant_accept_license(actor=actor_for(request), grant=grant, **data.validated_data)
        except services.OpenRequestExists as exc:
            raise ApiError(str(exc), exc.code, 409) from None
        grant = selectors.user_grants(user=request.user).select_related("license", "release__license").get(pk=grant.pk)
        review = accepted.review_request
        return Response({"grant": GrantOutput(grant).data, "review_request": review.public_id if review else None})


class ReviewRequestListApi(generics.ListAPIView):
    permission_classes = [IsAuthenticated, IsReviewer]
    serializer_class = ReviewRequestOutput
    pagination_class = Pagination

    def get_serializer(self, *args, **kwargs):
        if args and isinstance(args[0], list):
            # One batch of verified facts for the page's applicants, not a few queries per request.
            kwargs.setdefault("context", self.get_serializer_context())
            kwargs["context"]["verified"] = verified_facts_for([r.applicant for r in args[0]])
        return super().get_serializer(*args, **kwargs)

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, enum=AccessRequest.Status.values, default="pending"),
            OpenApiParameter("release", str),
            OpenApiParameter("country", str),
            OpenApiParameter("organization_type", str, enum=AccessRequest.OrganizationType.values),
            OpenApiParameter("search", str),
        ],
        operation_id="review_access_requests_list",
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        params = self.request.query_params
        status_filter = params.get("status", "pending")
        if status_filter and status_filter not in AccessRequest.Status.values:
            raise ApiError(_("Unknown status."), "invalid", 400)
        return selectors.with_answers(
            selectors.review_queue(
                status=status_filter or None,
                release=params.get("release") or None,
                country=params.get("country") or None,
                organization_type=params.get("organization_type") or None,
                search=(params.get("search") or "")[:200] or None,
            )
        )


class ReviewDecisionApi(APIView):
    """One decision on a request; subclasses name the service that makes it."""

    permission_classes = [IsAuthenticated, IsReviewer]

    def decide(self, actor, access_request, reason, enqueued):
        raise NotImplementedError

    @extend_schema(
        request=ReasonInput,
        responses={200: ReviewRequestOutput, 400: ERROR, 401: ERROR, 403: ERROR, 404: ERROR, 409: ERROR},
    )
    def post(self, request, public_id):
        data = ReasonInput(data=request.data)
        data.is_valid(raise_exception=True)
        access_request = AccessRequest.objects.filter(public_id=public_id).first()
        if access_request is None:
            raise ApiError(_("Not found."), "not_found", 404)
        enqueued = services.Enqueued()
        access_request = self.decide(actor_for(request), access_request, data.validated_data["reason"], enqueued)
        body = ReviewRequestOutput(access_request).data
        if isinstance(self, ReviewApproveApi):
            body["grant_issuance"] = "delayed" if enqueued.ok is False else "queued"
        return Response(body)


class ReviewApproveApi(ReviewDecisionApi):
    def decide(self, actor, access_request, reason, enqueued):
        return services.request_approve(actor=actor, access_request=access_request, reason=reason, enqueued=enqueued)


class ReviewRejectApi(ReviewDecisionApi):
    def decide(self, actor, access_request, reason, enqueued):
        return services.request_reject(actor=actor, access_request=access_request, reason=reason)


class ReviewAskInfoApi(ReviewDecisionApi):
    def decide(self, actor, access_request, reason, enqueued):
        return services.request_ask_info(actor=actor, access_request=access_request, question=reason)


class ReviewGrantRevokeApi(APIView):
    permission_classes = [IsAuthenticated, IsReviewer]

    @extend_schema(
        request=ReasonInput,
        responses={200: GrantOutput, 400: ERROR, 401: ERROR, 403: ERROR, 404: ERROR, 409: ERROR},
        operation_id="review_grants_revoke",
    )
    def post(self, request, public_id):
        data = ReasonInput(data=request.data)
        data.is_valid(raise_exception=True)
        grant = Grant.objects.filter(public_id=public_id).first()
        if grant is None:
            raise ApiError(_("Not found."), "not_found", 404)
        grant = services.grant_revoke(actor=actor_for(request), grant=grant, reason=data.validated_data["reason"])
        return Response(GrantOutput(grant).data)


class ReviewAttachmentApi(APIView):
    """An applicant's uploaded file, for reviewers only; every read is audited."""

    permission_classes = [IsAuthenticated, IsReviewer]

    @extend_schema(responses={200: OpenApiTypes.BINARY, 401: ERROR, 403: ERROR, 404: ERROR})
    def get(self, request, public_id):
        attachment = RequestAttachment.objects.select_related("request").filter(public_id=public_id).first()
        if attachment is None:
            raise ApiError(_("Not found."), "not_found", 404)
        return attachment_response(request, attachment)


def attachment_response(request, attachment: RequestAttachment) -> FileResponse:
    """The file itself, streamed by the portal (storage never signs a URL for it), as a download."""
    services.audit(
        actor=actor_for(request),
        action="attachment.read",
        target=attachment.request,
        access_request=attachment.request,
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
