"""The numbers behind the reviewer dashboard, for reviewers' scripts: GET /api/v1/review/stats."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import stats
from ..permissions import IsAuthenticated, IsReviewer
from .catalog import ERROR


class CountsByStatus(serializers.Serializer):
    pending = serializers.IntegerField()
    needs_info = serializers.IntegerField()
    approved = serializers.IntegerField()
    rejected = serializers.IntegerField()
    withdrawn = serializers.IntegerField()


class WeekOutcomes(serializers.Serializer):
    week = serializers.DateField(help_text="the Monday the week starts on")
    approved = serializers.IntegerField()
    rejected = serializers.IntegerField()
    withdrawn = serializers.IntegerField()
    pending = serializers.IntegerField(help_text="still open: pending or waiting on the applicant")


class DecisionTime(serializers.Serializer):
    decided = serializers.IntegerField()
    p50_seconds = serializers.IntegerField(allow_null=True)
    p90_seconds = serializers.IntegerField(allow_null=True)


class DecisionTimeMonth(DecisionTime):
    release = serializers.CharField()
    month = serializers.CharField(help_text="YYYY-MM of the decisions")
    deadline_days = serializers.IntegerField(help_text="the release's review deadline")


class DeciderDecisions(DecisionTime):
    decider = serializers.ChoiceField(
        choices=["automatic", "human"], help_text="a release's decision rule, or a reviewer"
    )
    approved = serializers.IntegerField()
    rejected = serializers.IntegerField()


class PendingAge(serializers.Serializer):
    min_days = serializers.IntegerField()
    max_days = serializers.IntegerField(allow_null=True, help_text="null for the last, open-ended bucket")
    within_deadline = serializers.IntegerField()
    overdue = serializers.IntegerField()


class DownloadDay(serializers.Serializer):
    day = serializers.DateField()
    researchers = serializers.IntegerField(help_text="distinct signed-in users who downloaded")
    files = serializers.IntegerField(help_text="file URLs signed (redirects, relay and Hugging Face fetches)")
    bytes = serializers.IntegerField(help_text="the sizes of those files, summed")
    manifests = serializers.IntegerField()
    anonymous = serializers.IntegerField(help_text="anonymous downloads of open releases")


class ActiveGrantsDay(serializers.Serializer):
    day = serializers.DateField()
    active = serializers.IntegerField(help_text="grants active at the end of the day")


class DecisionsBy(serializers.Serializer):
    key = serializers.CharField(help_text="organization type, or ISO 3166 country code")
    approved = serializers.IntegerField()
    rejected = serializers.IntegerField()
    total = serializers.IntegerField()


class FlawReportCounts(serializers.Serializer):
    by_status = serializers.DictField(child=serializers.IntegerField(), help_text="flaw reports by their state now")
    overdue = serializers.IntegerField(help_text="reports waiting for triage past their release's triage deadline")


class ReviewStats(serializers.Serializer):
    release = serializers.CharField(allow_null=True)
    # "from" is a keyword: declared below.
    to = serializers.DateField()
    deadline_days = serializers.IntegerField(allow_null=True, help_text="the release's review deadline, if one")
    counts_by_status = CountsByStatus(help_text="requests submitted in the range, by their status now")
    requests_per_week = WeekOutcomes(many=True)
    decision_time = DecisionTime(help_text="time from application to decision, nearest-rank percentiles")
    decision_time_per_month = DecisionTimeMonth(many=True)
    decisions_by_decider = DeciderDecisions(many=True, help_text="automatic (decision rules) and human decisions")
    pending_ages = PendingAge(many=True, help_text="requests waiting for a reviewer now, by age in days")
    overdue_count = serializers.IntegerField(help_text="pending requests past their release's review deadline")
    downloads_per_day = DownloadDay(many=True)
    active_grants = ActiveGrantsDay(many=True)
    decisions_by_organization_type = DecisionsBy(many=True)
    decisions_by_country = DecisionsBy(many=True, help_text="the 15 countries with the most decisions")
    flaw_reports = FlawReportCounts()

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = serializers.DateField()
        return fields


class ReviewStatsApi(APIView):
    permission_classes = [IsAuthenticated, IsReviewer]

    @extend_schema(
        parameters=[
            OpenApiParameter("release", str, description="a release's repo id; every gated release when absent"),
            OpenApiParameter("from", OpenApiTypes.DATE, description="first day, YYYY-MM-DD (1900-01-01 or later)"),
            OpenApiParameter(
                "to", OpenApiTypes.DATE, description="last day, YYYY-MM-DD (today when absent; 2999-12-31 at most)"
            ),
            OpenApiParameter(
                "period", int, enum=list(stats.PERIODS), description="the last 30, 90 or 365 days (without from/to)"
            ),
        ],
        responses={200: ReviewStats, 400: ERROR, 401: ERROR, 403: ERROR},
        operation_id="review_stats",
    )
    def get(self, request):
        """Counts by status, decision-time percentiles, pending ages, overdue count and downloads per day.

        Error codes (400): `invalid_date`, `date_out_of_range` (days are from 1900-01-01 to 2999-12-31),
        `invalid_range`, `range_too_long`, `invalid_period`, `unknown_release`."""
        filters = stats.parse_filters(request.query_params)
        return Response(ReviewStats(stats.review_stats(filters)).data)
