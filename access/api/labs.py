"""Labs: a group that applies once for its members (owner and admins invite, apply and remove; members join
and leave). Lab ids, member ids and invitation ids are random public ids."""

from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import selectors, services
from ..http import actor_for
from ..identities import verified_affiliations
from ..models import Lab, LabMembership, LabSeat
from ..permissions import IsAuthenticated, IsReviewer
from .catalog import ERROR
from .errors import ApiError
from .requests import InstitutionOutput, ReasonInput


class MemberOutput(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id")
    email = serializers.EmailField(source="user.email")
    name = serializers.SerializerMethodField()
    on_declared_domain = serializers.SerializerMethodField(
        help_text="whether the member's email address is on a domain the lab's owner declared (not checked by the "
        "portal: a declared domain is not a verified affiliation)"
    )
    verified_at_institution = serializers.SerializerMethodField(
        help_text="whether the member holds a verified affiliation at the lab's institution (its sign-in confirmed "
        "it, or a confirmed address on a domain the portal's staff confirmed)"
    )

    class Meta:
        model = LabMembership
        fields = ["id", "email", "name", "role", "joined_at", "on_declared_domain", "verified_at_institution"]

    def get_verified_at_institution(self, obj) -> bool:
        institution = obj.lab.institution
        if institution is None or not institution.is_confirmed:
            return False
        return bool(verified_affiliations(obj.user, institution))

    def get_name(self, obj) -> str:
        return obj.user.get_full_name()

    def get_on_declared_domain(self, obj) -> bool:
        return obj.lab.on_declared_domain(obj.user.email)


class LabGrantOutput(serializers.Serializer):
    id = serializers.CharField(source="grant.public_id")
    repo_id = serializers.CharField(source="grant.release.repo_id")
    active = serializers.BooleanField(source="grant.is_active")
    expires_at = serializers.DateTimeField(source="grant.expires_at")
    all_members = serializers.BooleanField(source="grant.request.all_members")
    seat = serializers.CharField(
        source="seat.status", allow_null=True, default=None, help_text="the caller's place on this grant"
    )


class LabOutput(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id")
    institution = InstitutionOutput(allow_null=True, help_text="the confirmed institution the lab's owner chose")
    email_domains = serializers.ListField(
        source="domains", child=serializers.CharField(), help_text="the email domains the lab's owner declared"
    )
    role = serializers.SerializerMethodField(help_text="the caller's role, or null")
    members = serializers.SerializerMethodField()
    grants = serializers.SerializerMethodField(help_text="the lab's grants, with the caller's seat on each")

    class Meta:
        model = Lab
        fields = [
            "id",
            "name",
            "ror_id",
            "website",
            "email_domains",
            "institution",
            "role",
            "members",
            "grants",
            "created_at",
        ]

    def _user(self):
        request = self.context.get("request")
        return request.user if request is not None else None

    def get_role(self, obj) -> str | None:
        membership = services.labs.membership_of(self._user(), obj)
        return membership.role if membership else None

    def get_members(self, obj) -> int:
        return selectors.lab_members(lab=obj).count()

    def get_grants(self, obj) -> list[dict]:
        user = self._user()
        if services.labs.membership_of(user, obj) is None:
            return []  # reviewers see the lab, not grants "of theirs"
        return [LabGrantOutput({"grant": g, "seat": s}).data for g, s in selectors.lab_grants(lab=obj, user=user)]


class LabInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    ror_id = serializers.CharField(max_length=40, required=False, allow_blank=True, default="")
    website = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    email_domains = serializers.ListField(
        child=serializers.CharField(max_length=253),
        required=False,
        default=list,
        max_length=20,
        help_text="the institution's email domains, as the owner declares them; free email providers' domains "
        "(400 free_email_domain) and public suffixes such as ac.uk or github.io (400 public_suffix_domain) are "
        "refused",
    )
    institution = serializers.CharField(
        max_length=60,
        required=False,
        allow_blank=True,
        default="",
        help_text="the ROR id of an institution the portal's staff confirmed (400 unknown_institution otherwise)",
    )


class InvitationInput(serializers.Serializer):
    email = serializers.CharField(max_length=254)
    role = serializers.ChoiceField(choices=[LabMembership.Role.MEMBER, LabMembership.Role.ADMIN], default="member")


class InvitationOutput(serializers.Serializer):
    id = serializers.CharField(source="public_id")
    email = serializers.EmailField()
    role = serializers.CharField()
    expires_at = serializers.DateTimeField()


def lab_or_404(request, public_id) -> Lab:
    lab = selectors.lab_get(user=request.user, public_id=public_id)
    if lab is None:
        raise ApiError(_("Not found."), "not_found", 404)
    return lab


class LabListApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: LabOutput(many=True), 401: ERROR}, operation_id="labs_list")
    def get(self, request):
        labs = [m.lab for m in selectors.user_labs(user=request.user)]
        return Response(LabOutput(labs, many=True, context={"request": request}).data)

    @extend_schema(request=LabInput, responses={201: LabOutput, 400: ERROR, 401: ERROR}, operation_id="labs_create")
    def post(self, request):
        data = LabInput(data=request.data)
        data.is_valid(raise_exception=True)
        lab = services.lab_create(actor=actor_for(request), **data.validated_data)
        return Response(LabOutput(lab, context={"request": request}).data, status=status.HTTP_201_CREATED)


class LabDetailApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: LabOutput, 401: ERROR, 404: ERROR}, operation_id="labs_retrieve")
    def get(self, request, public_id):
        return Response(LabOutput(lab_or_404(request, public_id), context={"request": request}).data)


class LabMembersApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: MemberOutput(many=True), 401: ERROR, 404: ERROR}, operation_id="labs_members")
    def get(self, request, public_id):
        lab = lab_or_404(request, public_id)
        return Response(MemberOutput(selectors.lab_members(lab=lab), many=True).data)


class LabMemberApi(APIView):
    """Remove a member (owner or admin), or leave the lab (your own member id)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses={204: None, 401: ERROR, 403: ERROR, 404: ERROR}, operation_id="labs_members_destroy")
    def delete(self, request, public_id, member_id):
        lab = lab_or_404(request, public_id)
        membership = selectors.lab_members(lab=lab).filter(public_id=member_id).first()
        if membership is None:
            raise ApiError(_("Not found."), "not_found", 404)
        services.lab_member_remove(actor=actor_for(request), lab=lab, membership=membership)
        return Response(status=status.HTTP_204_NO_CONTENT)


class LabInvitationsApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=InvitationInput,
        responses={201: InvitationOutput, 400: ERROR, 401: ERROR, 403: ERROR, 404: ERROR},
        operation_id="labs_invitations_create",
    )
    def post(self, request, public_id):
        lab = lab_or_404(request, public_id)
        data = InvitationInput(data=request.data)
        data.is_valid(raise_exception=True)
        invitation, _token = services.lab_invite(actor=actor_for(request), lab=lab, **data.validated_data)
        # The link goes to the invited address only; whoever invites does not get it.
        return Response(InvitationOutput(invitation).data, status=status.HTTP_201_CREATED)


class LabInvitationAcceptApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=None,
        responses={200: MemberOutput, 400: ERROR, 401: ERROR, 403: ERROR, 404: ERROR},
        operation_id="lab_invitations_accept",
    )
    def post(self, request, token):
        membership = services.lab_invitation_accept(actor=actor_for(request), token=token)
        return Response(MemberOutput(membership).data)


class ReviewLabSeatApi(APIView):
    """Approve or reject a member's request for a place on a lab grant (beyond its cap, or not named)."""

    permission_classes = [IsAuthenticated, IsReviewer]
    approve = True

    @extend_schema(
        request=ReasonInput,
        responses={
            200: inline_serializer(
                "LabSeatDecided", {"id": serializers.CharField(), "status": serializers.CharField()}
            ),
            400: ERROR,
            403: ERROR,
            404: ERROR,
        },
    )
    def post(self, request, public_id):
        seat = LabSeat.objects.filter(public_id=public_id).first()
        if seat is None:
            raise ApiError(_("Not found."), "not_found", 404)
        data = ReasonInput(data=request.data)
        data.is_valid(raise_exception=True)
        seat = services.lab_seat_decide(
            actor=actor_for(request), seat=seat, approve=self.approve, reason=data.validated_data["reason"]
        )
        return Response({"id": seat.public_id, "status": seat.status})


class ReviewLabSeatRejectApi(ReviewLabSeatApi):
    approve = False
