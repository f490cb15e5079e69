"""The applicant's side: apply for a gated release, follow and answer requests."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from .. import downloads, questions, selectors, services
from ..forms import AccessRequestForm, AnswerForm, AttachmentForm, LabCoverageForm
from ..http import actor_for
from ..identities import application_prefill, verified_facts
from ..models import AccessQuestion, AccessRequest, RequestAttachment


def _previous_answers(user, release) -> dict:
    """Pre-fill a new application with the answers of the applicant's last request."""
    last = AccessRequest.objects.filter(applicant=user).order_by("-created_at").first()
    if last is None:
        return {}
    return {name: getattr(last, name) for name in services.REQUEST_FIELDS if name != "intended_use"}


def _own_request(request, public_id):
    """The signed-in applicant's own request; anyone else's does not exist for them."""
    access_request = selectors.user_request_get(user=request.user, public_id=public_id)
    if access_request is None:
        raise Http404
    return access_request


@login_required
@require_http_methods(["GET", "POST"])
def apply(request, repo_id):
    release = selectors.release_get(repo_id=repo_id, user=request.user)
    if release is None or not release.is_gated:
        raise Http404
    if not services.email_verified(request.user):
        messages.error(request, _("Verify your email address before applying; we sent you a link."))
        return redirect("account_email")
    decision = downloads.access_state(user=request.user, release=release)
    lab = _applying_lab(request)
    mine = {"lab": lab} if lab is not None else {"applicant": request.user, "lab__isnull": True}
    existing = AccessRequest.objects.filter(
        release=release, status__in=AccessRequest.UNFINISHED_STATUSES, **mine
    ).first()
    if existing is not None:
        if lab is not None:
            messages.info(request, _("The lab already has an open request for this release."))
            return redirect("lab-detail", public_id=lab.public_id)
        messages.info(request, _("You already have an open request for this release."))
        return redirect("request-detail", public_id=existing.public_id)
    if (decision.allowed or decision.code == "acknowledge_documents") and lab is None:
        messages.info(request, _("You already have access to this release."))
        return redirect("release-detail", repo_id=release.repo_id)
    reapply_after = selectors.rejection_cooldown_ends(user=request.user, release=release, lab=lab)
    if reapply_after is not None:  # said here, instead of a form refused on submit
        return render(
            request, "access/apply_cooldown.html", {"release": release, "lab": lab, "reapply_after": reapply_after}
        )
    facts = verified_facts(request.user)
    prefill = application_prefill(facts)
    form = AccessRequestForm(
        request.POST or None,
        request.FILES or None,
        release=release,
        initial={**_previous_answers(request.user, release), **{k: value for k, (value, _by) in prefill.items()}},
        verified={k: by for k, (_value, by) in prefill.items()},
    )
    coverage = None
    if lab is not None:
        coverage = LabCoverageForm(
            request.POST or None,
            prefix="lab",
            memberships=selectors.lab_members(lab=lab),
            cap=release.lab_member_cap,
        )
    if request.method == "POST" and form.is_valid() and (coverage is None or coverage.is_valid()):
        data = {**form.cleaned_data, "country": form.cleaned_data["country"]}
        application = {
            "actor": actor_for(request),
            "release": release,
            "data": data,
            "license_accepted": form.cleaned_data["accept_license"],
            "answers": form.answers(),
            "uploads": form.uploads(),
        }
        try:
            if coverage is None:
                access_request = services.request_submit(**application)
            else:
                access_request = services.request_submit_for_lab(
                    **application,
                    lab=lab,
                    members=coverage.cleaned_data["members"],
                    all_members=coverage.cleaned_data["all_members"],
                )
        except services.OpenRequestExists as exc:
            messages.info(request, str(exc))
            if exc.existing is not None:
                return redirect("request-detail", public_id=exc.existing.public_id)
            return redirect("my-requests")
        except services.ServiceError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            messages.success(request, _("Your request was submitted. We emailed you a confirmation."))
            return redirect("request-detail", public_id=access_request.public_id)
    context = {
        "release": release,
        "form": form,
        "decision": decision,
        "lab": lab,
        "coverage": coverage,
        "email_verified_by": facts.emails.get(request.user.email.lower()),
    }
    return render(request, "access/apply.html", context)


def _applying_lab(request):
    """The lab an owner or admin applies for (`?lab=<id>`), or None for an individual request."""
    lab_id = request.GET.get("lab") or request.POST.get("lab")
    if not lab_id:
        return None
    lab = selectors.lab_get(user=request.user, public_id=str(lab_id)[:40])
    membership = services.labs.membership_of(request.user, lab) if lab is not None else None
    if membership is None or membership.role not in services.labs.ADMIN_ROLES:
        raise Http404
    return lab


@login_required
@require_safe
def my_requests(request):
    return render(request, "access/my_requests.html", {"requests": selectors.user_requests(user=request.user)})


