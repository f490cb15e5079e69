"""Stewardship of grants: progress reports, renewals that carry them, closing one's access, close-outs, the public
register of uses and the transparency numbers; the reviewers' lists."""

from datetime import date

from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import selectors, services, transparency
from ..http import actor_for
from ..models import CloseOut, Grant, ProgressReport
from ..permissions import IsAuthenticated, IsReviewer
from ..services import stewardship
from .catalog import ERROR, get_release_or_404
from .errors import ApiError, FieldErrors
from .requests import GrantOutput, RequestOutput


class ReportInput(serializers.Serializer):
    summary = serializers.CharField(max_length=5000, help_text="what was done with the weights")
    publications = serializers.ListField(
        child=serializers.CharField(max_length=300), required=False, default=list, help_text="DOIs, e.g. 10.1234/abc"
    )
    derived_models = serializers.CharField(max_length=5000, required=False, allow_blank=True, default="")
    incidents = serializers.CharField(max_length=5000, required=False, allow_blank=True, default="")


class ReportOutput(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id")
    grant = serializers.CharField(source="grant.public_id")
    author = serializers.EmailField(source="author.email")
    renewal = serializers.CharField(source="renewal.public_id", allow_null=True, default=None)
    publication_links = serializers.SerializerMethodField()

    class Meta:
        model = ProgressReport
        fields = [
            "id",
            "grant",
            "author",
            "renewal",
            "summary",
            "publications",
            "publication_links",
            "derived_models",
            "incidents",
            "created_at",
        ]

    def get_publication_links(self, obj) -> list[str]:
        return [f"https://doi.org/{doi}" for doi in obj.publications]


class RenewInput(serializers.Serializer):
    progress_report = ReportInput(required=False, help_text="required when the release asks for progress reports")


class CloseOutInput(serializers.Serializer):
    deleted_on = serializers.CharField(help_text="YYYY-MM-DD, the day the copies were deleted")
    locations = serializers.IntegerField(help_text="how many places held copies")
    statement = serializers.CharField(max_length=2000)
    scope = serializers.ChoiceField(
        choices=CloseOut.Scope.choices, required=False, help_text="lab: the owner certifying for the lab's copies"
    )


class CloseOutOutput(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id")
    grant = serializers.CharField(source="grant.public_id")
    repo_id = serializers.CharField(source="grant.release.repo_id")
    lab = serializers.CharField(source="grant.lab.public_id", allow_null=True, default=None)
    user = serializers.EmailField(source="user.email")
    outstanding = serializers.BooleanField(source="is_outstanding")

    class Meta:
        model = CloseOut
        fields = [
            "id",
            "grant",
            "repo_id",
            "lab",
            "user",
            "scope",
            "reason",
            "asked_at",
            "outstanding",
            "completed_at",
            "deleted_on",
            "locations",
            "statement",
        ]


def _grant_or_404(request, public_id) -> Grant:
    grant = stewardship.grant_for(user=request.user, public_id=public_id)
    if grant is None:
        raise ApiError(_("Not found."), "not_found", 404)
    return grant


def _report(request) -> dict:
    body = request.data if isinstance(request.data, dict) else None
    if body is None:
        raise FieldErrors({"summary": [_("Expected a JSON object.")]})
    data = ReportInput(data=body)
    data.is_valid(raise_exception=True)
    return data.validated_data


class GrantProgressReportsApi(APIView):
    """A grant's progress reports: its holder's (for a lab grant, the lab's owner's and admins')."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses={200: ReportOutput(many=True), 401: ERROR, 403: ERROR, 404: ERROR}, operation_id="grants_reports"
    )
    def get(self, request, public_id):
        grant = _grant_or_404(request, public_id)
        stewardship.require_steward(actor_for(request), grant)
        return Response(ReportOutput(grant.progress_reports.select_related("author", "renewal"), many=True).data)

    @extend_schema(
        request=ReportInput,
        responses={201: ReportOutput, 400: ERROR, 401: ERROR, 403: ERROR, 404: ERROR, 409: ERROR},
        operation_id="grants_report_create",
    )
    def post(self, request, public_id):
        grant = _grant_or_404(request, public_id)
        filed = services.progress_report_file(actor=actor_for(request), grant=grant, report=_report(request))
        return Response(ReportOutput(filed).data, status=status.HTTP_201_CREATED)


class GrantRenewApi(APIView):
    """Ask for a renewal (in the last days of a grant, or after it expired), with a progress report."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=RenewInput,
        responses={201: RequestOutput, 400: ERROR, 401: ERROR, 403: ERROR, 404: ERROR, 409: ERROR},
        operation_id="grants_renew",
    )
    def post(self, request, public_id):
        grant = _grant_or_404(request, public_id)
        body = request.data if isinstance(request.data, dict) else {}
        data = RenewInput(data=body)
        data.is_valid(raise_exception=True)
        try:
            renewal = services.request_renew(
                actor=actor_for(request), grant=grant, report=data.validated_data.get("progress_report")
            )
        except services.OpenRequestExists as exc:
            raise ApiError(str(exc), exc.code, 409) from None
        return Response(RequestOutput(renewal).data, status=status.HTTP_201_CREATED)


class GrantCloseApi(APIView):
    """Close my access: the grant ends now and the close-out is asked."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=None,
        responses={200: GrantOutput, 401: ERROR, 403: ERROR, 404: ERROR, 409: ERROR},
        operation_id="grants_close",
    )
    def post(self, request, public_id):
        grant = services.grant_close(actor=actor_for(request), grant=_grant_or_404(request, public_id))
        return Response(GrantOutput(Grant.objects.select_related("release__license", "license").get(pk=grant.pk)).data)


class GrantCloseOutApi(APIView):
    """Certify that copies were deleted after access ended."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=CloseOutInput,
        responses={200: CloseOutOutput, 400: ERROR, 401: ERROR, 404: ERROR, 409: ERROR},
        operation_id="grants_closeout",
    )
    def post(self, request, public_id):
        grant = _grant_or_404(request, public_id)
        data = CloseOutInput(data=request.data if isinstance(request.data, dict) else {})
        data.is_valid(raise_exception=True)
        values = data.validated_data
        try:
            deleted_on = date.fromisoformat(values["deleted_on"])
        except ValueError:
            raise FieldErrors({"deleted_on": [_("Give the date as YYYY-MM-DD.")]}) from None
        closeout = services.closeout_file(
            actor=actor_for(request),
            grant=grant,
            deleted_on=deleted_on,
            locations=values["locations"],
            statement=values["statement"],
            scope=values.get("scope"),
        )
        return Response(CloseOutOutput(closeout).data)


