"""Advisories: release managers draft, publish and update them and withdraw revisions with them; holders read and
acknowledge them; anyone reads public ones. An advisory that does not exist for the caller (a draft, one under
embargo for someone not told) is a 404 like a guessed id."""

from __future__ import annotations

from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from ..http import actor_for
from ..models import Advisory, ModelRelease
from ..permissions import IsAuthenticated, IsReleaseManager
from ..services import advisories as service
from .catalog import ERROR, get_release_or_404
from .errors import ApiError
from .parsers import JSONParser


class AdvisoryUpdateOutput(serializers.Serializer):
    body = serializers.CharField()
    created_at = serializers.DateTimeField()


class AdvisoryOutput(serializers.ModelSerializer):
    id = serializers.SerializerMethodField(help_text="ADV-YYYY-NNNN once published; null for a draft")
    public_id = serializers.CharField(help_text="the advisory's URL id")
    repo_id = serializers.CharField(source="release.repo_id")
    affected_revisions = serializers.SerializerMethodField()
    fixed_revision = serializers.SerializerMethodField()
    updates = AdvisoryUpdateOutput(many=True)
    url = serializers.SerializerMethodField()
    acknowledged = serializers.SerializerMethodField(help_text="whether the caller acknowledged it")
    acknowledgements = serializers.SerializerMethodField(help_text="accounts told, and how many acknowledged")

    class Meta:
        model = Advisory
        fields = [
            "id",
            "public_id",
            "repo_id",
            "status",
            "severity",
            "title",
            "summary",
            "mitigation",
            "credit",
            "affected_revisions",
            "fixed_revision",
            "embargo_until",
            "published_at",
            "updates",
            "url",
            "acknowledged",
            "acknowledgements",
        ]

    def get_id(self, obj) -> str | None:
        return obj.identifier or None

    def get_affected_revisions(self, obj) -> list[str]:
        return sorted(r.sha for r in obj.affected_revisions.all())

    def get_fixed_revision(self, obj) -> str | None:
        return obj.fixed_revision.sha if obj.fixed_revision_id else None

    def get_url(self, obj) -> str:
        return service.page_url(obj)

    def get_acknowledged(self, obj) -> bool:
        user = self.context.get("user")
        return bool(user and obj.pk in service.acknowledged_ids(user, [obj]))

    def get_acknowledgements(self, obj) -> dict | None:
        user = self.context.get("user")
        if not (user and user.is_authenticated and service.sees_drafts(user)):
            return None
        told = obj.recipients.count()
        return {"told": told, "acknowledged": obj.recipients.filter(acknowledged_at__isnull=False).count()}


ADVISORY_INPUT = inline_serializer(
    "AdvisoryInput",
    {
        "repo_id": serializers.CharField(),
        "affected_revisions": serializers.ListField(child=serializers.CharField(), help_text="40-hex revision ids"),
        "severity": serializers.ChoiceField(Advisory.Severity.choices),
        "title": serializers.CharField(),
        "summary": serializers.CharField(),
        "mitigation": serializers.CharField(required=False),
        "fixed_revision": serializers.CharField(required=False, allow_null=True),
        "credit": serializers.CharField(required=False),
        "embargo_until": serializers.DateTimeField(required=False, allow_null=True),
        "reports": serializers.ListField(child=serializers.CharField(), required=False, help_text="flaw report ids"),
    },
)


def _body(request) -> dict:
    if not isinstance(request.data, dict):
        raise ApiError(_("Send a JSON object."), "invalid", 400)
    return dict(request.data)


def _out(request, advisory: Advisory, code: int = 200) -> Response:
    advisory = Advisory.objects.select_related("release", "fixed_revision").get(pk=advisory.pk)
    return Response(AdvisoryOutput(advisory, context={"user": request.user}).data, status=code)


def advisory_or_404(request, public_id) -> Advisory:
    found = service.advisory_get(user=request.user, public_id=public_id)
    if found is None:
        raise ApiError(_("Not found."), "not_found", 404)
    return found


class ReviewAdvisoriesApi(APIView):
    """Draft an advisory on a release (release managers)."""

    permission_classes = [IsAuthenticated, IsReleaseManager]
    parser_classes = [JSONParser]

    @extend_schema(
        request=ADVISORY_INPUT,
        responses={201: AdvisoryOutput, 400: ERROR, 401: ERROR, 403: ERROR, 404: ERROR},
        operation_id="review_advisories_create",
    )
    def post(self, request):
        data = _body(request)
        repo_id = data.pop("repo_id", None)
        if not isinstance(repo_id, str):
            raise ApiError(_("Name the release (repo_id)."), "required", 400)
        release = get_release_or_404(request, repo_id[:200])
        advisory = service.advisory_create(actor=actor_for(request), release=release, data=data)
        return _out(request, advisory, status.HTTP_201_CREATED)


