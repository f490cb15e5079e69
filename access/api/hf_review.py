"""The Hugging Face Hub's reviewer calls, so `HfApi(endpoint=<portal>, token=<reviewer token>)` manages the
portal's access requests unchanged (checked against huggingface_hub 2.4.0):

- `list_{pending,accepted,rejected}_access_requests` GET `/api/models/{repo}/user-access-request/{status}` and
  follow `Link: <…>; rel="next"`; each entry is `{"user": {"user", "fullname", "email"}, "requestId", "status",
  "timestamp", "fields"}`.
- `accept_/reject_/cancel_access_request` POST `…/user-access-request/handle` with `{"user"|"requestId",
  "status": "accepted"|"rejected"|"pending", "rejectionReason"?}`; `grant_access` POSTs `…/grant` `{"user"}`
  and reads a JSON body back.
- `whoami` GETs `/api/whoami-v2` and `hf auth whoami` prints `name` and the names in `orgs`.

The Hub's three lists are views of the portal's states, and each call is one of the portal's services with the
same rules as the web (reviewer access on the token, no decision on one's own request, reasons cleaned and
required where the applicant sees them). docs/reviewers.md ("Hugging Face reviewer API") tabulates the mapping.
A user name is the account's email address.
"""

from __future__ import annotations

from django.conf import settings
from django.db.models import Q
from django.urls import reverse
from django.utils.translation import gettext as _
from rest_framework import exceptions, serializers
from rest_framework.response import Response

from .. import selectors, services
from ..http import actor_for
from ..models import AccessRequest, ApiToken, Grant, ModelRelease, User
from ..permissions import IsAuthenticated, IsReviewer
from .errors import ApiError
from .hf import HfApiView, hf_error, iso

S = AccessRequest.Status
PAGE_SIZE = 100
FORM_FIELDS = ["full_name", "affiliation", "organization_type", "country", "role", "intended_use", "publications"]


def hf_state(access_request: AccessRequest) -> str | None:
    """The Hub's name for where a request stands: pending (waiting on a reviewer or on the applicant), accepted
    (approved, grant not revoked), rejected (rejected, or approved and then revoked); None for a withdrawn one."""
    if access_request.status in AccessRequest.OPEN_STATUSES:
        return "pending"
    if access_request.status == S.REJECTED:
        return "rejected"
    if access_request.status == S.APPROVED:
        grant = Grant.objects.filter(request=access_request).only("revoked_at").first()
        return "rejected" if grant is not None and grant.revoked_at is not None else "accepted"
    return None


def requests_in_state(release: ModelRelease, state: str):
    qs = AccessRequest.objects.filter(release=release).select_related("applicant", "lab")
    revoked = Q(status=S.APPROVED, grant__revoked_at__isnull=False)
    if state == "pending":
        qs = qs.filter(status__in=AccessRequest.OPEN_STATUSES)
    elif state == "accepted":
        qs = qs.filter(status=S.APPROVED).exclude(revoked)
    else:
        qs = qs.filter(Q(status=S.REJECTED) | revoked)
    return qs.order_by("created_at", "public_id")


def coverage(access_request: AccessRequest) -> dict:
    """A lab request's lab and whom it covers, among the form's fields (the Hub has no lab requests, and its
    client shows `fields` as they come): empty for a person's own request."""
    if access_request.lab_id is None:
        return {}
    lab = access_request.lab
    if access_request.all_members:
        covers = "all members"
    else:
        covers = ", ".join(sorted(u.email for u in access_request.covered_members.all()))
    return {"lab": lab.name, "lab_id": lab.public_id, "covers": covers}


def entry(access_request: AccessRequest, state: str) -> dict:
    fields = {name: str(getattr(access_request, name)) for name in FORM_FIELDS} | coverage(access_request)
    return {
        "user": {"user": access_request.email, "fullname": access_request.full_name, "email": access_request.email},
        "requestId": access_request.public_id,
        "status": state,
        "timestamp": iso(access_request.created_at),
        "fields": fields,
        # Beyond the Hub's shape (its client ignores these): the portal's own state and the reasons given.
        "portalStatus": access_request.status,
        "origin": access_request.origin,
        "infoRequest": access_request.info_request,
        "decisionReason": access_request.decision_reason,
    }


