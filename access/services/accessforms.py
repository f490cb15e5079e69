"""A release's access form: the extra questions a release manager asks. Once the release has requests, a change
makes a new version of the question and retires the old one, so every answer keeps the question it answered."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import questions
from ..audit import audit
from ..models import QUESTION_KEY_RE, AccessQuestion, ModelRelease
from .base import Actor, InvalidTransition, ServiceError, clean, number, require_release_manager

# What a release manager sets; the key names the question and never changes.
QUESTION_FIELDS = ("kind", "label_en", "label_zh", "help_en", "help_zh", "required", "position", "options")


def _clean_fields(fields: dict) -> dict:
    unknown = set(fields) - set(QUESTION_FIELDS)
    if unknown:
        raise ServiceError(_("These fields cannot be set: %(f)s") % {"f": ", ".join(sorted(unknown))})
    out = dict(fields)
    if "kind" in out and out["kind"] not in AccessQuestion.Kind.values:
        raise ServiceError(_("Unknown kind of question."), "invalid", field="kind")
    for name, multiline, limit in (
        ("label_en", False, 300),
        ("label_zh", False, 300),
        ("help_en", True, 2000),
        ("help_zh", True, 2000),
    ):
        if name in out:
            out[name] = clean(out[name] or "", field=name, multiline=multiline, max_length=limit)
    if "label_en" in out and not out["label_en"]:
        raise ServiceError(_("Every question needs an English label."), "label_required", field="label_en")
    if "position" in out:
        out["position"] = number(out["position"] or 0, field="position", low=0, high=questions.MAX_POSITION)
    if "required" in out:
        out["required"] = bool(out["required"])
    return out


def _options(kind: str, options: dict | None) -> dict:
    try:
        return questions.clean_options(kind, options or {})
    except ValidationError as exc:
        raise ServiceError(" ".join(exc.messages), "invalid_options", field="options") from None


def question_create(*, actor: Actor, release: ModelRelease, key: str, fields: dict) -> AccessQuestion:
    """Add a question to a gated release's form (at the end unless a position is given)."""
    require_release_manager(actor)
    if not release.is_gated:
        raise ServiceError(_("Only gated releases have an access form."), "not_gated")
    if not re.fullmatch(QUESTION_KEY_RE.strip("^$"), key or ""):
        raise ServiceError(
            _("A question id is 1–40 lower-case letters, digits or '_', starting with a letter."),
            "invalid",
            field="key",
        )
    if key in {"repo_id", "answers", "draft"}:
        raise ServiceError(_("This id is reserved."), "invalid", field="key")
    fields = _clean_fields({"required": True, **fields})
    if "kind" not in fields:
        raise ServiceError(_("Choose a kind of question."), "invalid", field="kind")
    fields["options"] = _options(fields["kind"], fields.get("options"))
    with transaction.atomic():
        ModelRelease.objects.select_for_update().get(pk=release.pk)
        if AccessQuestion.objects.filter(release=release, key=key, retired_at__isnull=True).exists():
            raise ServiceError(_("This form already has a question with that id."), "question_exists", field="key")
        if "position" not in fields:
            last = AccessQuestion.objects.filter(release=release, retired_at__isnull=True).aggregate(p=Max("position"))
            fields["position"] = (last["p"] or 0) + 10
        version = (AccessQuestion.objects.filter(release=release, key=key).aggregate(v=Max("version"))["v"] or 0) + 1
        question = AccessQuestion.objects.create(release=release, key=key, version=version, **fields)
        audit(
            actor=actor,
            action="question.created",
            target=release,
            data={"key": key, "version": version, "kind": question.kind, "required": question.required},
        )
    return question


def question_update(*, actor: Actor, question: AccessQuestion, fields: dict) -> AccessQuestion:
    """Change a question. Until the release has requests it is edited in place; after that the change is a new
    version of the question and the old one is retired (its answers keep pointing at it)."""
    require_release_manager(actor)
    fields = _clean_fields(fields)
    with transaction.atomic():
        locked = AccessQuestion.objects.select_for_update().select_related("release").get(pk=question.pk)
        if locked.retired_at is not None:
            raise InvalidTransition(_("This question was replaced or removed; edit its current version."))
        kind = fields.get("kind", locked.kind)
        if "options" in fields or "kind" in fields:
            fields["options"] = _options(kind, fields.get("options", locked.options))
        changed = {name: value for name, value in fields.items() if getattr(locked, name) != value}
        if not changed:
            return locked
        if locked.release.access_requests.exists():
            locked.retired_at = timezone.now()
            locked.save(update_fields=["retired_at"])
            values = {name: getattr(locked, name) for name in QUESTION_FIELDS}
            current = AccessQuestion.objects.create(
                release=locked.release, key=locked.key, version=locked.version + 1, **{**values, **changed}
            )
        else:
            for name, value in changed.items():
                setattr(locked, name, value)
            locked.save(update_fields=list(changed))
            current = locked
        audit(
            actor=actor,
            action="question.updated",
            target=locked.release,
            data={
                "key": locked.key,
                "version": current.version,
                "from_version": locked.version,
                "fields": sorted(changed),
            },
        )
    return current


def question_retire(*, actor: Actor, question: AccessQuestion) -> None:
    """Take a question off the form. Answered ones are kept (retired) with their answers; others are deleted."""
    require_release_manager(actor)
    with transaction.atomic():
        locked = AccessQuestion.objects.select_for_update().select_related("release").get(pk=question.pk)
        if locked.retired_at is not None:
            return
        if locked.answers.exists() or locked.release.access_requests.exists():
            locked.retired_at = timezone.now()
            locked.save(update_fields=["retired_at"])
        else:
            locked.delete()
        audit(
            actor=actor,
            action="question.retired",
            target=locked.release,
            data={"key": locked.key, "version": locked.version},
        )
