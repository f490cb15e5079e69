"""Emails are subject/text/html template triplets under templates/emails/<name>.{subject.txt,txt,html}.

What people wrote reaches emails only through the free-text rule (access.text); rendering applies its line-break
half once more to the whole message, so a row stored before the rule, or written by code that went around it,
cannot put a U+2028 (or any line break but a newline) into a body, nor any line break into a subject."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.utils import translation

from . import metrics
from .models import OutboundEmail, User
from .site import site_name
from .text import one_line, plain_lines


def render(template: str, context: dict) -> tuple[str, str, str]:
    context = {"site_url": settings.SITE_URL, "site_name": site_name(), **context}
    subject = one_line(render_to_string(f"emails/{template}.subject.txt", context))
    text = plain_lines(render_to_string(f"emails/{template}.txt", context))
    html = plain_lines(render_to_string(f"emails/{template}.html", context))
    return settings.ACCOUNT_EMAIL_SUBJECT_PREFIX + subject, text, html


def language_of(address: str) -> str:
    """The language the account with this address reads (the one it last chose), else the portal's default."""
    chosen = User.objects.filter(email__iexact=address).values_list("language", flat=True).first()
    return chosen or settings.LANGUAGE_CODE


def send_once(*, dedupe_key: str, template: str, to: str, context: dict, language: str | None = None) -> bool:
    """Send unless an email with this key was already sent; returns whether it sent. Written in `language`, or
    in the language of the account the address belongs to.

    The record and the send share a transaction: a failed send rolls the record back so a retry sends again.
    """
    with translation.override(language or language_of(to)):
        subject, text, html = render(template, context)
    try:
        with transaction.atomic():
            OutboundEmail.objects.create(dedupe_key=dedupe_key, template=template, to=to, subject=subject[:300])
            message = EmailMultiAlternatives(subject, text, settings.DEFAULT_FROM_EMAIL, [to])
            message.attach_alternative(html, "text/html")
            try:
                message.send()
            except Exception:
                metrics.EMAILS.labels(template, "failed").inc()
                raise
    except IntegrityError:
        return False
    metrics.EMAILS.labels(template, "sent").inc()
    return True