def decide_urls(access_request: AccessRequest) -> str:
    """Where the portal's own API decides one request, for a message that names it."""
    return " | ".join(
        settings.SITE_URL + reverse(name, kwargs={"public_id": access_request.public_id})
        for name in ("api-review-approve", "api-review-reject")
    )


class HandleInput(serializers.Serializer):
    user = serializers.CharField(max_length=254, required=False)
    requestId = serializers.CharField(max_length=64, required=False)
    status = serializers.ChoiceField(choices=["accepted", "rejected", "pending"])
    rejectionReason = serializers.CharField(
        max_length=5000, required=False, allow_blank=True, allow_null=True, default=None
    )

    def validate(self, data):
        if bool(data.get("user")) == bool(data.get("requestId")):
            raise serializers.ValidationError(_("Give exactly one of user and requestId."))
        if data["rejectionReason"] is not None and data["status"] != "rejected":
            raise serializers.ValidationError(_("A rejection reason goes only with status rejected."))
        return data


class GrantInput(serializers.Serializer):
    user = serializers.CharField(max_length=254)


class HfReviewView(HfApiView):
    """Every reviewer call: a signed-in caller (else 401) holding the review permission through a session or a
    token created with reviewer access (else 403, before the repo is even looked up), as on /api/v1/review; on a
    gated release (else 404 RepoNotFound, or 400 for an open one). Decisions are then the services' own checks."""

    permission_classes = [IsAuthenticated, IsReviewer]

    def reviewer(self) -> services.Actor:
        return actor_for(self.request)

    def gated_release(self, repo_id: str) -> ModelRelease:
        release = self.release(repo_id)
        if not release.is_gated:
            raise ApiError(_("%(repo)s is open: it has no access requests.") % {"repo": repo_id}, "not_gated", 400)
        return release

    def account(self, email: str) -> User:
        user = User.objects.filter(email__iexact=email.strip()).first()
        if user is None:
            raise ApiError(_("No account with the email address %(user)s.") % {"user": email}, "not_found", 404)
        return user


class AccessRequestListApi(HfReviewView):
    def get(self, request, repo_id, state):
        self.reviewer()
        release = self.gated_release(repo_id)
        qs = requests_in_state(release, state)
        cursor = request.query_params.get("cursor")
        if cursor:
            # Keyset paging: a script that accepts each pending request while it reads the list skips none.
            after = AccessRequest.objects.filter(release=release, public_id=cursor[:64]).first()
            if after is None:
                raise ApiError(_("Invalid cursor."), "invalid_cursor", 400)
            qs = qs.filter(
                Q(created_at__gt=after.created_at) | Q(created_at=after.created_at, public_id__gt=after.public_id)
            )
        page = list(qs[: PAGE_SIZE + 1])
        response = Response([entry(r, state) for r in page[:PAGE_SIZE]])
        if len(page) > PAGE_SIZE:
            next_url = f"{request.build_absolute_uri(request.path)}?cursor={page[PAGE_SIZE - 1].public_id}"
            response["Link"] = f'<{next_url}>; rel="next"'
        return response


