"""Signing officials and library cards.

Portal staff appoint officials (`/institutions/{ror_id}/officials`); an official lists the institution's
researchers and issues and revokes their cards (`/institutions/{ror_id}/researchers`, `…/library-cards`), signed
in (no token: a script's token is for downloads and reviews, never for vouching for people); a researcher reads
their own cards (`/library-cards`). Every change goes through access.services.cards."""

from __future__ import annotations

from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import officials, services
from ..http import actor_for
from ..models import Institution, LibraryCard, SigningOfficial, User
from ..permissions import IsAuthenticated
from ..services.cards import require_official, require_official_admin
from .catalog import ERROR
from .errors import ApiError


class CardOutput(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id")
    institution = serializers.CharField(source="institution.ror_id", help_text="ROR id")
    institution_name = serializers.CharField(source="institution.name")
    issued_by = serializers.SerializerMethodField(help_text="the signing official who issued it")
    releases = serializers.SerializerMethodField(help_text="the releases it covers; empty when all_releases")
    valid = serializers.BooleanField(source="is_valid")

    class Meta:
        model = LibraryCard
        fields = [
            "id",
            "institution",
            "institution_name",
            "issued_by",
            "issued_at",
            "expires_at",
            "all_releases",
            "releases",
            "valid",
            "revoked_at",
            "revoke_reason",
            "ending",
        ]

    def get_issued_by(self, obj) -> str:
        return obj.issued_by.get_full_name() or obj.issued_by.email

    def get_releases(self, obj) -> list[str]:
        return sorted(r.repo_id for r in obj.releases.all())


class AffiliationOutput(serializers.Serializer):
    kind = serializers.CharField(allow_blank=True)
    value = serializers.CharField()
    provider = serializers.CharField(source="provider_name", allow_blank=True)
    last_seen = serializers.DateTimeField(allow_null=True)


class GrantSummary(serializers.Serializer):
    release = serializers.CharField(source="release.repo_id")
    active = serializers.BooleanField(source="is_active")
    expires_at = serializers.DateTimeField()
    revoked_at = serializers.DateTimeField(allow_null=True)


class ResearcherOutput(serializers.Serializer):
    id = serializers.CharField(source="key", help_text="issue a card with this id; empty: no card possible")
    name = serializers.CharField()
    affiliations = AffiliationOutput(many=True, help_text="verified at this institution")
    cards = CardOutput(many=True, help_text="cards this institution issued them")
    grants = GrantSummary(many=True, help_text="their grants at this portal")


class CardInput(serializers.Serializer):
    researcher = serializers.CharField(help_text="a researcher's id from …/researchers")
    releases = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="repo ids; absent or empty: every gated release"
    )
    days = serializers.IntegerField(required=False, help_text="at most LIBRARY_CARD_DAYS (the default)")


class RevokeInput(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, help_text="shown to the researcher")


class OfficialOutput(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id")
    email = serializers.EmailField(source="user.email")
    institution = serializers.CharField(source="institution.ror_id")

    class Meta:
        model = SigningOfficial
        fields = ["id", "email", "institution", "created_at", "ended_at"]


class OfficialInput(serializers.Serializer):
    email = serializers.EmailField(help_text="the account to appoint")


def _not_found():
    return ApiError(_("Not found."), "not_found", 404)


def _official_institution(request, ror_id: str) -> Institution:
    """The institution, when the caller is its official through a fit credential (else 404 or 403)."""
    institution = Institution.objects.filter(ror_id=ror_id).first()
    if institution is None:
        raise _not_found()
    require_official(actor_for(request), institution, deciding=False)
    return institution


class MyCardsApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: CardOutput(many=True), 401: ERROR}, operation_id="library_cards_list")
    def get(self, request):
        """The caller's library cards, newest first, with who issued them."""
        return Response(CardOutput(officials.my_cards(request.user), many=True).data)


class ResearchersApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses={200: ResearcherOutput(many=True), 401: ERROR, 403: ERROR, 404: ERROR},
        operation_id="institutions_researchers_list",
    )
    def get(self, request, ror_id):
        """The researchers with a verified affiliation at the institution (its signing officials only, signed in;
        `token_scope` for a token)."""
        institution = _official_institution(request, ror_id)
        rows = officials.official_researchers(institution, official=request.user)
        return Response(ResearcherOutput(rows, many=True).data)


class InstitutionCardsApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses={200: CardOutput(many=True), 401: ERROR, 403: ERROR, 404: ERROR},
        operation_id="institutions_library_cards_list",
    )
    def get(self, request, ror_id):
        """The cards the institution issued (its signing officials only)."""
        institution = _official_institution(request, ror_id)
        cards = LibraryCard.objects.filter(institution=institution).select_related("institution", "issued_by")
        return Response(CardOutput(cards.prefetch_related("releases"), many=True).data)

    @extend_schema(
        request=CardInput,
        responses={201: CardOutput, 400: ERROR, 401: ERROR, 403: ERROR, 404: ERROR},
        operation_id="institutions_library_cards_create",
    )
    def post(self, request, ror_id):
        """Issue a researcher a library card. Needs a password or a sign-in with the institution within
        REAUTHENTICATION_TIMEOUT (`reauthentication_required`); `own_card` for oneself; `not_found` for anyone
        without a verified affiliation here."""
        institution = _official_institution(request, ror_id)
        data = CardInput(data=request.data)
        data.is_valid(raise_exception=True)
        researcher = officials.official_researcher(
            institution, official=request.user, key=data.validated_data["researcher"]
        )
        if researcher is None:
            raise _not_found()
        card = services.card_issue(
            actor=actor_for(request),
            institution=institution,
            researcher=researcher.user,
            releases=data.validated_data.get("releases") or None,
            days=data.validated_data.get("days"),
        )
        return Response(CardOutput(card).data, status=status.HTTP_201_CREATED)


class CardRevokeApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=RevokeInput,
        responses={200: CardOutput, 401: ERROR, 403: ERROR, 404: ERROR, 409: ERROR},
        operation_id="institutions_library_cards_revoke",
    )
    def post(self, request, ror_id, public_id):
        """Revoke a card the institution issued: access that rested on it stops at once (`card_revoked`)."""
        institution = _official_institution(request, ror_id)
        card = officials.institution_card(institution, public_id)
        if card is None:
            raise _not_found()
        data = RevokeInput(data=request.data)
        data.is_valid(raise_exception=True)
        card = services.card_revoke(actor=actor_for(request), card=card, reason=data.validated_data.get("reason", ""))
        return Response(CardOutput(card).data)


class OfficialsApi(APIView):
    permission_classes = [IsAuthenticated]

    def _institution(self, request, ror_id):
        require_official_admin(actor_for(request))
        institution = Institution.objects.filter(ror_id=ror_id).first()
        if institution is None:
            raise _not_found()
        return institution

    @extend_schema(
        responses={200: OfficialOutput(many=True), 401: ERROR, 403: ERROR, 404: ERROR},
        operation_id="institutions_officials_list",
    )
    def get(self, request, ror_id):
        """The institution's signing officials, current and past (portal staff)."""
        institution = self._institution(request, ror_id)
        rows = SigningOfficial.objects.filter(institution=institution).select_related("user", "institution")
        return Response(OfficialOutput(rows, many=True).data)

    @extend_schema(
        request=OfficialInput,
        responses={201: OfficialOutput, 400: ERROR, 401: ERROR, 403: ERROR, 404: ERROR, 409: ERROR},
        operation_id="institutions_officials_create",
    )
    def post(self, request, ror_id):
        """Appoint an account a signing official of the institution (portal staff, recent password)."""
        institution = self._institution(request, ror_id)
        data = OfficialInput(data=request.data)
        data.is_valid(raise_exception=True)
        user = User.objects.filter(email__iexact=data.validated_data["email"]).first()
        if user is None:
            raise ApiError(_("No account has this email address."), "unknown_account", 400)
        official = services.official_appoint(actor=actor_for(request), institution=institution, user=user)
        return Response(OfficialOutput(official).data, status=status.HTTP_201_CREATED)


class OfficialEndApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=None,
        responses={200: OfficialOutput, 401: ERROR, 403: ERROR, 404: ERROR, 409: ERROR},
        operation_id="institutions_officials_end",
    )
    def post(self, request, ror_id, public_id):
        """End an appointment (portal staff)."""
        require_official_admin(actor_for(request))
        official = SigningOfficial.objects.filter(institution__ror_id=ror_id, public_id=public_id).first()
        if official is None:
            raise _not_found()
        return Response(OfficialOutput(services.official_end(actor=actor_for(request), official=official)).data)