class ReviewAdvisoryApi(APIView):
    """Change a draft (any of the fields it was drafted with); a published advisory takes `{"update": "..."}`,
    a dated note, instead (409 `advisory_published` for other fields)."""

    permission_classes = [IsAuthenticated, IsReleaseManager]
    parser_classes = [JSONParser]

    @extend_schema(
        request=ADVISORY_INPUT,
        responses={200: AdvisoryOutput, 400: ERROR, 401: ERROR, 403: ERROR, 404: ERROR, 409: ERROR},
        operation_id="review_advisories_update",
    )
    def patch(self, request, public_id):
        advisory = advisory_or_404(request, public_id)
        data = _body(request)
        if "update" in data and advisory.published and len(data) == 1:
            service.advisory_add_update(actor=actor_for(request), advisory=advisory, body=data["update"])
        else:
            data.pop("repo_id", None)
            advisory = service.advisory_update(actor=actor_for(request), advisory=advisory, data=data)
        return _out(request, advisory)


class ReviewAdvisoryPublishApi(APIView):
    """Publish a draft: it gets its ADV-YYYY-NNNN id, and every account with a download of an affected revision
    is emailed and must acknowledge it."""

    permission_classes = [IsAuthenticated, IsReleaseManager]

    @extend_schema(
        request=None,
        responses={200: AdvisoryOutput, 401: ERROR, 403: ERROR, 404: ERROR, 409: ERROR},
        operation_id="review_advisories_publish",
    )
    def post(self, request, public_id):
        advisory = advisory_or_404(request, public_id)
        return _out(request, service.advisory_publish(actor=actor_for(request), advisory=advisory))


class ReviewAdvisoryWithdrawApi(APIView):
    """Withdraw the advisory's affected revisions (or `revision`, one of them): refused on every channel from now
    on with `revision_withdrawn`; `main` moves to the latest revision not withdrawn. URLs already handed out work
    until their TTL."""

    permission_classes = [IsAuthenticated, IsReleaseManager]
    parser_classes = [JSONParser]

    @extend_schema(
        request=inline_serializer("WithdrawInput", {"revision": serializers.CharField(required=False)}),
        responses={
            200: inline_serializer(
                "WithdrawOutput",
                {"withdrawn": serializers.ListField(child=serializers.CharField()), "main": serializers.CharField()},
            ),
            400: ERROR,
            401: ERROR,
            403: ERROR,
            404: ERROR,
            409: ERROR,
        },
        operation_id="review_advisories_withdraw_revision",
    )
    def post(self, request, public_id):
        advisory = advisory_or_404(request, public_id)
        data = request.data if isinstance(request.data, dict) else {}
        made = service.revision_withdraw(actor=actor_for(request), advisory=advisory, revision=data.get("revision"))
        release = ModelRelease.objects.get(pk=advisory.release_id)
        return Response({"withdrawn": [w.revision.sha for w in made], "main": release.revision})


class ReleaseAdvisoriesApi(APIView):
    """A release's advisories the caller may see: public ones for anyone; under embargo, also for the accounts told
    and current holders; drafts for reviewers and release managers."""

    @extend_schema(responses={200: AdvisoryOutput(many=True), 404: ERROR}, operation_id="models_advisories")
    def get(self, request, namespace, name):
        release = get_release_or_404(request, f"{namespace}/{name}")
        rows = service.visible(request.user, release)
        return Response(AdvisoryOutput(rows, many=True, context={"user": request.user}).data)


class AdvisoryApi(APIView):
    @extend_schema(responses={200: AdvisoryOutput, 404: ERROR}, operation_id="advisories_get")
    def get(self, request, public_id):
        return _out(request, advisory_or_404(request, public_id))


class AdvisoryAcknowledgeApi(APIView):
    """Acknowledge an advisory you were told of (once: again changes nothing)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=None,
        responses={200: AdvisoryOutput, 401: ERROR, 403: ERROR, 404: ERROR, 409: ERROR},
        operation_id="advisories_acknowledge",
    )
    def post(self, request, public_id):
        advisory = advisory_or_404(request, public_id)
        service.advisory_acknowledge(actor=actor_for(request), advisory=advisory)
        return _out(request, advisory)
