"""A release's access form as JSON Schema (draft 2020-12), for applying without a browser.

The schema is read off the very form the API validates with (`access.forms.AccessRequestForm`), so what it
describes and what is accepted cannot drift apart. Labels and help come in the language of the request
(`Accept-Language`). Annotations the schema vocabulary has no word for start with `x-`: the license to accept,
where to send the body, and the file questions, which are answered by uploads rather than in the JSON body."""

from __future__ import annotations

from django import forms
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _

from .. import questions
from ..forms import INTENDED_USE_MIN, AccessRequestForm
from ..models import AccessQuestion, ModelRelease
from ..services import REQUEST_FIELDS

DIALECT = "https://json-schema.org/draft/2020-12/schema"
# Rules a field enforces in its clean method rather than in its attributes.
EXTRA = {"intended_use": {"minLength": INTENDED_USE_MIN}}


def field_schema(field: forms.Field) -> dict:
    schema: dict = {}
    if isinstance(field, forms.BooleanField):
        schema = {"type": "boolean"}
        if field.required:
            schema["const"] = True
    elif isinstance(field, forms.MultipleChoiceField):
        schema = {"type": "array", "items": {"oneOf": _options(field)}, "uniqueItems": True}
        if field.required:
            schema["minItems"] = 1
    elif isinstance(field, forms.ChoiceField):
        schema = {"type": "string", "oneOf": _options(field)}
    elif isinstance(field, forms.DateField):
        schema = {"type": "string", "format": "date"}
    elif isinstance(field, forms.CharField):
        schema = {"type": "string"}
        if isinstance(field, forms.URLField):
            schema.update(format="uri", pattern="^https?://")
        elif isinstance(field, forms.EmailField):
            schema["format"] = "email"
        if field.min_length or field.required:
            schema["minLength"] = field.min_length or 1
        if field.max_length:
            schema["maxLength"] = field.max_length
    schema["title"] = str(field.label or "")
    if field.help_text:
        schema["description"] = str(field.help_text)
    return schema


def _options(field: forms.ChoiceField) -> list[dict]:
    return [{"const": str(value), "title": str(label)} for value, label in field.choices if value != ""]


def access_form_schema(release: ModelRelease, *, base_url: str) -> dict:
    form = AccessRequestForm(release=release, api=True)
    properties = {"repo_id": {"type": "string", "const": release.repo_id, "title": _("Release")}}
    required = ["repo_id"]
    for name in [*REQUEST_FIELDS, "accept_license", "noncommercial_attested"]:
        field = form.fields[name]
        properties[name] = {**field_schema(field), **EXTRA.get(name, {})}
        if field.required:
            required.append(name)
    language = translation.get_language() or ""
    answers, answers_required = {}, []
    uploads = []
    for question in form.questions:
        if question.kind == AccessQuestion.Kind.FILE:
            options = question.options or {}
            uploads.append(
                {
                    "question": question.key,
                    "title": question.label(language),
                    "description": question.help(language),
                    "required": question.required,
                    "max_size": options.get("max_size") or questions.DEFAULT_MAX_UPLOAD,
                    "media_types": [questions.FILE_TYPES[t][0] for t in options.get("types", questions.FILE_TYPES)],
                }
            )
            continue
        field = form.fields[questions.field_name(question.key)]
        answers[question.key] = field_schema(field)
        if field.required:
            answers_required.append(question.key)
    properties["answers"] = {
        "type": "object",
        "title": _("Answers to this release's own questions"),
        "properties": answers,
        "required": answers_required,
        "additionalProperties": False,
    }
    if answers_required:
        required.append("answers")
    properties["draft"] = {
        "type": "boolean",
        "default": False,
        "title": _("Create the request as a draft, to upload files to it before submitting it"),
    }
    license_obj = release.license
    submit = base_url + reverse("api-requests")
    return {
        "$schema": DIALECT,
        "$id": base_url
        + reverse("api-model-access-form", kwargs={"namespace": release.namespace, "name": release.name}),
        "title": _("Request access to %(repo)s") % {"repo": release.repo_id},
        "description": _(
            "POST a JSON object of this shape to %(url)s with your token. Answer file questions (x-uploads) by "
            'creating the request with "draft": true, uploading each file to its attachments URL, then POSTing '
            "to its submit URL."
        )
        % {"url": submit},
        "type": "object",
        "properties": properties,
        "required": required,
        "x-license": {
            "slug": license_obj.slug,
            "version": license_obj.version,
            "title": license_obj.title,
            "text": license_obj.text,
            "summary_of_changes": license_obj.summary_of_changes,
        },
        "x-submit": {"method": "POST", "url": submit},
        "x-uploads": uploads,
        "x-attachments-url": submit + "/{id}/attachments",
        "x-draft-submit-url": submit + "/{id}/submit",
    }
