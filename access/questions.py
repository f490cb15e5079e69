"""A release's own questions: the form field each kind becomes, the rules of its options, what an uploaded file
may be, and how an answer is shown. The web form and the API both validate through `access.forms`, which builds
its fields here, so both channels accept and refuse exactly the same answers."""

from __future__ import annotations

import datetime
import re

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django_countries import countries

from . import inputs
from .models import AccessQuestion
from .text import clean_text

Kind = AccessQuestion.Kind

FIELD_PREFIX = "answers."
SHORT_TEXT_MAX = 300
LONG_TEXT_MAX = 5000
URL_MAX = 500
MAX_CHOICES = 50
# Questions are ordered by position; a form has a few dozen at most.
MAX_POSITION = 10_000
# Uploads: what a reviewer may be asked to open, recognised by their first bytes, never by the name or the
# Content-Type the client claims.
FILE_TYPES = {
    "pdf": ("application/pdf", (b"%PDF-",), ".pdf"),
    "png": ("image/png", (b"\x89PNG\r\n\x1a\n",), ".png"),
    "jpeg": ("image/jpeg", (b"\xff\xd8\xff",), ".jpg"),
}
DEFAULT_MAX_UPLOAD = 10 * 1024 * 1024
HARD_MAX_UPLOAD = 25 * 1024 * 1024
FILENAME_UNSAFE = re.compile(r"[^\w.\- ]+")


def field_name(key: str) -> str:
    return FIELD_PREFIX + key


# --- Options a release manager sets ----------------------------------------------------------------------


