"""Labs in the browser: create one, invite and remove members, accept an invitation, and a member's view of
what the lab's grants give them."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from .. import downloads, selectors, services
from ..forms import LabForm, LabInstitutionForm, LabInviteForm, LicenseAcceptForm
from ..http import actor_for
from ..identities import verified_facts_for
from ..models import AccessRequest, DownloadEvent, Grant, LabInvitation, LabMembership, LabSeat

Role = LabMembership.Role


def _lab(request, public_id):
    lab = selectors.lab_get(user=request.user, public_id=public_id)
    if lab is None:
        raise Http404
    return lab


@login_required
@require_http_methods(["GET", "POST"])
def labs(request):
    form = LabForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            lab = services.lab_create(
                actor=actor_for(request),
                name=form.cleaned_data["name"],
                ror_id=form.cleaned_data["ror_id"],
                website=form.cleaned_data["website"],
                email_domains=form.cleaned_data["email_domains"],
                institution=form.cleaned_data["institution"],
            )
        except services.ServiceError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            messages.success(request, _("Your lab was created; invite its members next."))
            return redirect("lab-detail", public_id=lab.public_id)
    context = {"memberships": selectors.user_labs(user=request.user), "form": form}
    return render(request, "access/labs/list.html", context, status=400 if form.is_bound else 200)


@login_required
@require_http_methods(["GET"])
def lab_detail(request, public_id):
    lab = _lab(request, public_id)
    mine = services.labs.membership_of(request.user, lab)
    members = list(selectors.lab_members(lab=lab))
    can_admin = mine is not None and mine.role in services.labs.ADMIN_ROLES
    context = {
        "lab": lab,
        "mine": mine,
        "can_admin": can_admin,
        "members": list(zip(members, member_standing(lab, members), strict=True)),
        "invitations": (
            lab.invitations.filter(accepted_at__isnull=True, revoked_at__isnull=True).order_by("-created_at")
            if can_admin
            else []
        ),
        "invite_form": LabInviteForm() if can_admin else None,
        "institution_form": (
            LabInstitutionForm(initial={"institution": lab.institution.ror_id if lab.institution else ""})
            if mine is not None and mine.role == Role.OWNER
            else None
        ),
        "grants": selectors.lab_grants(lab=lab, user=request.user),
        "requests": AccessRequest.objects.filter(lab=lab).select_related("release").order_by("-created_at")[:50],
        "gated": selectors.release_list(user=request.user).filter(access="gated") if can_admin else [],
    }
    return render(request, "access/labs/detail.html", context)


@login_required
@require_POST
def lab_institution(request, public_id):
    lab = _lab(request, public_id)
    form = LabInstitutionForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(str(e) for errors in form.errors.values() for e in errors))
        return redirect("lab-detail", public_id=public_id)
    try:
        services.lab_set_institution(actor=actor_for(request), lab=lab, institution=form.cleaned_data["institution"])
    except services.ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("The lab's institution was saved."))
    return redirect("lab-detail", public_id=public_id)


@login_required
@require_POST
def lab_invite(request, public_id):
    lab = _lab(request, public_id)
    form = LabInviteForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(str(e) for errors in form.errors.values() for e in errors))
        return redirect("lab-detail", public_id=public_id)
    try:
        services.lab_invite(
            actor=actor_for(request), lab=lab, email=form.cleaned_data["email"], role=form.cleaned_data["role"]
        )
    except services.ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Invitation emailed to %(email)s.") % {"email": form.cleaned_data["email"]})
    return redirect("lab-detail", public_id=public_id)


@login_required
@require_POST
def lab_invitation_revoke(request, public_id, invitation_id):
    lab = _lab(request, public_id)
    invitation = LabInvitation.objects.filter(lab=lab, public_id=invitation_id).first()
    if invitation is None:
        raise Http404
    try:
        services.lab_invitation_revoke(actor=actor_for(request), invitation=invitation)
    except services.ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("The invitation was withdrawn."))
    return redirect("lab-detail", public_id=public_id)


@login_required
@require_http_methods(["GET", "POST"])
def lab_member_remove(request, public_id, member_id):
    """Confirm, then remove a member (or leave, for one's own membership)."""
    lab = _lab(request, public_id)
    membership = selectors.lab_members(lab=lab).filter(public_id=member_id).first()
    if membership is None:
        raise Http404
    leaving = membership.user_id == request.user.pk
    if request.method == "POST":
        try:
            services.lab_member_remove(actor=actor_for(request), lab=lab, membership=membership)
        except services.ServiceError as exc:
            messages.error(request, str(exc))
            return redirect("lab-detail", public_id=public_id)
        if leaving:
            messages.success(request, _("You left %(lab)s.") % {"lab": lab.name})
            return redirect("labs")
        messages.success(request, _("%(email)s was removed from the lab.") % {"email": membership.user.email})
        return redirect("lab-detail", public_id=public_id)
    return render(request, "access/labs/remove.html", {"lab": lab, "membership": membership, "leaving": leaving})


@login_required
@require_POST
def lab_member_role(request, public_id, member_id):
    lab = _lab(request, public_id)
    membership = selectors.lab_members(lab=lab).filter(public_id=member_id).first()
    if membership is None:
        raise Http404
    try:
        services.lab_member_set_role(
            actor=actor_for(request), lab=lab, membership=membership, role=str(request.POST.get("role", ""))
        )
    except services.ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("The role was changed."))
    return redirect("lab-detail", public_id=public_id)


