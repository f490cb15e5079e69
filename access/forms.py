from __future__ import annotations

import unicodedata

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .models import AccessRequest, ApiToken, ReasonTemplate
from .services import REQUEST_FIELDS

INTENDED_USE_MIN = 100
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


class AccessRequestForm(forms.ModelForm):
    accept_license = forms.BooleanField(
        label=_("I have read and accept the license above"),
        error_messages={"required": _("You must accept the license to apply.")},
    )
    noncommercial_attested = forms.BooleanField(
        label=_("I will use the model for non-commercial research only"),
        error_messages={"required": _("Access is only for non-commercial research.")},
    )

    class Meta:
        model = AccessRequest
        fields = REQUEST_FIELDS
        labels = {
            "full_name": _("Full name"),
            "affiliation": _("Affiliation"),
            "organization_type": _("Organization type"),
            "country": _("Country"),
            "role": _("Role or position"),
            "intended_use": _("Intended non-commercial research use"),
            "publications": _("Publications or profile links (optional)"),
        }
        help_texts = {"publications": _("One link per line: Google Scholar, ORCID, papers, lab page.")}
        widgets = {
            "intended_use": forms.Textarea(attrs={"rows": 6, "maxlength": 5000}),
            "publications": forms.Textarea(attrs={"rows": 3, "maxlength": 2000}),
            "full_name": forms.TextInput(attrs={"maxlength": 200, "autocomplete": "name"}),
            "affiliation": forms.TextInput(attrs={"maxlength": 300, "autocomplete": "organization"}),
            "role": forms.TextInput(attrs={"maxlength": 200, "autocomplete": "organization-title"}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["organization_type"].choices = [("", _("Choose…")), *AccessRequest.OrganizationType.choices]
        # Formatted per request, in the language of the request.
        self.fields["intended_use"].help_text = gettext("At least %(n)d characters: what you will study, and how.") % {
            "n": INTENDED_USE_MIN
        }

    def _line(self, name):
        return clean_text(self.cleaned_data.get(name, ""), multiline=False, name=True)

    def clean_full_name(self):
        return self._line("full_name")

    def clean_affiliation(self):
        return self._line("affiliation")

    def clean_role(self):
        return self._line("role")

    def clean_intended_use(self):
        value = clean_text(self.cleaned_data.get("intended_use", ""), multiline=True)
        if len(value) < INTENDED_USE_MIN:
            raise ValidationError(
                _("Describe your research in at least %(n)d characters (you wrote %(have)d).")
                % {"n": INTENDED_USE_MIN, "have": len(value)},
                code="too_short",
            )
        if len(value) > 5000:
            raise ValidationError(_("Keep it under 5000 characters."), code="too_long")
        return value

    def clean_publications(self):
        value = clean_text(self.cleaned_data.get("publications", ""), multiline=True)
        if len(value) > 2000:
            raise ValidationError(_("Keep it under 2000 characters."), code="too_long")
        return value


class AnswerForm(forms.Form):
    answer = forms.CharField(
        label=_("Your answer"), widget=forms.Textarea(attrs={"rows": 5}), max_length=5000, min_length=10
    )

    def clean_answer(self):
        return clean_text(self.cleaned_data["answer"], multiline=True)


class DecisionForm(forms.Form):
    ACTIONS = [("approve", _("Approve")), ("reject", _("Reject")), ("request_info", _("Ask for information"))]
    action = forms.ChoiceField(choices=ACTIONS, label=_("Action"))
    reason = forms.CharField(
        label=_("Reason or question (shown to the applicant)"),
        widget=forms.Textarea(attrs={"rows": 4}),
        required=False,
        max_length=5000,
    )
    template = forms.ModelChoiceField(
        queryset=ReasonTemplate.objects.all(), required=False, label=_("Or use a saved reason")
    )

    def clean(self):
        data = super().clean()
        reason = clean_text(data.get("reason") or "", multiline=True)
        if not reason and data.get("template"):
            reason = data["template"].text
        if data.get("action") in ("reject", "request_info") and not reason:
            self.add_error("reason", _("Give a reason; the applicant will see it."))
        data["reason"] = reason
        return data


class BulkDecisionForm(forms.Form):
    action = forms.ChoiceField(choices=[("approve", _("Approve selected")), ("reject", _("Reject selected"))])
    reason = forms.CharField(required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 2}))
    ids = forms.CharField(widget=forms.MultipleHiddenInput, required=False)

    def clean(self):
        data = super().clean()
        if data.get("action") == "reject" and not (data.get("reason") or "").strip():
            self.add_error("reason", _("Give a reason; the applicants will see it."))
        return data


class RevokeForm(forms.Form):
    reason = forms.CharField(
        label=_("Reason (shown to the researcher)"), widget=forms.Textarea(attrs={"rows": 3}), max_length=5000
    )

    def clean_reason(self):
        return clean_text(self.cleaned_data["reason"], multiline=True)


class TokenForm(forms.ModelForm):
    expires_at = forms.DateField(
        label=_("Expires on (optional)"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )

    class Meta:
        model = ApiToken
        fields = ["name"]
        labels = {"name": _("Name")}
        help_texts = {"name": _("Where you will use it, e.g. 'cluster download'.")}

    def clean_name(self):
        return clean_text(self.cleaned_data["name"], multiline=False)

    def clean_expires_at(self):
        value = self.cleaned_data.get("expires_at")
        if value is None:
            return None
        if value <= timezone.localdate():
            raise ValidationError(_("Choose a date in the future."), code="past")
        return timezone.make_aware(timezone.datetime.combine(value, timezone.datetime.min.time()))
