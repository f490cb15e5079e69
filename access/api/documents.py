"""A release's documents (versioned, each version with its SHA-256 and the revisions it describes) and what it
takes to run the release. Reading a holders-only document goes through the download gate (`via` document);
release managers write through the same services as the pages."""

from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import downloads, selectors, services
from ..http import actor_for
from ..models import DocumentAcknowledgement, ReleaseDocument
from ..permissions import IsAuthenticated
from .catalog import ERROR, get_release_or_404
from .errors import ApiError


class DocumentVersionOutput(serializers.Serializer):
    version = serializers.IntegerField(source="number")
    sha256 = serializers.CharField(help_text="SHA-256 of the text's UTF-8 bytes")
    size = serializers.IntegerField(help_text="bytes")
    notes = serializers.CharField()
    created_at = serializers.DateTimeField()
    revisions = serializers.SerializerMethodField(help_text="the 40-hex ids of the revisions it describes")

    def get_revisions(self, obj) -> list[str]:
        return [r.sha for r in obj.revisions.all()]


class DocumentOutput(serializers.Serializer):
    id = serializers.CharField(source="public_id")
    kind = serializers.ChoiceField(choices=ReleaseDocument.Kind.choices)
    title = serializers.CharField()
    visibility = serializers.ChoiceField(choices=ReleaseDocument.Visibility.choices)
    acknowledge_required = serializers.BooleanField(
        help_text="holders acknowledge the current version before downloading (refusal code acknowledge_documents)"
    )
    current = DocumentVersionOutput()
    acknowledged = serializers.SerializerMethodField(help_text="whether the caller acknowledged the current version")
    url = serializers.SerializerMethodField()

    def get_acknowledged(self, obj) -> bool:
        return obj.current.pk in self.context.get("acknowledged", ())

    def get_url(self, obj) -> str:
        return selectors.document_url(repo_id=obj.release.repo_id, public_id=obj.public_id)


class DocumentDetailOutput(DocumentOutput):
    body = serializers.CharField(source="current.body", help_text="the current version's text (Markdown)")
    versions = DocumentVersionOutput(many=True, source="version_list")


class DocumentCreateInput(serializers.Serializer):
    kind = serializers.ChoiceField(choices=ReleaseDocument.Kind.choices)
    title = serializers.CharField(max_length=200)
    body = serializers.CharField(trim_whitespace=False)
    visibility = serializers.ChoiceField(choices=ReleaseDocument.Visibility.choices, default="public")
    acknowledge_required = serializers.BooleanField(default=False)
    notes = serializers.CharField(required=False, allow_blank=True, default="")
    revisions = serializers.ListField(child=serializers.CharField(), required=False, help_text="40-hex ids; main")


class DocumentUpdateInput(serializers.Serializer):
    title = serializers.CharField(max_length=200, required=False)
    visibility = serializers.ChoiceField(choices=ReleaseDocument.Visibility.choices, required=False)
    acknowledge_required = serializers.BooleanField(required=False)


class DocumentVersionInput(serializers.Serializer):
    body = serializers.CharField(trim_whitespace=False)
    notes = serializers.CharField(required=False, allow_blank=True, default="")
    revisions = serializers.ListField(child=serializers.CharField(), required=False, help_text="40-hex ids; main")


class AcknowledgeInput(serializers.Serializer):
    version = serializers.IntegerField(required=False, help_text="the version read; refused if no longer current")


def _revisions(release, ids):
    if ids is None:
        return None
    found = {r.sha: r for r in release.revisions.filter(sha__in=ids, published_at__isnull=False)}
    missing = [i for i in ids if i not in found]
    if missing:
        raise ApiError(
            _("%(repo)s has no revision %(rev)s.") % {"repo": release.repo_id, "rev": missing[0][:80]},
            "unknown_revision",
            400,
        )
    return [found[i] for i in ids]


def _acknowledged(user, documents) -> set[int]:
    if user is None or not user.is_authenticated:
        return set()
    versions = [d.current.pk for d in documents]
    return set(
        DocumentAcknowledgement.objects.filter(user=user, version_id__in=versions).values_list("version_id", flat=True)
    )


def _document_or_404(release, public_id):
    document = selectors.release_document(release=release, public_id=public_id)
    if document is None:
        raise ApiError(_("No such document."), "not_found", 404)
    return document


