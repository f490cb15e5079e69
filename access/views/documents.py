"""A release's documents: reading one (a holders-only one through the download gate), acknowledging it, and the
release managers' pages to add, version, attach and preview them, with what the release page says about running
the release. Every change goes through a service."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from .. import downloads, selectors, services
from ..decorators import recent_login_required
from ..forms import DocumentForm, DocumentSettingsForm, DocumentVersionForm, FootprintForm
from ..http import actor_for
from ..models import DocumentAcknowledgement, ReleaseDocument
from .manage import _release, release_manager_required


def _visible_release(request, repo_id):
    release = selectors.release_get(repo_id=repo_id, user=request.user)
    if release is None:
        raise Http404
    return release


def _document(release, public_id):
    document = selectors.release_document(release=release, public_id=public_id)
    if document is None:
        raise Http404
    return document


def _version(document, number):
    if number is None:
        return document.current
    version = next((v for v in document.version_list if str(v.number) == str(number)), None)
    if version is None:
        raise Http404
    return version


def _refused(request, release, refusal):
    context = {"release": release, "decision": refusal}
    return render(request, "access/document_refused.html", context, status=refusal.status)


@require_safe
def document_detail(request, repo_id, public_id):
    """A document at its current version (or `?version=`), its versions with their SHA-256, and for holders asked
    to acknowledge it, the button."""
    release = _visible_release(request, repo_id)
    document = _document(release, public_id)
    refusal = downloads.read_document(
        actor=actor_for(request), release=release, holders_only=document.holders_only, document_id=public_id
    )
    if refusal is not None:
        return _refused(request, release, refusal)
    version = _version(document, request.GET.get("version"))
    acknowledged = None
    can_acknowledge = False
    if document.acknowledge_required and request.user.is_authenticated:
        acknowledged = DocumentAcknowledgement.objects.filter(user=request.user, version=document.current).first()
        state = downloads.access_state(user=request.user, release=release)
        can_acknowledge = state.allowed or state.code == "acknowledge_documents"
    context = {
        "release": release,
        "document": document,
        "version": version,
        "acknowledged": acknowledged,
        "can_acknowledge": can_acknowledge,
    }
    return render(request, "access/document.html", context)


@require_safe
def document_raw(request, repo_id, public_id, number):
    """One version's text as stored, with its SHA-256 in a header (what `sha256sum` of the file gives)."""
    release = _visible_release(request, repo_id)
    document = _document(release, public_id)
    refusal = downloads.read_document(
        actor=actor_for(request), release=release, holders_only=document.holders_only, document_id=public_id
    )
    if refusal is not None:
        return _refused(request, release, refusal)
    version = _version(document, number)
    response = HttpResponse(version.body.encode(), content_type="text/markdown; charset=utf-8")
    response["X-Checksum-Sha256"] = version.sha256
    response["Content-Disposition"] = f'inline; filename="{document.kind}-v{version.number}.md"'
    if document.holders_only:
        response["Cache-Control"] = "private, no-store"
    return response


@require_POST
def document_acknowledge(request, repo_id, public_id):
    if not request.user.is_authenticated:
        return redirect("account_login")
    release = _visible_release(request, repo_id)
    document = _document(release, public_id)
    try:
        services.document_acknowledge(
            actor=actor_for(request), document=document, version=request.POST.get("version") or None
        )
    except services.NotFound:
        raise Http404 from None
    except services.ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            _("Acknowledged: %(title)s, version %(n)d.") % {"title": document.title, "n": document.current.number},
        )
    return redirect("release-document", repo_id=release.repo_id, public_id=document.public_id)


# --- Release managers ---------------------------------------------------------------------------------------


def _preview(form) -> str:
    """The text as readers will see it (the template renders it), without saving anything."""
    return form.cleaned_data.get("body", "") if form.is_valid() else ""