class AccessRequestHandleApi(HfReviewView):
    def post(self, request, repo_id):
        actor = self.reviewer()
        release = self.gated_release(repo_id)
        data = HandleInput(data=request.data)
        data.is_valid(raise_exception=True)
        access_request = self.find(release, data.validated_data)
        updated = handle(
            actor=actor,
            access_request=access_request,
            status=data.validated_data["status"],
            reason=data.validated_data["rejectionReason"] or "",
        )
        return Response({"requestId": updated.public_id, "status": hf_state(updated), "portalStatus": updated.status})

    def find(self, release: ModelRelease, data: dict) -> AccessRequest:
        if data.get("requestId"):
            found = AccessRequest.objects.filter(release=release, public_id=data["requestId"]).first()
        else:
            user = self.account(data["user"])
            mine = AccessRequest.objects.filter(release=release, applicant=user).exclude(status=S.WITHDRAWN)
            open_ones = list(mine.filter(status__in=AccessRequest.OPEN_STATUSES).select_related("lab")[:2])
            if len(open_ones) > 1:
                # Their own request and a lab request they filed: the Hub's user-addressed call cannot say which.
                own = _("their own")
                raise hf_error(
                    _("%(user)s has two open requests for %(repo)s; decide each by its id: %(ids)s.")
                    % {
                        "user": user.email,
                        "repo": release.repo_id,
                        "ids": "; ".join(
                            f"{r.public_id} ({r.lab.name if r.lab_id else own}: POST {decide_urls(r)})"
                            for r in open_ones
                        ),
                    },
                    "ambiguous_request",
                    409,
                    "AmbiguousRequest",
                )
            found = open_ones[0] if open_ones else mine.order_by("-created_at").first()
        if found is None:
            raise ApiError(_("No access request for %(repo)s matches.") % {"repo": release.repo_id}, "not_found", 404)
        return found


def handle(*, actor: services.Actor, access_request: AccessRequest, status: str, reason: str) -> AccessRequest:
    """The Hub's move of a request between its lists, as the portal's service for it."""
    state = hf_state(access_request)
    if state is None:
        raise services.InvalidTransition(_("The applicant withdrew this request."))
    if state == status:
        raise services.InvalidTransition(_("This request is already %(state)s.") % {"state": status})
    if status == "accepted":
        if state == "pending":
            return services.request_approve(actor=actor, access_request=access_request)
        # A decided request is never reopened: the reviewer's grant is a new, approved request.
        return services.request_grant(
            actor=actor, release=access_request.release, user=access_request.applicant, reason=reason
        )
    if state == "pending":
        if status == "rejected":
            return services.request_reject(actor=actor, access_request=access_request, reason=reason)
        raise services.InvalidTransition(_("This request is already pending."))
    if state == "rejected":  # and status == "pending"
        raise services.InvalidTransition(
            _(
                "A rejected request is not reopened: the applicant may apply again after the cool-down, "
                "or a reviewer may grant access."
            )
        )
    # Accepted → rejected or pending: the grant is revoked (cancelling gives a fixed reason).
    grant = Grant.objects.filter(request=access_request).first()
    if grant is None:
        raise services.InvalidTransition(_("The grant is still being issued; try again in a minute."))
    if status == "pending":
        reason = _("Access cancelled by a reviewer.")
    services.grant_revoke(actor=actor, grant=grant, reason=reason)
    access_request.refresh_from_db()
    return access_request


class AccessRequestGrantApi(HfReviewView):
    def post(self, request, repo_id):
        actor = self.reviewer()
        release = self.gated_release(repo_id)
        data = GrantInput(data=request.data)
        data.is_valid(raise_exception=True)
        user = self.account(data.validated_data["user"])
        granted = services.request_grant(actor=actor, release=release, user=user)
        return Response({"requestId": granted.public_id, "status": "accepted", "portalStatus": granted.status})


class WhoAmIApi(HfApiView):
    """`whoami` / `hf auth whoami`: the account (its name is its email), the token and what it may do."""

    def get(self, request):
        actor = actor_for(request)
        if actor.user is None:
            raise exceptions.NotAuthenticated()
        user, token = actor.user, actor.token
        reviewer = selectors.is_reviewer(user)
        if token is not None:
            auth = {
                "type": "access_token",
                "accessToken": {
                    "displayName": token.name,
                    "role": "write" if token.can_review and reviewer else "read",
                    "createdAt": iso(token.created_at),
                    "portalScope": token.scope,
                },
            }
        else:
            auth = {"type": "session"}
        return Response(
            {
                "type": "user",
                "id": str(user.pk),
                "name": user.email,
                "fullname": user.get_full_name() or user.email,
                "email": user.email,
                "emailVerified": services.email_verified(user),
                "isPro": False,
                "canPay": False,
                "periodEnd": None,
                "avatarUrl": "",
                "orgs": [],
                "auth": auth,
                "portalRole": "reviewer" if reviewer else "researcher",
                "canReview": reviewer and (token is None or token.scope == ApiToken.Scope.REVIEW),
            }
        )