class DocumentListApi(APIView):
    """Every document of the release, holders-only ones included (named to everyone, read only by holders)."""

    @extend_schema(responses={200: DocumentOutput(many=True), 404: ERROR}, operation_id="models_documents_list")
    def get(self, request, namespace, name):
        release = get_release_or_404(request, f"{namespace}/{name}")
        documents = selectors.release_documents(release=release)
        context = {"acknowledged": _acknowledged(request.user, documents)}
        return Response(DocumentOutput(documents, many=True, context=context).data)

    @extend_schema(
        request=DocumentCreateInput,
        responses={201: DocumentDetailOutput, 400: ERROR, 403: ERROR, 404: ERROR},
        operation_id="models_documents_create",
        description="Release managers: a new document with its first version (attached to main unless revisions "
        "are named).",
    )
    def post(self, request, namespace, name):
        release = get_release_or_404(request, f"{namespace}/{name}")
        data = _valid(DocumentCreateInput, request)
        document = services.document_create(
            actor=actor_for(request),
            release=release,
            kind=data["kind"],
            title=data["title"],
            body=data["body"],
            visibility=data["visibility"],
            acknowledge_required=data["acknowledge_required"],
            notes=data["notes"],
            revisions=_revisions(release, data.get("revisions")),
        )
        document = selectors.release_document(release=release, public_id=document.public_id)
        return Response(DocumentDetailOutput(document).data, status=status.HTTP_201_CREATED)


def _valid(serializer_class, request, **kwargs) -> dict:
    serializer = serializer_class(data=request.data, **kwargs)
    if not serializer.is_valid():
        raise ApiError(_("The request has invalid fields."), "invalid", 400)
    return serializer.validated_data


class DocumentDetailApi(APIView):
    @extend_schema(
        responses={200: DocumentDetailOutput, 401: ERROR, 403: ERROR, 404: ERROR},
        operation_id="models_documents_retrieve",
        description="A document with its current text and every version. A holders-only document is refused with "
        "the download gate's code to anyone the gate would not let download (or hold back to acknowledge it).",
    )
    def get(self, request, namespace, name, public_id):
        release = get_release_or_404(request, f"{namespace}/{name}")
        document = _document_or_404(release, public_id)
        refusal = downloads.read_document(
            actor=actor_for(request), release=release, holders_only=document.holders_only, document_id=public_id
        )
        if refusal is not None:
            raise ApiError(refusal.detail, refusal.code, refusal.status)
        context = {"acknowledged": _acknowledged(request.user, [document])}
        return Response(DocumentDetailOutput(document, context=context).data)

    @extend_schema(
        request=DocumentUpdateInput,
        responses={200: DocumentOutput, 400: ERROR, 403: ERROR, 404: ERROR},
        operation_id="models_documents_update",
        description="Release managers: the title, who may read it, whether holders acknowledge it.",
    )
    def patch(self, request, namespace, name, public_id):
        release = get_release_or_404(request, f"{namespace}/{name}")
        document = _document_or_404(release, public_id)
        data = _valid(DocumentUpdateInput, request)
        services.document_update(actor=actor_for(request), document=document, **data)
        document = _document_or_404(release, public_id)
        return Response(DocumentOutput(document).data)


class DocumentVersionsApi(APIView):
    @extend_schema(
        request=DocumentVersionInput,
        responses={201: DocumentVersionOutput, 400: ERROR, 403: ERROR, 404: ERROR, 409: ERROR},
        operation_id="models_documents_versions_create",
        description="Release managers: a new version, which becomes current (holders are asked to acknowledge it "
        "again).",
    )
    def post(self, request, namespace, name, public_id):
        release = get_release_or_404(request, f"{namespace}/{name}")
        document = _document_or_404(release, public_id)
        data = _valid(DocumentVersionInput, request)
        version = services.document_version_add(
            actor=actor_for(request),
            document=document,
            body=data["body"],
            notes=data["notes"],
            revisions=_revisions(release, data.get("revisions")),
        )
        return Response(DocumentVersionOutput(version).data, status=status.HTTP_201_CREATED)


class DocumentAcknowledgeApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=AcknowledgeInput,
        responses={
            200: inline_serializer(
                "DocumentAcknowledgement",
                {"version": serializers.IntegerField(), "acknowledged_at": serializers.DateTimeField()},
            ),
            400: ERROR,
            401: ERROR,
            403: ERROR,
            404: ERROR,
            409: ERROR,
        },
        operation_id="models_documents_acknowledge",
        description="The caller acknowledges the document's current version; downloads refused with "
        "acknowledge_documents work once every document named is acknowledged.",
    )
    def post(self, request, namespace, name, public_id):
        release = get_release_or_404(request, f"{namespace}/{name}")
        document = _document_or_404(release, public_id)
        data = _valid(AcknowledgeInput, request)
        ack = services.document_acknowledge(actor=actor_for(request), document=document, version=data.get("version"))
        return Response({"version": ack.version.number, "acknowledged_at": ack.created_at})
