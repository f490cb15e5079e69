"""The one cleaning rule for free text from outside (names, answers, reasons, token names), on every channel."""

from __future__ import annotations

import unicodedata

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

# Bidirectional overrides and isolates can make a name display differently from what it is.
BIDI_CONTROLS = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C)}


def clean_text(value: str, *, multiline: bool, name: bool = False) -> str:
    """Refuse control characters (and, on one-line fields, bidi controls; in names, emoji and other symbols);
    normalise to NFC."""
    allowed = {"\n", "\r", "\t"} if multiline else set()
    for ch in value:
        if ch in allowed:
            continue
        category = unicodedata.category(ch)
        if category in ("Cc", "Cs", "Co", "Cn") or (not multiline and ch in BIDI_CONTROLS):
            raise ValidationError(_("Remove control or direction-changing characters."), code="control_characters")
        # U+200C (zero-width non-joiner) is part of correctly written Persian names.
        if name and ((category in ("So", "Sk", "Cf") and ch != "\u200c") or ch in "<>{}[]\\|"):
            raise ValidationError(_("Use letters, not symbols or emoji."), code="symbols")
    return unicodedata.normalize("NFC", value.strip())


# Unicode's control characters (category Cc: U+0000-U+001F and U+007F-U+009F) but tab and newline, which the
# whitespace collapse below turns into spaces.
_DROP_CONTROLS = {c: None for c in (*range(0x20), *range(0x7F, 0xA0)) if chr(c) not in "\t\n"}


def printable(text: str) -> str:
    """Text fit for one line of a header or a terminal: control characters (ANSI escapes included) dropped,
    runs of whitespace collapsed."""
    return " ".join(str(text).translate(_DROP_CONTROLS).split())
