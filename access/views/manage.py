"""Release managers' pages: a release's access form (with a preview as applicants see it), its license
version and what holders of older versions must do, and its revisions. Every change goes through a service."""

from __future__ import annotations

from functools import wraps

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from .. import codewords, selectors, services
from .. import rules as rules_logic
from ..decorators import recent_login_required
from ..forms import (
    AccessRequestForm,
    DecisionRuleForm,
    LicenseVersionForm,
    QuestionForm,
    ReleaseLicenseForm,
    ReleaseReviewForm,
    RestrictedCountriesForm,
)
from ..http import actor_for
from ..models import AccessQuestion, ModelRelease
from ..services.licenses import license_update_holders
from ..services.rules import rule_data


def release_manager_required(view):
    """Release managers only; for anyone else the pages do not exist."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not selectors.is_release_manager(request.user):
            raise Http404
        return view(request, *args, **kwargs)

    return wrapper


def _release(repo_id: str) -> ModelRelease:
    release = ModelRelease.objects.select_related("license").filter(repo_id=repo_id).first()
    if release is None:
        raise Http404
    return release


@release_manager_required
@require_safe
def releases(request):
    rows = ModelRelease.objects.select_related("license").order_by("parameters", "repo_id")
    return render(request, "access/manage/releases.html", {"releases": rows})


@release_manager_required
@recent_login_required
@require_http_methods(["GET", "POST"])
def release(request, repo_id):
    """The form's questions and a form to add one; the license; the revisions."""
    rel = _release(repo_id)
    form = QuestionForm(request.POST or None, initial={"required": True})
    if request.method == "POST" and form.is_valid():
        try:
            services.question_create(
                actor=actor_for(request), release=rel, key=form.cleaned_data["key"], fields=form.service_fields()
            )
        except services.ServiceError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            messages.success(request, _("Question added."))
            return redirect("manage-release", repo_id=rel.repo_id)
    context = _release_context(rel, question_form=form)
    return render(request, "access/manage/release.html", context, status=400 if form.is_bound else 200)


def _release_context(rel: ModelRelease, **extra) -> dict:
    return {
        "release": rel,
        "questions": selectors.release_questions(release=rel),
        "has_requests": rel.access_requests.exists(),
        "license_form": ReleaseLicenseForm(
            release=rel, initial={"license": rel.license_id, "license_update_mode": rel.license_update_mode}
        )
        if rel.license
        else None,
        "version_form": LicenseVersionForm(initial={"title": rel.license.title if rel.license else ""}),
        "holders_on_old": license_update_holders(release=rel).count() if rel.is_gated else 0,
        "revisions": selectors.release_revisions(release=rel),
        "review_form": ReleaseReviewForm(instance=rel) if rel.is_gated else None,
        "marking": codewords.MarkingStatus(rel) if rel.marking else None,
        "marking_form": ReleaseLicenseForm(release=rel, initial={"license": rel.license_id})
        if rel.is_gated and rel.license and not rel.marking
        else None,
        "has_holders": rel.grants.active().exists() if rel.is_gated and not rel.marking else False,
        **extra,
    }


@release_manager_required
@recent_login_required
@require_http_methods(["GET", "POST"])
def question_edit(request, repo_id, key):
    rel = _release(repo_id)
    question = AccessQuestion.objects.filter(release=rel, key=key, retired_at__isnull=True).first()
    if question is None:
        raise Http404
    form = QuestionForm(request.POST or None, initial=QuestionForm.initial_for(question), editing=True)
    if request.method == "POST" and form.is_valid():
        try:
            current = services.question_update(
                actor=actor_for(request), question=question, fields=form.service_fields()
            )
        except services.ServiceError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            if current.pk != question.pk:
                messages.success(
                    request,
                    _("Saved as version %(v)d of the question; earlier answers keep version %(old)d.")
                    % {"v": current.version, "old": question.version},
                )
            else:
                messages.success(request, _("Question saved."))
            return redirect("manage-release", repo_id=rel.repo_id)
    versions = AccessQuestion.objects.filter(release=rel, key=key).order_by("-version")
    context = {"release": rel, "question": question, "form": form, "versions": versions}
    return render(request, "access/manage/question.html", context, status=400 if form.is_bound else 200)


@release_manager_required
@recent_login_required
@require_POST
def question_retire(request, repo_id, key):
    rel = _release(repo_id)
    question = AccessQuestion.objects.filter(release=rel, key=key, retired_at__isnull=True).first()
    if question is None:
        raise Http404
    services.question_retire(actor=actor_for(request), question=question)
    messages.success(request, _("The question was taken off the form."))
    return redirect("manage-release", repo_id=rel.repo_id)


@release_manager_required
@require_safe
def preview(request, repo_id):
    """The request form exactly as applicants see it (in the language chosen), without a way to submit it."""
    rel = _release(repo_id)
    if not rel.is_gated or rel.license is None:
        raise Http404
    return render(request, "access/manage/preview.html", {"release": rel, "form": AccessRequestForm(release=rel)})


