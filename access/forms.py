from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .models import AccessRequest, ApiToken, ModelRelease, ReasonTemplate
from .services import REQUEST_FIELDS
from .text import clean_text

INTENDED_USE_MIN = 100


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

    review = forms.BooleanField(
        label=_("Reviewer access"),
        required=False,
        help_text=_("Lets scripts decide requests and revoke grants through the API. Asks for your password again."),
    )

    class Meta:
        model = ApiToken
        fields = ["name"]
        labels = {"name": _("Name")}
        help_texts = {"name": _("Where you will use it, e.g. 'cluster download'.")}

    def __init__(self, *args, reviewer: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if not reviewer:
            del self.fields["review"]

    def clean_name(self):
        return clean_text(self.cleaned_data["name"], multiline=False)

    def clean_expires_at(self):
        value = self.cleaned_data.get("expires_at")
        if value is None:
            return None
        if value <= timezone.localdate():
            raise ValidationError(_("Choose a date in the future."), code="past")
        return timezone.make_aware(timezone.datetime.combine(value, timezone.datetime.min.time()))


class WebhookEndpointForm(forms.Form):
    url = forms.URLField(
        label=_("URL"), max_length=1000, assume_scheme="https", help_text=_("An https:// URL on a public address.")
    )
    description = forms.CharField(label=_("Description"), max_length=200, required=False)
    events = forms.MultipleChoiceField(
        label=_("Events"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("None ticked: every event."),
    )
    release = forms.ModelChoiceField(
        label=_("Release"),
        queryset=ModelRelease.objects.filter(access=ModelRelease.Access.GATED).order_by("repo_id"),
        required=False,
        empty_label=_("Every release"),
    )

    def __init__(self, *args, event_types=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["events"].choices = [(name, name) for name in event_types]