@require_http_methods(["GET", "POST"])
def lab_invitation(request, token):
    """An invitation's link: who invites to what; accepting needs the invited address verified on the account."""
    invitation = services.labs.invitation_get(token)
    if invitation is None:
        return render(request, "access/labs/invitation.html", {"invalid": True}, status=404)
    if not request.user.is_authenticated:
        return render(request, "access/labs/invitation.html", {"invitation": invitation, "signed_out": True})
    if request.method == "POST":
        try:
            services.lab_invitation_accept(actor=actor_for(request), token=token)
        except services.ServiceError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, _("Welcome to %(lab)s.") % {"lab": invitation.lab.name})
            return redirect("lab-detail", public_id=invitation.lab.public_id)
    context = {
        "invitation": invitation,
        "email_matches": services.labs.verified_email(request.user, invitation.email),
    }
    return render(request, "access/labs/invitation.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def lab_grant(request, public_id):
    """What a lab grant gives this member: their place on it, the license to accept, and the download commands."""
    found = selectors.member_lab_grant_get(user=request.user, public_id=public_id)
    if found is None:
        raise Http404
    grant, seat = found
    release = grant.release
    current = release.license
    form = LicenseAcceptForm(request.POST or None, initial={"version": current.version if current else ""})
    if request.method == "POST" and form.is_valid():
        try:
            seat = services.lab_seat_accept(
                actor=actor_for(request),
                grant=grant,
                version=form.cleaned_data["version"],
                accept_license=form.cleaned_data["accept_license"],
                noncommercial_attested=form.cleaned_data["noncommercial_attested"],
            )
        except services.ServiceError as exc:
            form.add_error("version" if exc.field == "version" else None, str(exc))
        else:
            if seat.status == seat.Status.ACTIVE:
                messages.success(request, _("Thank you; you can download now."))
            else:
                messages.info(request, _("Thank you. A reviewer approves your place on this grant; we will email you."))
            return redirect("lab-grant", public_id=public_id)
    decision = downloads.access_state(user=request.user, release=release, grant=grant)
    context = {
        "grant": grant,
        "seat": seat,
        "release": release,
        "license": current,
        "form": form,
        "decision": decision,
        "tokens": request.user.api_tokens.filter(revoked_at__isnull=True),
        "steward": grant.lab.memberships.current().filter(user=request.user, role__in=("owner", "admin")).exists(),
        "closeouts_owed": grant.closeouts.filter(user=request.user, completed_at__isnull=True).exists(),
    }
    return render(request, "access/labs/grant.html", context)


@login_required
@require_POST
def lab_grant_renew(request, public_id):
    """An owner or admin asks for a renewal of the lab's grant; it goes to the reviewers like any request."""
    found = selectors.member_lab_grant_get(user=request.user, public_id=public_id)
    if found is None:
        raise Http404
    grant = found[0]
    try:
        access_request = services.request_renew(actor=actor_for(request), grant=grant)
    except services.OpenRequestExists as exc:
        messages.info(request, str(exc))
    except services.ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("The renewal request is with the reviewers."))
        return redirect("request-detail", public_id=access_request.public_id)
    return redirect("lab-detail", public_id=grant.lab.public_id)


