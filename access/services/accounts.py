"""What an account keeps about its person beyond access: the language they read."""

from __future__ import annotations

from django.conf import settings
from django.utils.translation import get_supported_language_variant

from ..models import User
from .base import Actor, NotFound, require_user


def supported_language(code: str | None) -> str:
    """The portal's language for a code a browser or a form gave (`zh-CN` → `zh-hans`), or "" for none."""
    try:
        return get_supported_language_variant(code or "") if code else ""
    except LookupError:
        return ""


def user_set_language(*, actor: Actor, user: User, language: str) -> User:
    """The person chose a language in the interface: the account remembers it, and its emails follow."""
    if require_user(actor).pk != user.pk:
        raise NotFound("Not found.")
    language = supported_language(language)
    if language and language != user.language and language in dict(settings.LANGUAGES):
        User.objects.filter(pk=user.pk).update(language=language)
        user.language = language
    return user
