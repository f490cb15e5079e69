"""The one reading of numbers and days that come from outside: query strings, JSON bodies, form fields and path
parts. Every such value has bounds, and anything outside them (a page past 2**64, a day in year 1 or 9999 that
date arithmetic would carry off the calendar, an integer the database column cannot hold) is refused here with a
stable code, before it reaches a query or a calculation.

`integer` and `day` raise `InputError`; `IntegerInput` and `DayInput` are the same rules as form fields, so the
web forms and the API refuse the same values with the same words. Services turn `InputError` into their own
refusal (`services.base.number`), the API's exception handler answers it as a 400, and the few web views that
read query strings show it as a page error."""

from __future__ import annotations

import re
from datetime import date, datetime

from django import forms
from django.core.exceptions import ValidationError
from django.utils.dateparse import parse_date
from django.utils.translation import gettext as _

# Days the portal takes: far enough from date.min and date.max that any arithmetic on them (a period before,
# the week around, a time zone) stays on the calendar, wide enough for every real answer, filter and expiry.
FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(2999, 12, 31)
# The largest value a PostgreSQL integer column holds; no count, position or page of the portal comes near it.
MAX_INT = 2**31 - 1

INTEGER_RE = re.compile(r"^[+-]?[0-9]+(?:\.0*)?$")
# More digits than any bound has: refused as out of range without handing Python's int() thousands of digits.
MAX_DIGITS = 30


class InputError(ValueError):
    """A value that is not what its parameter takes; `code` is stable for API clients, the message for people."""

    def __init__(self, message: str, code: str, *, field: str | None = None):
        super().__init__(message)
        self.code = code
        self.field = field


def _out_of_range(name: str | None, low, high) -> InputError:
    if name:
        message = _("“%(name)s” must be from %(low)s to %(high)s.") % {"name": name, "low": low, "high": high}
    else:
        message = _("Enter a value from %(low)s to %(high)s.") % {"low": low, "high": high}
    return InputError(message, "number_out_of_range", field=name)


def integer(value, *, low: int, high: int, name: str | None = None) -> int:
    """A whole number from low to high: an int (not a bool), or text of ASCII digits with an optional sign."""
    if isinstance(value, bool):
        raise _not_a_number(name)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and INTEGER_RE.match(value.strip()):
        digits = value.strip().split(".")[0]
        if len(digits.lstrip("+-").lstrip("0")) > MAX_DIGITS:
            raise _out_of_range(name, low, high)
        number = int(digits)
    else:
        raise _not_a_number(name)
    if not low <= number <= high:
        raise _out_of_range(name, low, high)
    return number


def _not_a_number(name: str | None) -> InputError:
    if name:
        return InputError(_("“%(name)s” must be a whole number.") % {"name": name}, "invalid_number", field=name)
    return InputError(_("Enter a whole number."), "invalid_number")


def day(value, *, name: str | None = None, first: date = FIRST_DAY, last: date = LAST_DAY) -> date:
    """A real day, written YYYY-MM-DD, from first to last (by default the portal's calendar, 1900–2999)."""
    if isinstance(value, date):
        parsed = value.date() if isinstance(value, datetime) else value
    else:
        try:
            parsed = parse_date(str(value).strip()) if isinstance(value, str) and len(value) <= 40 else None
        except ValueError:  # the right shape but no such day: 2024-02-30
            parsed = None
    if parsed is None:
        if name:
            message = _("The “%(name)s” date is not a real day; write it as YYYY-MM-DD, e.g. 2024-02-29.") % {
                "name": name
            }
        else:
            message = _("Enter a real day as YYYY-MM-DD, e.g. 2024-02-29.")
        raise InputError(message, "invalid_date", field=name)
    if not first <= parsed <= last:
        if name:
            message = _("The “%(name)s” date must be from %(first)s to %(last)s.") % {
                "name": name,
                "first": first.isoformat(),
                "last": last.isoformat(),
            }
        else:
            message = _("Enter a day from %(first)s to %(last)s.") % {
                "first": first.isoformat(),
                "last": last.isoformat(),
            }
        raise InputError(message, "date_out_of_range", field=name)
    return parsed


class IntegerInput(forms.IntegerField):
    """A form's whole number, read by `integer` within the bounds the field is given (both required)."""

    def __init__(self, *, min_value: int, max_value: int, **kwargs):
        super().__init__(min_value=min_value, max_value=max_value, **kwargs)

    def to_python(self, value):
        if value in self.empty_values:
            return None
        try:
            return integer(value, low=self.min_value, high=self.max_value)
        except InputError as exc:
            raise ValidationError(str(exc), code=exc.code) from None


class DayInput(forms.DateField):
    """A form's day, read by `day`: YYYY-MM-DD within the portal's calendar."""

    widget = forms.DateInput(attrs={"type": "date", "min": FIRST_DAY.isoformat(), "max": LAST_DAY.isoformat()})

    def to_python(self, value):
        if value in self.empty_values:
            return None
        try:
            return day(value)
        except InputError as exc:
            raise ValidationError(str(exc), code=exc.code) from None