@release_manager_required
@recent_login_required
@require_http_methods(["GET", "POST"])
def manage_documents(request, repo_id):
    """The release's documents and a form to add one (with a preview), and what the release page says about
    running it."""
    release = _release(repo_id)
    kind = request.GET.get("kind", "")
    initial = {"visibility": "public"}
    if kind in ReleaseDocument.Kind.values:
        initial |= {"kind": kind, "body": services.DOCUMENT_TEMPLATES.get(kind, "")}
    form = DocumentForm(request.POST or None, request.FILES or None, release=release, initial=initial)
    preview = ""
    if request.method == "POST":
        if "preview" in request.POST:
            preview = _preview(form)
        elif form.is_valid():
            data = form.cleaned_data
            try:
                document = services.document_create(
                    actor=actor_for(request),
                    release=release,
                    kind=data["kind"],
                    title=data["title"],
                    body=data["body"],
                    visibility=data["visibility"],
                    acknowledge_required=data["acknowledge_required"],
                    notes=data["notes"],
                    revisions=form.chosen_revisions(),
                )
            except services.ServiceError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, str(exc))
            else:
                messages.success(request, _("Document added."))
                return redirect("manage-document", repo_id=release.repo_id, public_id=document.public_id)
    context = {
        "release": release,
        "documents": selectors.release_documents(release=release),
        "form": form,
        "preview": preview,
        "footprint_form": FootprintForm(instance=release),
        "kinds": ReleaseDocument.Kind.choices,
    }
    status = 400 if form.is_bound and form.errors else 200
    return render(request, "access/manage/documents.html", context, status=status)


@release_manager_required
@recent_login_required
@require_POST
def manage_footprint(request, repo_id):
    release = _release(repo_id)
    form = FootprintForm(request.POST, instance=_release(repo_id))  # a copy: the form sets what it validates
    if form.is_valid():
        changes = {name: form.cleaned_data[name] for name in form.Meta.fields}
        try:
            services.release_set_footprint(actor=actor_for(request), release=release, changes=changes)
        except services.ServiceError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, _("Saved."))
    else:
        messages.error(request, _("Check the figures: %(errors)s") % {"errors": form.errors.as_text()})
    return redirect("manage-documents", repo_id=release.repo_id)


@release_manager_required
@recent_login_required
@require_http_methods(["GET", "POST"])
def manage_document(request, repo_id, public_id):
    """One document: its settings, a new version (with a preview), and the revisions each version describes."""
    release = _release(repo_id)
    document = _document(release, public_id)
    action = request.POST.get("action", "")
    settings_form = DocumentSettingsForm(
        request.POST if action == "settings" else None,
        initial={
            "title": document.title,
            "visibility": document.visibility,
            "acknowledge_required": document.acknowledge_required,
        },
    )
    version_form = DocumentVersionForm(
        request.POST if action in ("version", "preview") else None,
        request.FILES if action == "version" else None,
        release=release,
        initial={"body": document.current.body},
    )
    preview = ""
    actor = actor_for(request)
    try:
        if action == "settings" and settings_form.is_valid():
            services.document_update(actor=actor, document=document, **settings_form.cleaned_data)
            messages.success(request, _("Saved."))
            return redirect("manage-document", repo_id=release.repo_id, public_id=public_id)
        if action == "preview":
            preview = _preview(version_form)
        if action == "version" and version_form.is_valid():
            data = version_form.cleaned_data
            version = services.document_version_add(
                actor=actor,
                document=document,
                body=data["body"],
                notes=data["notes"],
                revisions=version_form.chosen_revisions(),
            )
            messages.success(request, _("Version %(n)d published.") % {"n": version.number})
            return redirect("manage-document", repo_id=release.repo_id, public_id=public_id)
        if action == "attach":
            version = _version(document, request.POST.get("version"))
            shas = request.POST.getlist("revisions")
            revisions = list(release.revisions.filter(sha__in=shas))
            services.document_attach(actor=actor, version=version, revisions=revisions)
            messages.success(request, _("Saved."))
            return redirect("manage-document", repo_id=release.repo_id, public_id=public_id)
    except services.ServiceError as exc:
        messages.error(request, str(exc))
    context = {
        "release": release,
        "document": document,
        "settings_form": settings_form,
        "version_form": version_form,
        "preview": preview,
        "published_revisions": list(release.revisions.filter(published_at__isnull=False)),
    }
    return render(request, "access/manage/document.html", context)


@require_safe
def release_license(request, repo_id):
    """The release's license at its current version, for everyone (the document list links it)."""
    release = _visible_release(request, repo_id)
    if release.license is None:
        raise Http404
    return render(request, "access/release_license.html", {"release": release, "license": release.license})
