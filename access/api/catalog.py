"""Releases, their files, per-file redirects and manifests."""

from django.http import HttpResponse
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import generics, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import downloads, manifests, selectors
from ..http import actor_for, base_url, download_redirect
from ..models import DownloadEvent, ReleaseRevision
from ..storage import UnknownMirror
from .errors import ApiError
from .pagination import Pagination

ERROR = inline_serializer("Error", {"code": serializers.CharField(), "detail": serializers.CharField()})


def get_release_or_404(request, repo_id, *, with_totals=False):
    release = selectors.release_get(repo_id=repo_id, user=request.user, with_totals=with_totals)
    if release is None:
        raise ApiError(_("No release named %(repo)s.") % {"repo": repo_id}, "not_found", 404)
    return release


REVISION_PARAM = OpenApiParameter(
    "revision", OpenApiTypes.STR, description="a revision's 40-hex id, or main (the default: the latest published)"
)


def revision_or_404(request, release) -> ReleaseRevision | None:
    """The row of the revision `?revision=` names (None for main), or the API's 404."""
    try:
        return selectors.release_revision(release=release, revision=request.query_params.get("revision")).row
    except selectors.UnknownRevision:
        raise ApiError(
            _("%(repo)s has no revision %(rev)s; use main or the id of a published revision.")
            % {"repo": release.repo_id, "rev": request.query_params.get("revision", "")[:80]},
            "not_found",
            404,
        ) from None


def require_access(request, release, *, via: str, path: str = "", revision_id: int | None = None) -> downloads.Verdict:
    """The gate's decision for this call (of `revision_id`, main when None), or its refusal as the API's JSON
    error."""
    decision = downloads.authorize(
        actor=actor_for(request), release=release, via=via, path=path, revision_id=revision_id
    )
    if not decision.allowed:
        raise ApiError(decision.detail, decision.code, decision.status)
    return decision


class LicenseSerializer(serializers.Serializer):
    slug = serializers.CharField()
    version = serializers.CharField()
    title = serializers.CharField()


class RevisionSerializer(serializers.Serializer):
    id = serializers.CharField(source="sha")
    number = serializers.IntegerField()
    notes = serializers.CharField()
    published_at = serializers.DateTimeField()
    file_count = serializers.IntegerField()


class ReleaseSerializer(serializers.Serializer):
    repo_id = serializers.CharField()
    display_name = serializers.CharField()
    parameters = serializers.IntegerField(allow_null=True)
    description = serializers.CharField()
    access = serializers.CharField()
    revision = serializers.CharField()
    license = LicenseSerializer(allow_null=True)
    file_count = serializers.IntegerField()
    total_size = serializers.IntegerField(allow_null=True)


class FileSerializer(serializers.Serializer):
    path = serializers.CharField()
    size = serializers.IntegerField()
    # In a marked release, the hash of the caller's own variant; null for someone who may not download it.
    sha256 = serializers.CharField(allow_null=True)


class WeightsSerializer(serializers.Serializer):
    dtype = serializers.CharField(source="name")
    bytes = serializers.IntegerField()
    gb = serializers.FloatField(help_text="decimal gigabytes (10^9 bytes)")
    gib = serializers.FloatField(help_text="GiB (2^30 bytes)")
    accelerators_80gb = serializers.IntegerField(source="accelerators", help_text="80 GB accelerators that hold them")
    consumer_cards_24gb = serializers.IntegerField(source="consumer_cards", help_text="24 GB cards that hold them")
    stored = serializers.BooleanField(help_text="the weights are stored at this precision (the release says)")


class TransferSerializer(serializers.Serializer):
    link = serializers.CharField()
    bits_per_second = serializers.IntegerField()
    seconds = serializers.FloatField()


class EmissionsSerializer(serializers.Serializer):
    """As Hugging Face's `co2_eq_emissions` model-card metadata."""

    emissions = serializers.FloatField(source="co2_eq_emissions", help_text="grams of CO2 equivalent")
    source = serializers.CharField(source="co2_source")
    training_type = serializers.CharField(source="co2_training_type")
    geographical_location = serializers.CharField(source="co2_geographical_location")
    hardware_used = serializers.CharField(source="co2_hardware_used")


class RequirementsSerializer(serializers.Serializer):
    """What it takes to run the release: its weights' memory at each precision (from the parameter count) and
    the download of the revision shown."""

    weights_dtype = serializers.CharField(source="stored_dtype", help_text="as the release manager states; blank")
    weights = WeightsSerializer(many=True, source="precisions")
    note = serializers.SerializerMethodField()
    download_bytes = serializers.IntegerField()
    download_times = TransferSerializer(many=True, source="transfers")

    def get_note(self, obj) -> str:
        return _(
            "These hold the weights only: running the model needs more memory for activations and the KV cache, "
            "which grow with batch size and context length."
        )


class ReleaseDetailSerializer(ReleaseSerializer):
    """A release at one revision (`main` unless `?revision=` names another), with the list of its revisions."""

    revision = serializers.CharField(source="shown_revision")
    revision_number = serializers.IntegerField(allow_null=True)
    files = FileSerializer(many=True, source="shown_files")
    revisions = RevisionSerializer(many=True, source="revision_list")
    requirements = RequirementsSerializer()
    co2_eq_emissions = serializers.SerializerMethodField(help_text="null when the release gives none")
    documents = serializers.SerializerMethodField(help_text="GET …/documents for each one's versions")

    @extend_schema_field(EmissionsSerializer(allow_null=True))
    def get_co2_eq_emissions(self, obj):
        return EmissionsSerializer(obj).data if obj.co2_eq_emissions is not None else None

    def get_documents(self, obj) -> list[str]:
        return [d.public_id for d in obj.documents.all()]


