"""Access requests and grants: the applicant's own, and the reviewers' actions."""

from django.utils.translation import gettext as _
from django_countries.serializer_fields import CountryField
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import selectors, services
from ..forms import INTENDED_USE_MIN
from ..http import actor_for
from ..models import AccessRequest, Grant
from ..permissions import IsAuthenticated, IsReviewer
from ..text import clean_text
from .catalog import ERROR
from .errors import ApiError
from .pagination import Pagination


class RequestOutput(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id")
    repo_id = serializers.CharField(source="release.repo_id")
    country = CountryField()
    grant = serializers.SerializerMethodField()

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
        ]

    def get_grant(self, obj) -> str | None:
        grant = Grant.objects.filter(request=obj).only("public_id").first()
        return grant.public_id if grant else None


class RequestInput(serializers.Serializer):
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

    def validate(self, data):
        for name in ("full_name", "affiliation", "role"):
            data[name] = self._clean(name, data[name], multiline=False, symbols=True)
        for name in ("intended_use", "publications"):
            data[name] = self._clean(name, data[name], multiline=True)
        if not data["accept_license"]:
            raise serializers.ValidationError({"accept_license": _("You must accept the license to apply.")})
        if not data["noncommercial_attested"]:
            raise serializers.ValidationError(
                {"noncommercial_attested": _("Access is only for non-commercial research.")}
            )
        return data

    @staticmethod
    def _clean(name, value, multiline, symbols=False):
        from django.core.exceptions import ValidationError

        try:
            return clean_text(value, multiline=multiline, name=symbols)
        except ValidationError as exc:
            raise serializers.ValidationError({name: exc.messages}) from None


class ReasonInput(serializers.Serializer):
    reason = serializers.CharField(max_length=5000, required=False, allow_blank=True, default="")


class GrantOutput(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id")
    repo_id = serializers.CharField(source="release.repo_id")
    active = serializers.BooleanField(source="is_active")
    user = serializers.EmailField(source="user.email")

    class Meta:
        model = Grant
        fields = ["id", "repo_id", "user", "issued_at", "expires_at", "revoked_at", "revoke_reason", "active"]


class AccessRequestListApi(generics.ListAPIView):
    permission_classes = [IsAuthenticated]
    serializer_class = RequestOutput
    pagination_class = Pagination

    def get_queryset(self):
        return selectors.user_requests(user=self.request.user)

    @extend_schema(operation_id="access_requests_list")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request=RequestInput,
        responses={201: RequestOutput, 400: ERROR, 401: ERROR, 404: ERROR, 409: ERROR},
        operation_id="access_requests_create",
    )
    def post(self, request):
        data = RequestInput(data=request.data)
        data.is_valid(raise_exception=True)
        release = selectors.release_get(repo_id=data.validated_data["repo_id"], user=request.user)
        if release is None:
            raise ApiError(_("No such release."), "not_found", 404)
        try:
            access_request = services.request_submit(
                actor=actor_for(request),
                release=release,
                data=data.validated_data,
                license_accepted=data.validated_data["accept_license"],
            )
        except services.OpenRequestExists as exc:
            raise ApiError(str(exc), exc.code, 409) from None
        return Response(RequestOutput(access_request).data, status=status.HTTP_201_CREATED)


class AccessRequestDetailApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: RequestOutput, 401: ERROR, 404: ERROR}, operation_id="access_requests_retrieve")
    def get(self, request, public_id):
        access_request = selectors.user_request_get(user=request.user, public_id=public_id)
        if access_request is None:
            raise ApiError(_("Not found."), "not_found", 404)
        return Response(RequestOutput(access_request).data)


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
        return selectors.user_grants(user=self.request.user)


class ReviewRequestListApi(generics.ListAPIView):
    permission_classes = [IsAuthenticated, IsReviewer]
    serializer_class = RequestOutput
    pagination_class = Pagination

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
        return selectors.review_queue(
            status=status_filter or None,
            release=params.get("release") or None,
            country=params.get("country") or None,
            organization_type=params.get("organization_type") or None,
            search=(params.get("search") or "")[:200] or None,
        )


class ReviewDecisionApi(APIView):
    """One decision on a request; subclasses name the service that makes it."""

    permission_classes = [IsAuthenticated, IsReviewer]

    def decide(self, actor, access_request, reason, enqueued):
        raise NotImplementedError

    @extend_schema(
        request=ReasonInput, responses={200: RequestOutput, 400: ERROR, 401: ERROR, 403: ERROR, 404: ERROR, 409: ERROR}
    )
    def post(self, request, public_id):
        data = ReasonInput(data=request.data)
        data.is_valid(raise_exception=True)
        access_request = AccessRequest.objects.filter(public_id=public_id).first()
        if access_request is None:
            raise ApiError(_("Not found."), "not_found", 404)
        enqueued = services.Enqueued()
        access_request = self.decide(actor_for(request), access_request, data.validated_data["reason"], enqueued)
        body = RequestOutput(access_request).data
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