class GrantRegisterWithdrawApi(APIView):
    """Withdraw consent to the release's public register of uses."""

    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={204: None, 401: ERROR, 403: ERROR, 404: ERROR, 409: ERROR})
    def post(self, request, public_id):
        services.register_withdraw(actor=actor_for(request), grant=_grant_or_404(request, public_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


INSTITUTION = inline_serializer(
    "RegisterInstitution",
    {"name": serializers.CharField(), "ror": serializers.URLField()},
    allow_null=True,
    help_text="only when verified",
)
REGISTER = inline_serializer(
    "Register",
    {
        "release": serializers.CharField(),
        "entries": inline_serializer(
            "RegisterEntry",
            {
                "id": serializers.CharField(),
                "kind": serializers.ChoiceField(choices=["person", "lab"]),
                "name": serializers.CharField(),
                "members": serializers.ListField(child=serializers.CharField(), help_text="members who consented"),
                "institution": INSTITUTION,
                "statement": serializers.CharField(),
                "granted_at": serializers.DateTimeField(),
                "expires_at": serializers.DateTimeField(),
                "active": serializers.BooleanField(),
            },
            many=True,
        ),
    },
)


def _public_release(request, namespace, name, flag: str):
    release = get_release_or_404(request, f"{namespace}/{name}")
    if not release.is_gated or not getattr(release, flag):
        raise ApiError(_("This release publishes no such page."), "not_found", 404)
    return release


class ReleaseRegisterApi(APIView):
    """The public register of approved uses (releases that keep one): only applicants who consented."""

    permission_classes = [AllowAny]

    @extend_schema(responses={200: REGISTER, 404: ERROR}, operation_id="models_register")
    def get(self, request, namespace, name):
        release = _public_release(request, namespace, name, "public_register")
        return Response({"release": release.repo_id, "entries": transparency.register_entries(release)})


DECISION_TIME = inline_serializer(
    "TransparencyDecisionTime",
    {
        "decided": serializers.IntegerField(),
        "p50_seconds": serializers.IntegerField(allow_null=True),
        "p90_seconds": serializers.IntegerField(allow_null=True),
    },
)


class ReleaseTransparencyApi(APIView):
    """The transparency numbers (releases that publish them): the last year's times to decision (by a person
    and by decision rules apart), approval rate and close-outs completed."""

    permission_classes = [AllowAny]

    @extend_schema(
        responses={
            200: inline_serializer(
                "Transparency",
                {
                    "release": serializers.CharField(),
                    "days": serializers.IntegerField(),
                    "decided": serializers.IntegerField(),
                    "approved": serializers.IntegerField(),
                    "approval_rate": serializers.FloatField(allow_null=True),
                    "time_to_decision": inline_serializer(
                        "TransparencyTimes", {"human": DECISION_TIME, "automatic": DECISION_TIME}
                    ),
                    "closeouts": inline_serializer(
                        "TransparencyCloseOuts",
                        {"asked": serializers.IntegerField(), "completed": serializers.IntegerField()},
                    ),
                    "advisories_published": serializers.IntegerField(),
                },
            ),
            404: ERROR,
        },
        operation_id="models_transparency",
    )
    def get(self, request, namespace, name):
        release = _public_release(request, namespace, name, "transparency_public")
        return Response(transparency.transparency_numbers(release))


class ReviewCloseOutsApi(APIView):
    """Close-outs for reviewers: outstanding ones by default (?status=completed|all)."""

    permission_classes = [IsAuthenticated, IsReviewer]

    @extend_schema(
        parameters=[
            OpenApiParameter("status", OpenApiTypes.STR, enum=["outstanding", "completed", "all"]),
            OpenApiParameter("release", OpenApiTypes.STR, description="a repo id"),
        ],
        responses={200: CloseOutOutput(many=True), 400: ERROR, 401: ERROR, 403: ERROR},
        operation_id="review_closeouts",
    )
    def get(self, request):
        wanted = request.query_params.get("status", "outstanding")
        if wanted not in ("outstanding", "completed", "all"):
            raise ApiError(_("status is outstanding, completed or all."), "invalid_status", 400)
        qs = CloseOut.objects.select_related("grant__release", "grant__lab", "user").order_by("asked_at", "id")
        if wanted != "all":
            qs = qs.filter(completed_at__isnull=wanted == "outstanding")
        repo = request.query_params.get("release")
        if repo:
            qs = qs.filter(grant__release__repo_id=repo[:200])
        return Response(CloseOutOutput(qs[:500], many=True).data)


class ReviewGrantReportsApi(APIView):
    """A grant's history of progress reports, for reviewers (with its renewals' and earlier grants')."""

    permission_classes = [IsAuthenticated, IsReviewer]

    @extend_schema(
        responses={200: ReportOutput(many=True), 401: ERROR, 403: ERROR, 404: ERROR},
        operation_id="review_grant_reports",
    )
    def get(self, request, public_id):
        grant = Grant.objects.filter(public_id=public_id).first()
        if grant is None:
            raise ApiError(_("Not found."), "not_found", 404)
        return Response(ReportOutput(selectors.grant_report_history(grant=grant), many=True).data)
