"""A release's decision rules and restricted countries, for release managers: GET|PUT /api/v1/models/{repo_id}/rules.

PUT replaces the whole ordered list through access.services.rules (which checks the actor and audits); the
first rule whose conditions all hold decides a request (docs/release-managers.md)."""

from __future__ import annotations

from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import rules as rules_logic
from .. import selectors, services
from ..http import actor_for
from ..models import DecisionRule, ModelRelease
from ..permissions import IsAuthenticated
from ..services.rules import rule_data
from .catalog import ERROR
from .errors import ApiError


class Conditions(serializers.Serializer):
    providers = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="provider ids (OIDC_PROVIDERS); verified"
    )
    affiliation_kinds = serializers.ListField(
        child=serializers.ChoiceField(choices=list(rules_logic.AFFILIATION_KINDS)),
        required=False,
        help_text="a provider's scoped affiliation of one of these kinds; verified",
    )
    institutions = serializers.JSONField(
        required=False, help_text='"any" (any verified affiliation) or a list of ROR ids; verified'
    )
    email_domains = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="a verified address on one of these; verified"
    )
    orcid = serializers.BooleanField(required=False, help_text="an ORCID iD is linked; verified")
    library_card = serializers.BooleanField(
        required=False, help_text="a valid library card from a signing official covers the release; verified"
    )
    organization_types = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="as the request declares it; not verified"
    )
    countries = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="ISO 3166 codes, as declared; not verified"
    )


class RuleInput(serializers.Serializer):
    action = serializers.ChoiceField(choices=DecisionRule.Action.values)
    conditions = Conditions(help_text="all must hold; an approving rule needs a verified one")
    note = serializers.CharField(required=False, allow_blank=True, max_length=200)


class RuleOutput(RuleInput):
    id = serializers.IntegerField(help_text="the actor of its decisions is rule:<id>")
    position = serializers.IntegerField(help_text="1 is tried first")


class RulesInput(serializers.Serializer):
    rules = RuleInput(many=True, help_text="in order: the first rule that matches decides")
    restricted_countries = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="ISO 3166 codes; absent leaves them as they are",
    )


class RulesOutput(serializers.Serializer):
    release = serializers.CharField()
    restricted_countries = serializers.ListField(child=serializers.CharField())
    rules = RuleOutput(many=True)


def _release(request, repo_id: str) -> ModelRelease:
    release = ModelRelease.objects.filter(repo_id=repo_id).first()
    if release is None or not selectors.is_release_manager(request.user):
        raise ApiError(_("Not found."), "not_found", 404)
    return release


def _body(release: ModelRelease) -> dict:
    return {
        "release": release.repo_id,
        "restricted_countries": release.restricted_countries,
        "rules": [rule_data(r) for r in rules_logic.current_rules(release)],
    }


class ReleaseRulesApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: RulesOutput, 401: ERROR, 404: ERROR}, operation_id="models_rules_retrieve")
    def get(self, request, namespace, name):
        """The release's decision rules in order, and its restricted countries (release managers)."""
        return Response(RulesOutput(_body(_release(request, f"{namespace}/{name}"))).data)

    @extend_schema(
        request=RulesInput,
        responses={200: RulesOutput, 400: ERROR, 401: ERROR, 403: ERROR, 404: ERROR},
        operation_id="models_rules_update",
    )
    def put(self, request, namespace, name):
        """Replace the ordered rules (and, when given, the restricted countries). Audited.

        Error codes: `invalid_rule` (400: an unknown condition, an approving rule without a verified condition,
        a refusing rule naming a country the release does not restrict), `invalid`, `permission_denied` and
        `token_scope` (403)."""
        release = _release(request, f"{namespace}/{name}")
        data = RulesInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.release_rules_set(
            actor=actor_for(request),
            release=release,
            rules=request.data.get("rules") or [],
            restricted_countries=data.validated_data.get("restricted_countries"),
        )
        release.refresh_from_db()
        return Response(RulesOutput(_body(release)).data)