# --- Reviewers --------------------------------------------------------------------------------------------


def member_standing(lab, members) -> list[str]:
    """For each member: "verified" when they hold a verified affiliation at the lab's institution (access.identities),
    else "declared" when their address is on a domain the lab's owner declared, else "other"."""
    institution = lab.institution
    facts = verified_facts_for([m.user for m in members]) if institution and institution.is_confirmed else {}
    standing = []
    for m in members:
        held = facts.get(m.user_id)
        if held is not None and any(f.institution.pk == institution.pk for f in held.affiliations):
            standing.append("verified")
        else:
            standing.append("declared" if lab.on_declared_domain(m.user.email) else "other")
    return standing


def review_request_context(access_request: AccessRequest) -> dict:
    """What a reviewer sees about a lab request: the lab, its members and whether each is on a domain its owner
    declared, whom the request covers, and the earlier requests of any of them (decide once, knowing the group)."""
    lab = access_request.lab
    if lab is None:
        return {}
    members = list(selectors.lab_members(lab=lab))
    covered = set(access_request.covered_members.values_list("pk", flat=True))
    users = [m.user_id for m in members]
    earlier = (
        AccessRequest.objects.filter(applicant_id__in=users)
        .exclude(pk=access_request.pk)
        .select_related("release", "lab")
        .order_by("-created_at")[:100]
    )
    return {
        "lab": lab,
        "lab_members": [
            (m, standing, access_request.all_members or m.user_id in covered)
            for m, standing in zip(members, member_standing(lab, members), strict=True)
        ],
        "lab_earlier": earlier,
        "lab_cap": access_request.release.lab_member_cap,
    }


def review_grant_context(grant: Grant) -> dict:
    """A lab grant on the reviewer's grant page: each member's place and downloads, and places to decide."""
    if grant.lab_id is None:
        return {}
    seats = list(grant.seats.select_related("user", "license", "decided_by").order_by("created_at", "id"))
    fetched = {
        row["user_id"]: row
        for row in DownloadEvent.objects.filter(grant=grant)
        .values("user_id")
        .annotate(files=Count("file", distinct=True), times=Count("id"))
    }
    current = set(LabMembership.objects.current().filter(lab_id=grant.lab_id).values_list("user_id", flat=True))
    return {
        "lab": grant.lab,
        "lab_seats": [(seat, fetched.get(seat.user_id), seat.user_id in current) for seat in seats],
    }


@require_POST
def review_seat_decide(request, public_id):
    if not selectors.is_reviewer(request.user):
        raise Http404
    seat = LabSeat.objects.select_related("grant").filter(public_id=public_id).first()
    if seat is None:
        raise Http404
    try:
        services.lab_seat_decide(
            actor=actor_for(request),
            seat=seat,
            approve=request.POST.get("action") == "approve",
            reason=str(request.POST.get("reason", "")),
        )
    except services.ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Decision recorded."))
    return redirect("review-grant", public_id=seat.grant.public_id)
