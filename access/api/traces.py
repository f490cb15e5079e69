"""Tracing a leaked copy of a marked release: POST /api/v1/review/traces (release managers; docs/marking.md).

The copy is given by its files' names and SHA-256 hashes, or as a manifest (a SHA256SUMS file or the portal's JSON
manifest). Hashes alone read only files whose bytes are a variant's; a re-saved copy is traced from its files (the
reviewer page's uploads or `manage.py trace_copy <dir>`)."""

from __future__ import annotations

from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import services
from ..http import actor_for
from ..permissions import IsAuthenticated
from ..services.traces import MAX_FILES, MAX_NAME
from .catalog import ERROR
from .errors import ApiError

MAX_MANIFEST = 4 * 1024 * 1024


class TracedFile(serializers.Serializer):
    name = serializers.CharField(max_length=MAX_NAME)
    sha256 = serializers.RegexField(r"^[0-9a-fA-F]{64}$", help_text="hex SHA-256 of the file's bytes")


class TraceInput(serializers.Serializer):
    files = TracedFile(many=True, required=False, help_text=f"at most {MAX_FILES}")
    manifest = serializers.CharField(
        required=False, max_length=MAX_MANIFEST, trim_whitespace=False, help_text="SHA256SUMS text or a JSON manifest"
    )


class FileOutput(serializers.Serializer):
    name = serializers.CharField()
    path = serializers.CharField(help_text="the release's file it is; empty when none")
    how = serializers.ChoiceField(choices=["hash", "values"])
    state = serializers.ChoiceField(choices=["marked", "unmarked", "original", "unreadable", "foreign"])


class Candidate(serializers.Serializer):
    user = serializers.CharField(help_text="the person's email address")
    agree = serializers.IntegerField(help_text="marked files read whose variant is the person's")
    observed = serializers.IntegerField(help_text="marked files read")
    explains = serializers.IntegerField(help_text="files agreeing among those the people named before do not explain")
    of = serializers.IntegerField(help_text="files the people named before do not explain")
    chance = serializers.FloatField(help_text="chance that one innocent holder agrees as much (exact tail)")
    any_innocent = serializers.FloatField(
        help_text="bound on the chance that any innocent holder does (holders × chance)"
    )
    grants = serializers.ListField(child=serializers.DictField())
    seats = serializers.ListField(child=serializers.DictField())


class TraceOutput(serializers.Serializer):
    status = serializers.ChoiceField(choices=["match", "no_confident_match", "unmarked", "foreign"])
    release = serializers.CharField(allow_null=True)
    revision = serializers.CharField(allow_null=True)
    marked_files = serializers.IntegerField()
    observed = serializers.IntegerField()
    holders = serializers.IntegerField()
    confidence = serializers.FloatField(help_text="a person is named only below this chance")
    files = FileOutput(many=True)
    candidates = Candidate(many=True)
    closest = serializers.DictField(allow_null=True, help_text="when no one is named: the closest holder's counts")
    fingerprint = serializers.CharField(help_text="the result's keyed fingerprint, as the audit log records it")


class TraceApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=TraceInput,
        responses={200: TraceOutput, 400: ERROR, 401: ERROR, 403: ERROR},
        operation_id="review_traces_create",
    )
    def post(self, request):
        """Trace a copy of a marked release to the holders whose codewords explain it (release managers; audited).

        Error codes: `trace_empty`, `trace_too_many`, `trace_bad_hash`, `trace_bad_name`, `trace_bad_manifest`,
        `invalid` (400); `permission_denied`, `token_scope` (403)."""
        if not isinstance(request.data, dict):
            raise ApiError(_("Send a JSON object with files or a manifest."), "invalid", 400)
        files = request.data.get("files")
        if isinstance(files, list) and len(files) > MAX_FILES:
            raise ApiError(_("A trace reads at most %(n)d files.") % {"n": MAX_FILES}, "trace_too_many", 400)
        data = TraceInput(data=request.data)
        data.is_valid(raise_exception=True)
        hashes = [(f["name"], f["sha256"]) for f in data.validated_data.get("files", [])]
        if data.validated_data.get("manifest"):
            hashes += services.manifest_entries(data.validated_data["manifest"])
        result = services.copy_trace(actor=actor_for(request), hashes=hashes, source="api")
        return Response(TraceOutput({**result.as_dict(), "fingerprint": result.fingerprint()}).data)
