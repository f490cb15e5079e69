"""The one cleaning rule for free text from outside (names, answers, reasons, token names), on every channel."""

from __future__ import annotations

import unicodedata

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

# Bidirectional overrides and isolates can make a name display differently from what it is.
BIDI_CONTROLS = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C)}
# Everything that ends a line for Python's str.splitlines(), and so for mail libraries and many mail readers and
# terminals. U+2028 (LINE SEPARATOR) and U+2029 (PARAGRAPH SEPARATOR) are not control characters (categories Zl and
# Zp) and come with text pasted from word processors and web pages: multi-line fields take them as the newlines
# they mean. The others are control characters, refused on every field as before (a multi-line field keeps
# only newline, carriage return and tab).
LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
_SEPARATORS_AS_NEWLINES = str.maketrans({"\u2028": "\n", "\u2029": "\n"})
_LINE_BREAKS_AS_NEWLINES = str.maketrans({ch: "\n" for ch in LINE_BREAKS if ch not in "\n\r"})


def clean_text(value: str, *, multiline: bool, name: bool = False) -> str:
    """Refuse control characters and line breaks on one-line fields (and there bidi controls; in names, emoji and
    other symbols); on multi-line fields refuse control characters and turn U+2028/U+2029 into newlines;
    normalise to NFC."""
    if multiline:
        value = value.translate(_SEPARATORS_AS_NEWLINES)
    allowed = {"\n", "\r", "\t"} if multiline else set()
    for ch in value:
        if ch in allowed:
            continue
        if not multiline and ch in LINE_BREAKS:
            raise ValidationError(_("Keep this to one line: remove the line breaks."), code="line_breaks")
        category = unicodedata.category(ch)
        if category in ("Cc", "Cs", "Co", "Cn") or (not multiline and ch in BIDI_CONTROLS):
            raise ValidationError(_("Remove control or direction-changing characters."), code="control_characters")
        # U+200C (zero-width non-joiner) is part of correctly written Persian names.
        if name and ((category in ("So", "Sk", "Cf") and ch != "\u200c") or ch in "<>{}[]\\|"):
            raise ValidationError(_("Use letters, not symbols or emoji."), code="symbols")
    return unicodedata.normalize("NFC", value.strip())


def plain_lines(text: str) -> str:
    """Text whose only line breaks are newlines (and carriage returns): what the rule above lets into multi-line
    fields. Emails pass everything they render through it, so text stored before the rule, or by code that went
    around it, still reaches a mail reader only as plain lines."""
    return text.translate(_LINE_BREAKS_AS_NEWLINES)


def one_line(text: str) -> str:
    """Text as one line: every line break, whatever its kind, becomes a space."""
    return " ".join(part.strip() for part in text.splitlines()).strip()


# Unicode's control characters (category Cc: U+0000-U+001F and U+007F-U+009F) but tab and newline, which the
# whitespace collapse below turns into spaces.
_DROP_CONTROLS = {c: None for c in (*range(0x20), *range(0x7F, 0xA0)) if chr(c) not in "\t\n"}


def printable(text: str) -> str:
    """Text fit for one line of a header or a terminal: control characters (ANSI escapes included) dropped,
    runs of whitespace collapsed."""
    return " ".join(str(text).translate(_DROP_CONTROLS).split())