@login_required
@require_http_methods(["GET", "POST"])
def request_detail(request, public_id):
    access_request = _own_request(request, public_id)
    form = AnswerForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.request_answer(
                actor=actor_for(request), access_request=access_request, answer=form.cleaned_data["answer"]
            )
        except services.ServiceError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, _("Thank you; your request is back with the reviewer."))
        return redirect("request-detail", public_id=public_id)
    file_questions = _file_questions(access_request)
    context = {
        "request_obj": access_request,
        "events": access_request.events.select_related("actor").order_by("created_at", "id"),
        "form": form,
        "grant": getattr(access_request, "grant", None) if access_request.status == "approved" else None,
        "answers": answers_shown(access_request),
        "attachment_form": AttachmentForm(file_questions=file_questions) if file_questions else None,
        "uploads": _uploads(access_request) if file_questions else [],
        "upload_caps": {
            "question": settings.UPLOAD_MAX_FILES_PER_QUESTION,
            "request": settings.UPLOAD_MAX_FILES_PER_REQUEST,
            "mib_per_day": settings.UPLOAD_MAX_BYTES_PER_USER_DAY // 2**20,
        },
        "position": selectors.queue_position(access_request),
        "reapply_after": selectors.rejection_cooldown_ends(
            user=request.user, release=access_request.release, lab=access_request.lab
        )
        if access_request.status == AccessRequest.Status.REJECTED
        else None,
        "closes_on": selectors.needs_info_closes_on(access_request),
        "typical_wait": selectors.typical_wait(access_request.release) if access_request.status == "pending" else None,
    }
    return render(request, "access/request_detail.html", context)


def _uploads(access_request: AccessRequest) -> list[RequestAttachment]:
    """The applicant's files on the request, each labelled with its question in the request's language."""
    language = translation.get_language() or ""
    uploads = list(access_request.attachments.select_related("question"))
    for attachment in uploads:
        attachment.label = attachment.question.label(language)
    return uploads


def _file_questions(access_request: AccessRequest) -> list[AccessQuestion]:
    """The file questions an applicant may upload to now: on a draft, or while the reviewer asks for more."""
    if access_request.status not in (AccessRequest.Status.DRAFT, AccessRequest.Status.NEEDS_INFO):
        return []
    return [
        q for q in selectors.release_questions(release=access_request.release) if q.kind == AccessQuestion.Kind.FILE
    ]


def answers_shown(access_request: AccessRequest) -> list[dict]:
    """Each answer to the release's questions with the label of the question version it answered."""
    language = translation.get_language() or ""
    attachments = {a.public_id: a for a in access_request.attachments.all()}
    return [
        {
            "key": answer.question.key,
            "label": answer.question.label(language),
            "version": answer.question.version,
            "retired": answer.question.retired_at is not None,
            "text": questions.display(answer.question, answer.value, language, attachments),
            "attachment": attachments.get(answer.value) if answer.question.kind == AccessQuestion.Kind.FILE else None,
        }
        for answer in selectors.request_answers(access_request=access_request)
    ]


@login_required
@require_POST
def request_attach(request, public_id):
    access_request = _own_request(request, public_id)
    form = AttachmentForm(request.POST, request.FILES, file_questions=_file_questions(access_request))
    if not form.is_valid():
        messages.error(request, " ".join(str(e) for errors in form.errors.values() for e in errors))
        return redirect("request-detail", public_id=public_id)
    try:
        services.request_attach(
            actor=actor_for(request),
            access_request=access_request,
            question_key=form.cleaned_data["question"],
            upload=form.cleaned_data["file"],
        )
    except services.ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("The file was added to your request."))
    return redirect("request-detail", public_id=public_id)


@login_required
@require_POST
def request_attachment_remove(request, public_id, attachment_id):
    access_request = _own_request(request, public_id)
    attachment = RequestAttachment.objects.filter(request=access_request, public_id=attachment_id).first()
    if attachment is None:
        raise Http404
    try:
        services.request_attachment_remove(
            actor=actor_for(request), access_request=access_request, attachment=attachment
        )
    except services.ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("%(file)s was removed from your request.") % {"file": attachment.filename})
    return redirect("request-detail", public_id=public_id)


@login_required
@require_POST
def request_submit_draft(request, public_id):
    access_request = _own_request(request, public_id)
    try:
        services.request_submit_draft(actor=actor_for(request), access_request=access_request)
    except services.ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Your request was submitted. We emailed you a confirmation."))
    return redirect("request-detail", public_id=public_id)


@login_required
@require_http_methods(["GET", "POST"])
def request_withdraw(request, public_id):
    """GET asks for confirmation (a page, so it works without JavaScript); POST withdraws."""
    access_request = _own_request(request, public_id)
    if request.method == "GET":
        context = {
            "title": _("Withdraw your request?"),
            "question": _("Withdraw your request for %(repo)s?") % {"repo": access_request.release.repo_id},
            "consequence": _("Reviewers will no longer see it. You can apply again later with a new request."),
            "confirm_label": _("Withdraw the request"),
            "action": request.path,
            "cancel_url": reverse("request-detail", kwargs={"public_id": public_id}),
        }
        return render(request, "access/confirm.html", context)
    try:
        services.request_withdraw(actor=actor_for(request), access_request=access_request)
    except services.ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Your request was withdrawn."))
    return redirect("request-detail", public_id=public_id)