def clean_options(kind: str, options: dict) -> dict:
    """The options that matter for a kind, checked; raises ValidationError naming what is wrong."""
    options = options or {}
    if kind in (Kind.CHOICE, Kind.MULTIPLE_CHOICE):
        choices, seen = [], set()
        for choice in options.get("choices") or []:
            value = str(choice.get("value", "")).strip()
            label_en = clean_text(str(choice.get("label_en") or value), multiline=False).strip()
            label_zh = clean_text(str(choice.get("label_zh") or ""), multiline=False).strip()
            if not re.fullmatch(r"[\w.-]{1,60}", value):
                raise ValidationError(
                    _("Choice values are 1–60 letters, digits, '.', '-' or '_': %(v)s") % {"v": value}
                )
            if value in seen:
                raise ValidationError(_("The choice %(v)s is listed twice.") % {"v": value})
            seen.add(value)
            choices.append({"value": value, "label_en": label_en[:200], "label_zh": label_zh[:200]})
        if not 2 <= len(choices) <= MAX_CHOICES:
            raise ValidationError(_("A choice question needs between 2 and %(n)d choices.") % {"n": MAX_CHOICES})
        return {"choices": choices}
    if kind == Kind.LONG_TEXT:
        refusal = _("Lengths must satisfy 0 ≤ minimum ≤ maximum ≤ %(n)d.") % {"n": LONG_TEXT_MAX}
        low = _int(options.get("min_length"), 0, low=0, high=LONG_TEXT_MAX, refusal=refusal)
        high = _int(options.get("max_length"), LONG_TEXT_MAX, low=1, high=LONG_TEXT_MAX, refusal=refusal)
        if low > high:
            raise ValidationError(refusal)
        return {"min_length": low, "max_length": high}
    if kind == Kind.FILE:
        refusal = _("The size limit must be at most %(n)d MiB.") % {"n": HARD_MAX_UPLOAD // 2**20}
        size = _int(options.get("max_size"), DEFAULT_MAX_UPLOAD, low=1, high=HARD_MAX_UPLOAD, refusal=refusal)
        types = [t for t in FILE_TYPES if t in (options.get("types") or list(FILE_TYPES))]
        if not types:
            raise ValidationError(_("Allow at least one of PDF, PNG and JPEG."))
        return {"max_size": size, "types": types}
    return {}


def _int(value, default: int, *, low: int, high: int, refusal: str) -> int:
    """An option's number (the default when unset), within its bounds; else the option's own refusal."""
    if value in (None, ""):
        return default
    try:
        return inputs.integer(value, low=low, high=high)
    except inputs.InputError as exc:
        raise ValidationError(f"{refusal} {exc}" if exc.code == "invalid_number" else refusal) from None


# --- The form field each kind becomes ---------------------------------------------------------------------


class CleanTextField(forms.CharField):
    """Free text through the one free-text rule of access.text."""

    def __init__(self, *, multiline: bool, **kwargs):
        self.multiline = multiline
        super().__init__(**kwargs)

    def to_python(self, value):
        value = super().to_python(value)
        return clean_text(value, multiline=self.multiline) if value else value


class UploadField(forms.FileField):
    """A PDF, PNG or JPEG under the question's size limit, recognised by its content."""

    def __init__(self, *, question: AccessQuestion, **kwargs):
        self.question = question
        super().__init__(**kwargs)

    def clean(self, data, initial=None):
        value = super().clean(data, initial)
        if value:
            check_upload(self.question, value)
        return value


def question_field(question: AccessQuestion, language: str) -> forms.Field:
    common = {
        "label": question.label(language),
        "help_text": question.help(language),
        "required": question.required,
    }
    kind, options = question.kind, question.options or {}
    if kind == Kind.SHORT_TEXT:
        return CleanTextField(multiline=False, max_length=SHORT_TEXT_MAX, **common)
    if kind == Kind.LONG_TEXT:
        high = options.get("max_length") or LONG_TEXT_MAX
        return CleanTextField(
            multiline=True,
            min_length=options.get("min_length") or None,
            max_length=high,
            widget=forms.Textarea(attrs={"rows": 4, "maxlength": high}),
            **common,
        )
    if kind == Kind.CHOICE:
        return forms.ChoiceField(choices=question.choices(language), widget=forms.RadioSelect, **common)
    if kind == Kind.MULTIPLE_CHOICE:
        return forms.MultipleChoiceField(
            choices=question.choices(language), widget=forms.CheckboxSelectMultiple, **common
        )
    if kind == Kind.COUNTRY:
        return forms.ChoiceField(choices=[("", gettext_lazy("Choose…")), *countries], **common)
    if kind == Kind.DATE:
        return inputs.DayInput(**common)
    if kind == Kind.ATTESTATION:
        field = forms.BooleanField(**common)
        field.error_messages["required"] = _("Tick this box to apply.")
        return field
    if kind == Kind.URL:
        return forms.URLField(
            max_length=URL_MAX, assume_scheme="https", validators=[URLValidator(schemes=["http", "https"])], **common
        )
    if kind == Kind.EMAIL:
        return forms.EmailField(max_length=254, **common)
    if kind == Kind.FILE:
        accept = ",".join(FILE_TYPES[t][0] for t in options.get("types", FILE_TYPES))
        return UploadField(question=question, widget=forms.ClearableFileInput(attrs={"accept": accept}), **common)
    raise ValueError(kind)


def to_json(question: AccessQuestion, value):
    """A cleaned form value as it is stored and sent back by the API."""
    if isinstance(value, datetime.date):
        return value.isoformat()
    if question.kind == Kind.ATTESTATION:
        return bool(value)
    if value in (None, "", []):
        return None
    return value


# --- Uploads ----------------------------------------------------------------------------------------------


def check_upload(question: AccessQuestion, upload) -> str:
    """The media type of an uploaded file, or ValidationError when it is too big or not an allowed type."""
    return check_file(upload, question.options or {})


def check_file(upload, options: dict | None = None) -> str:
    """The media type of an uploaded file, held to `options` (max_size, types; the defaults otherwise), or
    ValidationError: the one rule of every upload, to a question or elsewhere."""
    options = options or {}
    limit = options.get("max_size") or DEFAULT_MAX_UPLOAD
    if upload.size > limit:
        raise ValidationError(
            _("The file is %(size)s; the limit is %(limit)s.") % {"size": _mib(upload.size), "limit": _mib(limit)},
            code="too_big",
        )
    if upload.size == 0:
        raise ValidationError(_("The file is empty."), code="empty")
    upload.seek(0)
    head = upload.read(16)
    upload.seek(0)
    allowed = options.get("types") or list(FILE_TYPES)
    for name in allowed:
        media_type, magics, _ext = FILE_TYPES[name]
        if any(head.startswith(magic) for magic in magics):
            return media_type
    raise ValidationError(
        _("Upload a %(types)s file.") % {"types": _(" or ").join(t.upper() for t in allowed)}, code="file_type"
    )


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def safe_filename(name: str, media_type: str) -> str:
    """A file name fit for a storage key and a download header: the base name, plain characters, the right
    extension for its content."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = FILENAME_UNSAFE.sub("_", clean_text(base, multiline=False) if base else "").strip(" ._")[:100] or "upload"
    ext = next(e for t, (m, _magic, e) in FILE_TYPES.items() if m == media_type)
    stem = base.rsplit(".", 1)[0] if "." in base else base
    return f"{stem}{ext}"


# --- Showing answers --------------------------------------------------------------------------------------


def display(question: AccessQuestion, value, language: str = "", attachments: dict | None = None) -> str:
    """An answer as text for reviewers, exports and the search index."""
    if value in (None, "", []):
        return ""
    if question.kind == Kind.ATTESTATION:
        return _("Yes") if value else _("No")
    if question.kind in (Kind.CHOICE, Kind.MULTIPLE_CHOICE):
        labels = dict(question.choices(language))
        values = value if isinstance(value, list) else [value]
        return ", ".join(labels.get(str(v), str(v)) for v in values)
    if question.kind == Kind.COUNTRY:
        return f"{countries.name(value)} ({value})"
    if question.kind == Kind.FILE:
        attachment = (attachments or {}).get(value)
        return attachment.filename if attachment is not None else str(value)
    return str(value)


def search_text(pairs) -> str:
    """What the reviewer queue searches for a request's answers: every value and its English label."""
    parts = []
    for question, value, attachments in pairs:
        text = display(question, value, "en", attachments)
        if text:
            parts.append(text if text == str(value) else f"{value} {text}")
    return "\n".join(parts)[:20_000]