@release_manager_required
@recent_login_required
@require_POST
def license_move(request, repo_id):
    rel = _release(repo_id)
    form = ReleaseLicenseForm(request.POST, release=rel)
    if not form.is_valid():
        messages.error(request, _("Choose a version of this release's license."))
        return redirect("manage-release", repo_id=rel.repo_id)
    try:
        services.release_set_license(
            actor=actor_for(request),
            release=rel,
            license=form.cleaned_data["license"],
            mode=form.cleaned_data["license_update_mode"],
        )
    except services.ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Saved. Holders of an older version are emailed and must accept this one."))
    return redirect("manage-release", repo_id=rel.repo_id)


@release_manager_required
@recent_login_required
@require_POST
def license_version(request, repo_id):
    rel = _release(repo_id)
    if rel.license is None:
        raise Http404
    form = LicenseVersionForm(request.POST)
    if form.is_valid():
        try:
            services.license_publish(actor=actor_for(request), slug=rel.license.slug, **form.cleaned_data)
        except services.ServiceError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, _("Version published. Move the release to it below when it should apply."))
            return redirect("manage-release", repo_id=rel.repo_id)
    else:
        messages.error(request, " ".join(str(e) for errors in form.errors.values() for e in errors))
    return redirect("manage-release", repo_id=rel.repo_id)


# What the review form always sends; the flaw reports' settings are sent when they change.
ORIGINAL_REVIEW_FIELDS = ("review_deadline_days", "transparency_public")


@release_manager_required
@recent_login_required
@require_POST
def marking_enable(request, repo_id):
    """Turn marking on: the revisions registered from then on are marked (a release with holders moves to the new
    license version chosen, which says so)."""
    rel = _release(repo_id)
    form = ReleaseLicenseForm(request.POST, release=rel)
    form.is_valid()  # only the version is asked for here
    chosen = form.cleaned_data.get("license")
    try:
        services.release_marking_enable(actor=actor_for(request), release=rel, license=chosen)
    except services.ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request, _("Marking is on. Register the next revision with register_release --mark to mark its weights.")
        )
    return redirect("manage-release", repo_id=rel.repo_id)


@release_manager_required
@recent_login_required
@require_POST
def review_policy(request, repo_id):
    """The release's review deadline and transparency page, through the release service."""
    rel = _release(repo_id)
    form = ReleaseReviewForm(request.POST, instance=ModelRelease.objects.get(pk=rel.pk))
    if not form.is_valid():
        return render(request, "access/manage/release.html", _release_context(rel, review_form=form), status=400)
    try:
        services.release_update(
            actor=actor_for(request),
            release=rel,
            changes={
                name: form.cleaned_data[name]
                for name in ReleaseReviewForm.Meta.fields
                if form.cleaned_data[name] is not None and name in (*form.changed_data, *ORIGINAL_REVIEW_FIELDS)
            },
        )
    except services.ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Review settings saved."))
    return redirect("manage-release", repo_id=rel.repo_id)


def _rules_list(rel: ModelRelease) -> list[dict]:
    return [
        {k: v for k, v in rule_data(r).items() if k in ("action", "conditions", "note")}
        for r in rules_logic.current_rules(rel)
    ]


@release_manager_required
@recent_login_required
@require_http_methods(["GET", "POST"])
def rules(request, repo_id):
    """The release's decision rules in order (add, move up, remove) and its restricted countries; every change
    replaces the list through the rules service."""
    rel = _release(repo_id)
    if not rel.is_gated:
        raise Http404
    form = DecisionRuleForm(request.POST if request.POST.get("do") == "add" else None)
    countries_form = RestrictedCountriesForm(
        request.POST if request.POST.get("do") == "countries" else None,
        initial={"restricted_countries": " ".join(rel.restricted_countries)},
    )
    if request.method == "POST":
        current = _rules_list(rel)
        do, countries = request.POST.get("do"), None
        try:
            position = int(request.POST.get("position", "0")) - 1
        except ValueError:
            position = -1
        if do == "add" and form.is_valid():
            current.append(form.rule())
        elif do == "countries" and countries_form.is_valid():
            countries = countries_form.cleaned_data["restricted_countries"].replace(",", " ").split()
        elif do == "remove" and 0 <= position < len(current):
            current.pop(position)
        elif do == "up" and 0 < position < len(current):
            current[position - 1], current[position] = current[position], current[position - 1]
        else:
            do = None
        if do is not None:
            try:
                services.release_rules_set(
                    actor=actor_for(request), release=rel, rules=current, restricted_countries=countries
                )
            except services.ServiceError as exc:
                (form if do == "add" else countries_form).add_error(None, str(exc))
            else:
                messages.success(request, _("Rules saved."))
                return redirect("manage-rules", repo_id=rel.repo_id)
    shown = [
        {"rule": r, "conditions": rules_logic.describe_conditions(r.conditions)} for r in rules_logic.current_rules(rel)
    ]
    context = {"release": rel, "rules": shown, "form": form, "countries_form": countries_form}
    return render(request, "access/manage/rules.html", context, status=400 if request.method == "POST" else 200)