class ReleaseListApi(generics.ListAPIView):
    serializer_class = ReleaseSerializer
    pagination_class = Pagination

    def get_queryset(self):
        return selectors.release_list(user=self.request.user)

    @extend_schema(operation_id="models_list")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class ReleaseDetailApi(APIView):
    @extend_schema(
        parameters=[REVISION_PARAM],
        responses={200: ReleaseDetailSerializer, 404: ERROR},
        operation_id="models_retrieve",
    )
    def get(self, request, namespace, name):
        release = get_release_or_404(request, f"{namespace}/{name}", with_totals=True)
        revision = revision_or_404(request, release)
        revisions = list(selectors.release_revisions(release=release))
        wanted = revision.pk if revision is not None else release.main_revision_id
        shown = next((r for r in revisions if r.pk == wanted), None)
        files = selectors.release_files(release=release, revision=revision)
        if release.marking:
            # Each holder's marked files have their own hashes; a marked file's original hash is shown to nobody.
            marks = downloads.access_state(user=request.user, release=release, record_codeword=True).marks
            rows = downloads.personal_rows(downloads.manifest_rows(files), marks, hide=True)
            files = [{"path": r[0], "size": r[1], "sha256": r[2]} for r in rows]
            release.file_count = shown.file_count
            release.total_size = sum(f["size"] if isinstance(f, dict) else f.size for f in files) or None
        release.revision_number = shown.number if shown else None
        size = sum(f["size"] if isinstance(f, dict) else f.size for f in files)
        release.requirements = selectors.release_footprint(release=release, download_bytes=size)
        release.shown_revision, release.shown_files, release.revision_list = (
            shown.sha if shown else release.revision,
            files,
            revisions,
        )
        return Response(ReleaseDetailSerializer(release).data)


class FileDownloadApi(APIView):
    """302 to a freshly signed URL for the file, when the caller may download the release: on the `mirror`
    asked for when it serves the release, else on the first location of the default order."""

    @extend_schema(
        parameters=[REVISION_PARAM, OpenApiParameter("mirror", OpenApiTypes.STR, required=False)],
        responses={
            302: OpenApiResponse(description="Redirect to a signed URL"),
            400: ERROR,
            401: ERROR,
            403: ERROR,
            404: ERROR,
        },
        operation_id="models_file",
    )
    def get(self, request, namespace, name, path):
        repo_id = f"{namespace}/{name}"
        if request.query_params.get("revision", "main") != "main":
            # An older revision by id: the release, its revision, then the file (the main path below is one query).
            release = get_release_or_404(request, repo_id)
            file = selectors.release_file_get(release=release, path=path, revision=revision_or_404(request, release))
            if file is not None:
                file.release = release
        else:
            file = selectors.file_get(repo_id=repo_id, path=path, user=request.user)
        if file is None:
            get_release_or_404(request, repo_id)  # says which of the two is unknown
            raise ApiError(_("No file %(path)s in %(repo)s.") % {"path": path, "repo": repo_id}, "not_found", 404)
        release = file.release
        decision = require_access(
            request, release, via=DownloadEvent.Via.API, path=file.path, revision_id=file.revision_id
        )
        try:
            location = selectors.release_location(release=release, preferred=request.query_params.get("mirror"))
        except UnknownMirror:
            raise ApiError(downloads.unknown_mirror_detail(), "unknown_mirror", 400) from None
        url = downloads.serve_file(decision, file, base_url=base_url(request), location=location)
        what = downloads.served(decision, file)  # the person's variant of a marked file
        response = downloads.with_advisories(
            download_redirect(url), downloads.advisories_for(decision, file.revision_id)
        )
        response["X-Mirror"] = location.name
        response["X-Checksum-Sha256"] = what.sha256
        response["X-File-Size"] = str(what.size)
        return response


class ManifestApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("format", OpenApiTypes.STR, enum=list(manifests.FORMATS), default="json"),
            REVISION_PARAM,
        ],
        responses={200: OpenApiTypes.OBJECT, 400: ERROR, 401: ERROR, 403: ERROR, 404: ERROR},
        operation_id="models_manifest",
    )
    def get(self, request, namespace, name):
        repo_id = f"{namespace}/{name}"
        fmt = request.query_params.get("format", "json")
        if fmt not in manifests.FORMATS:
            raise ApiError(
                _("Unknown manifest format; use one of: %(formats)s.") % {"formats": ", ".join(manifests.FORMATS)},
                "invalid_format",
                400,
            )
        release = get_release_or_404(request, repo_id)
        revision = revision_or_404(request, release)
        decision = require_access(
            request, release, via=DownloadEvent.Via.MANIFEST, revision_id=revision.pk if revision else None
        )
        entries, expires_at = downloads.serve_manifest(decision, fmt=fmt, base_url=base_url(request), revision=revision)
        sha = revision.sha if revision is not None else release.revision
        advisories = downloads.advisories_for(decision, revision.pk if revision else None, acknowledged=True)
        body = manifests.render(
            fmt, repo_id=release.repo_id, revision=sha, expires_at=expires_at, entries=entries, advisories=advisories
        )
        response = downloads.with_advisories(HttpResponse(body, content_type=manifests.FORMATS[fmt]), advisories)
        response["Cache-Control"] = "no-store"
        response["X-Revision"] = sha
        if fmt != "json":
            response["Content-Disposition"] = f'inline; filename="{manifests.FILENAMES[fmt]}"'
        return response
