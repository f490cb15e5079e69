from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone, translation
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from pypinyin import Style, lazy_pinyin, load_phrases_dict

from . import questions as q
from . import selectors
from .claims import AFFILIATION_KINDS
from .identities import KIND_LABELS
from .inputs import DayInput, IntegerInput
from .models import (
    AccessQuestion,
    AccessRequest,
    ApiToken,
    DecisionRule,
    FlawReport,
    Institution,
    License,
    ModelRelease,
    ReasonTemplate,
    ReleaseDocument,
)
from .services import REQUEST_FIELDS, ServiceError, parse_dois
from .text import clean_text

INTENDED_USE_MIN = 100
# What each kind of field takes in a JSON body (anything else is a string or null).
JSON_TYPES = {forms.BooleanField: (bool,), forms.MultipleChoiceField: (list,)}
# Country names whose characters pypinyin reads otherwise on their own (泊 pō, 勒 lēi).
load_phrases_dict({"尼泊尔": [["ní"], ["bó"], ["ěr"]], "加勒比": [["jiā"], ["lè"], ["bǐ"]]})


def pinyin_order(choices) -> list:
    """Country choices in the order a Chinese reader looks for them: by pinyin (阿富汗 a… before 中国 zhong…), the
    empty choice first. Unicode order would sort by the characters' code points."""
    choices = list(choices)
    blank = [c for c in choices if not c[0]]
    named = [c for c in choices if c[0]]
    return blank + sorted(named, key=lambda c: (lazy_pinyin(str(c[1]).strip(), style=Style.TONE3), str(c[1])))


class AccessRequestForm(forms.ModelForm):
    """The application form, and the one validator of applications: the web form renders it, and the API fills it
    from the JSON body (`api=True`, where file questions are answered by uploads to the request instead), so both
    refuse the same answers with the same errors under the same field names: the standard fields by name, the
    release's own questions as `answers.<question id>`."""

    accept_license = forms.BooleanField(
        label=_("I have read and accept the license above"),
        error_messages={"required": _("You must accept the license to apply.")},
    )
    noncommercial_attested = forms.BooleanField(
        label=_("I will use the model for non-commercial research only"),
        error_messages={"required": _("Access is only for non-commercial research.")},
    )
    # Shown when the release keeps a public register of uses (access.services.stewardship.register_fields).
    register_consent = forms.BooleanField(
        required=False, label=_("List my use in the public register of uses (you can withdraw this later)")
    )
    public_statement = forms.CharField(
        required=False,
        max_length=500,
        label=_("Public statement of use"),
        help_text=_("Shown publicly in the register; separate from your private intended use. At most 500 characters."),
        widget=forms.Textarea(attrs={"rows": 3, "maxlength": 500}),
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

    def __init__(
        self,
        *args,
        release=None,
        questions: list[AccessQuestion] | None = None,
        api=False,
        verified: dict[str, str] | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        # Fields filled in from verified facts ({field: who verified it}), marked so beside the field.
        for name, by in (verified or {}).items():
            self.fields[name].verified_by = by
        self.fields["organization_type"].choices = [("", _("Choose…")), *AccessRequest.OrganizationType.choices]
        if (translation.get_language() or "").startswith("zh"):
            self.fields["country"].choices = pinyin_order(self.fields["country"].choices)
        # Formatted per request, in the language of the request.
        self.fields["intended_use"].help_text = gettext("At least %(n)d characters: what you will study, and how.") % {
            "n": INTENDED_USE_MIN
        }
        # Counted as the applicant types (static/js/portal.js), against the same minimum clean() holds.
        self.fields["intended_use"].count_min = INTENDED_USE_MIN
        self.fields["intended_use"].widget.attrs["data-count-min"] = INTENDED_USE_MIN
        self.api = api
        if questions is None:
            questions = selectors.release_questions(release=release) if release is not None else []
        self.questions = questions
        language = translation.get_language() or ""
        for question in questions:
            if api and question.kind == AccessQuestion.Kind.FILE:
                continue  # uploaded to the request: POST /api/v1/access-requests/{id}/attachments
            self.fields[q.field_name(question.key)] = q.question_field(question, language)

    def standard_fields(self):
        return [self[name] for name in REQUEST_FIELDS]

    def question_fields(self):
        return [self[name] for name in self.fields if name.startswith(q.FIELD_PREFIX)]

    def answers(self) -> dict:
        """The cleaned answers to the release's questions (not the uploads), by question id."""
        by_key = {question.key: question for question in self.questions}
        return {
            key: q.to_json(by_key[key], self.cleaned_data.get(q.field_name(key)))
            for key in by_key
            if q.field_name(key) in self.fields and by_key[key].kind != AccessQuestion.Kind.FILE
        }

    def uploads(self) -> dict:
        return {
            question.key: self.cleaned_data[q.field_name(question.key)]
            for question in self.questions
            if question.kind == AccessQuestion.Kind.FILE and self.cleaned_data.get(q.field_name(question.key))
        }

    def _check_json_types(self) -> dict:
        """A JSON body can send any type: the wrong one is named as such (and the field sees no value), rather
        than coerced or handed to a field that expects text."""
        errors, data = {}, dict(self.data)
        for name, field in self.fields.items():
            value = data.get(name)
            if value is None:
                continue
            expected = next((types for kind, types in JSON_TYPES.items() if isinstance(field, kind)), (str,))
            if not isinstance(value, expected) or (
                isinstance(value, list) and not all(isinstance(v, str) for v in value)
            ):
                errors[name] = {bool: _("Expected true or false."), list: _("Expected a list of strings.")}.get(
                    expected[0], _("Expected a string.")
                )
                data[name] = None
        self.data = data
        return errors

    def full_clean(self):
        type_errors = self._check_json_types() if self.api and self.is_bound else {}
        super().full_clean()
        for name, message in type_errors.items():
            self._errors[name] = self.error_class([message])
            self.cleaned_data.pop(name, None)

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


class AttachmentForm(forms.Form):
    """An upload for one of the release's file questions, on the request page (a draft, or while the reviewer
    asks for more information). The file itself is checked by the service, with the question's rules."""

    question = forms.ChoiceField(label=_("Question"))
    file = forms.FileField(label=_("File (PDF, PNG or JPEG)"))

    def __init__(self, *args, file_questions=(), **kwargs):
        super().__init__(*args, **kwargs)
        language = translation.get_language() or ""
        self.fields["question"].choices = [(question.key, question.label(language)) for question in file_questions]


class LicenseAcceptForm(forms.Form):
    """Accepting a new license version on a grant: the version shown, "I accept" and the attestation."""

    version = forms.CharField(widget=forms.HiddenInput, max_length=40)
    accept_license = forms.BooleanField(
        label=_("I have read and accept this version of the license"),
        error_messages={"required": _("You must accept the license to keep downloading.")},
    )
    noncommercial_attested = forms.BooleanField(
        label=_("I will use the model for non-commercial research only"),
        error_messages={"required": _("Access is only for non-commercial research.")},
    )


class AnswerForm(forms.Form):
    answer = forms.CharField(
        label=_("Your answer"), widget=forms.Textarea(attrs={"rows": 5}), max_length=5000, min_length=10
    )

    def clean_answer(self):
        return clean_text(self.cleaned_data["answer"], multiline=True)


class DecisionForm(forms.Form):
    """One decision: the button pressed names the action (there is no default), the text box the reason or
    question; a saved reason of the same kind stands in when the box is left empty."""

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

    def __init__(self, *args, language: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.language = language  # the applicant's: a saved reason is given in it

    def clean(self):
        data = super().clean()
        reason = clean_text(data.get("reason") or "", multiline=True)
        template = data.get("template")
        if template is not None and template.kind != data.get("action"):
            self.add_error("template", _("That saved reason is for another action."))
        elif not reason and template is not None:
            reason = template.text_in(self.language)
        if data.get("action") in ("reject", "request_info") and not reason:
            self.add_error("reason", _("Give a reason; the applicant will see it."))
        data["reason"] = reason
        return data


class BulkDecisionForm(forms.Form):
    # No default: a bulk decision is chosen each time, never taken because it was preselected.
    action = forms.ChoiceField(
        choices=[("", _("Choose an action…")), ("approve", _("Approve selected")), ("reject", _("Reject selected"))],
        error_messages={"required": _("Choose an action: approve or reject.")},
    )
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
    confirm = forms.BooleanField(
        error_messages={"required": _("Confirm that you understand what revoking does and does not stop.")}
    )

    def __init__(self, *args, lifetimes: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        lifetimes = lifetimes or {}
        if lifetimes.get("batch_until"):
            label = gettext(
                "I understand: the portal refuses this researcher at once, but download links already handed out "
                "keep working — direct links for up to %(direct)s, and the links of the grant's current batch for "
                "%(left)s more (until %(until)s UTC)."
            ) % {
                "direct": lifetimes["direct"],
                "left": lifetimes["batch_left"],
                "until": f"{lifetimes['batch_until']:%Y-%m-%d %H:%M}",
            }
        else:
            label = gettext(
                "I understand: the portal refuses this researcher at once, but download links already handed out "
                "keep working — direct links for up to %(direct)s, batch links for up to %(batch)s."
            ) % {"direct": lifetimes.get("direct", ""), "batch": lifetimes.get("batch_max", "")}
        self.fields["confirm"].label = label

    def clean_reason(self):
        return clean_text(self.cleaned_data["reason"], multiline=True)


class TokenForm(forms.ModelForm):
    expires_at = DayInput(label=_("Expires on (optional)"), required=False)

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


class QuestionForm(forms.Form):
    """A release manager's question: what the service `question_create` / `question_update` take."""

    key = forms.RegexField(
        regex=r"^[a-z][a-z0-9_]{0,39}$",
        label=_("Question id"),
        help_text=_("Its name in the API's answers, e.g. irb_approval; lower case, digits and _; never changes."),
        max_length=40,
    )
    kind = forms.ChoiceField(label=_("Kind"), choices=AccessQuestion.Kind.choices)
    label_en = forms.CharField(label=_("Label (English)"), max_length=300)
    label_zh = forms.CharField(label=_("Label (Simplified Chinese)"), max_length=300, required=False)
    help_en = forms.CharField(
        label=_("Help text (English)"), required=False, widget=forms.Textarea(attrs={"rows": 2}), max_length=2000
    )
    help_zh = forms.CharField(
        label=_("Help text (Simplified Chinese)"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        max_length=2000,
    )
    required = forms.BooleanField(label=_("Required"), required=False, initial=True)
    position = IntegerInput(label=_("Position"), required=False, min_value=0, max_value=q.MAX_POSITION)
    choices = forms.CharField(
        label=_("Choices"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=_("Choice questions: one per line, “value | English label | 中文标签”."),
    )
    min_length = IntegerInput(
        label=_("Minimum length (long text)"), required=False, min_value=0, max_value=q.LONG_TEXT_MAX
    )
    max_length = IntegerInput(
        label=_("Maximum length (long text)"), required=False, min_value=1, max_value=q.LONG_TEXT_MAX
    )
    max_size_mib = IntegerInput(
        label=_("Size limit in MiB (file)"), required=False, min_value=1, max_value=q.HARD_MAX_UPLOAD // 2**20
    )
    types = forms.MultipleChoiceField(
        label=_("Allowed files"),
        required=False,
        choices=[("pdf", "PDF"), ("png", "PNG"), ("jpeg", "JPEG")],
        widget=forms.CheckboxSelectMultiple,
    )

    def __init__(self, *args, editing: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if editing:
            self.fields["key"].disabled = True

    @staticmethod
    def initial_for(question: AccessQuestion) -> dict:
        options = question.options or {}
        return {
            **{name: getattr(question, name) for name in ("key", "kind", "label_en", "label_zh", "help_en", "help_zh")},
            "required": question.required,
            "position": question.position,
            "choices": "\n".join(
                " | ".join([c["value"], c.get("label_en", ""), c.get("label_zh", "")]).rstrip(" |")
                for c in options.get("choices", [])
            ),
            "min_length": options.get("min_length"),
            "max_length": options.get("max_length"),
            "max_size_mib": (options["max_size"] // 2**20) if options.get("max_size") else None,
            "types": options.get("types", []),
        }

    def service_fields(self) -> dict:
        data = self.cleaned_data
        options = {}
        if data["kind"] in (AccessQuestion.Kind.CHOICE, AccessQuestion.Kind.MULTIPLE_CHOICE):
            options["choices"] = [
                dict(zip(("value", "label_en", "label_zh"), [part.strip() for part in line.split("|")], strict=False))
                for line in (data.get("choices") or "").splitlines()
                if line.strip()
            ]
        elif data["kind"] == AccessQuestion.Kind.LONG_TEXT:
            options = {"min_length": data.get("min_length"), "max_length": data.get("max_length")}
        elif data["kind"] == AccessQuestion.Kind.FILE:
            size = data.get("max_size_mib")
            options = {"max_size": size * 2**20 if size else None, "types": data.get("types") or None}
        fields = {name: data[name] for name in ("kind", "label_en", "label_zh", "help_en", "help_zh", "required")}
        if data.get("position") is not None:
            fields["position"] = data["position"]
        fields["options"] = options
        return fields


class ReleaseLicenseForm(forms.Form):
    """Move a release to a version of its license, and choose how holders of older versions move with it."""

    license = forms.ModelChoiceField(queryset=None, label=_("License version"))
    license_update_mode = forms.ChoiceField(
        label=_("When the version changes"), choices=ModelRelease.LicenseUpdateMode.choices
    )

    def __init__(self, *args, release: ModelRelease, **kwargs):
        super().__init__(*args, **kwargs)
        slug = release.license.slug if release.license else None
        self.fields["license"].queryset = License.objects.filter(slug=slug).order_by("-published_at", "-id")
        self.fields["license"].label_from_instance = lambda obj: (
            f"{obj.title} v{obj.version} ({obj.published_at:%Y-%m-%d})"
        )


class LicenseVersionForm(forms.Form):
    """A new version of a release's license (published once, never edited)."""

    version = forms.CharField(label=_("Version"), max_length=40)
    title = forms.CharField(label=_("Title"), max_length=200)
    summary_of_changes = forms.CharField(
        label=_("Summary of changes"), widget=forms.Textarea(attrs={"rows": 3}), required=False, max_length=5000
    )
    text = forms.CharField(label=_("Full text"), widget=forms.Textarea(attrs={"rows": 12}), max_length=200_000)


class LabInstitutionForm(forms.Form):
    """The confirmed institution a lab belongs to: its members verified there are shown so."""

    institution = forms.ChoiceField(
        label=_("Institution"),
        required=False,
        help_text=_("Among the institutions the portal's staff confirmed. Members verified there are shown so."),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        confirmed = Institution.objects.filter(confirmed_at__isnull=False).order_by("name")
        self.fields["institution"].choices = [("", _("None")), *((i.ror_id, i.name) for i in confirmed)]


class LabForm(LabInstitutionForm):
    field_order = ["name", "ror_id", "website", "email_domains", "institution"]

    name = forms.CharField(label=_("Lab name"), max_length=200)
    ror_id = forms.CharField(
        label=_("ROR id"), max_length=40, required=False, help_text=_("Optional, e.g. 02mhbdp94 (see ror.org)")
    )
    website = forms.CharField(label=_("Website"), max_length=200, required=False)
    email_domains = forms.CharField(
        label=_("Institution email domains"),
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        help_text=_(
            "One per line, e.g. cs.example.edu. Reviewers see which members' addresses are on them, as domains you "
            "declared: the portal does not check them. Free email providers (gmail.com) and public suffixes "
            "(ac.uk, github.io) are refused."
        ),
    )


class LabInviteForm(forms.Form):
    email = forms.EmailField(label=_("Email address"))
    role = forms.ChoiceField(
        label=_("Role"), choices=[("member", _("Member")), ("admin", _("Admin"))], initial="member"
    )


class LabCoverageForm(forms.Form):
    """Whom a lab request covers: all members (up to the release's cap) or the members ticked."""

    all_members = forms.BooleanField(label=_("All members of the lab, now and later"), required=False)
    members = forms.MultipleChoiceField(
        label=_("Or these members"), required=False, widget=forms.CheckboxSelectMultiple
    )

    def __init__(self, *args, memberships=(), cap: int = 25, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["members"].choices = [(m.public_id, m.user.email) for m in memberships]
        self.fields["all_members"].help_text = _(
            "Up to %(cap)d members are covered without a further review; a reviewer approves more."
        ) % {"cap": cap}

    def clean(self):
        data = super().clean()
        if not data.get("all_members") and not data.get("members"):
            raise forms.ValidationError(_("Choose all members or tick the members the request covers."))
        if data.get("all_members"):
            data["members"] = []
        return data


class ReleaseReviewForm(forms.ModelForm):
    """How long review of a release may take, and whether its request numbers are public."""

    review_deadline_days = IntegerInput(
        label=_("Review deadline (days)"),
        min_value=ModelRelease.REVIEW_DEADLINE_DAYS[0],
        max_value=ModelRelease.REVIEW_DEADLINE_DAYS[1],
        help_text=_("A pending request older than this is overdue: highlighted in the queue and listed in the digest."),
    )

    triage_deadline_days = IntegerInput(
        label=_("Flaw report triage deadline (days)"),
        min_value=ModelRelease.REVIEW_DEADLINE_DAYS[0],
        max_value=ModelRelease.REVIEW_DEADLINE_DAYS[1],
        help_text=_("A flaw report still waiting for triage after this is overdue and listed in the digest."),
        required=False,
    )

    class Meta:
        model = ModelRelease
        fields = [
            "review_deadline_days",
            "transparency_public",
            "triage_deadline_days",
            "flaw_reports_from_verified",
            "progress_report_required",
            "closeout_required",
            "public_register",
        ]
        labels = {
            "transparency_public": _("Publish a transparency page"),
            "flaw_reports_from_verified": _("Take flaw reports from any verified account"),
            "progress_report_required": _("A renewal needs a progress report"),
            "closeout_required": _("Holders certify deletion when access ends before applying again"),
            "public_register": _("Keep a public register of uses"),
        }
        help_texts = {
            "transparency_public": _(
                "Anyone may see requests received, approval rate by organization type and the median time to "
                "decision for this release. Aggregates only: no names, no countries."
            ),
            "progress_report_required": _(
                "What was done, publications (DOIs), derived models, incidents; such a renewal always goes to a "
                "reviewer."
            ),
            "closeout_required": _(
                "A new request from someone (or a lab) whose close-out on this release is outstanding is refused."
            ),
            "public_register": _(
                "Applicants who consent on the form are listed with their public statement; grants made before stay "
                "out."
            ),
        }


class DecisionRuleForm(forms.Form):
    """One decision rule, as a release manager adds it on the release's rules page (access.services.rules checks
    it again: any entry point is held to the same rules)."""

    action = forms.ChoiceField(label=_("Action"), choices=DecisionRule.Action.choices)
    providers = forms.CharField(
        label=_("Signed in through (provider ids)"), required=False, help_text=_("Separated by spaces; verified.")
    )
    affiliation_kinds = forms.MultipleChoiceField(
        label=_("Verified affiliation"),
        required=False,
        choices=[(k, KIND_LABELS[k]) for k in AFFILIATION_KINDS],
        widget=forms.CheckboxSelectMultiple,
    )
    institutions = forms.CharField(
        label=_("Institution"),
        required=False,
        help_text=_("“any” for any verified affiliation, or ROR ids separated by spaces; verified."),
    )
    email_domains = forms.CharField(
        label=_("Verified email domain"), required=False, help_text=_("Separated by spaces; verified.")
    )
    orcid = forms.BooleanField(label=_("ORCID iD linked"), required=False)
    library_card = forms.BooleanField(label=_("Valid library card"), required=False)
    organization_types = forms.MultipleChoiceField(
        label=_("Organization type (declared)"),
        required=False,
        choices=AccessRequest.OrganizationType.choices,
        widget=forms.CheckboxSelectMultiple,
    )
    countries = forms.CharField(
        label=_("Country (declared)"), required=False, help_text=_("ISO codes separated by spaces; not verified.")
    )
    note = forms.CharField(label=_("Note"), required=False, max_length=200)

    def rule(self) -> dict:
        data = self.cleaned_data
        conditions: dict = {}
        for name in ("providers", "email_domains", "countries"):
            if data[name].strip():
                conditions[name] = data[name].replace(",", " ").split()
        if data["institutions"].strip():
            value = data["institutions"].strip()
            conditions["institutions"] = "any" if value.lower() == "any" else value.replace(",", " ").split()
        for name in ("affiliation_kinds", "organization_types"):
            if data[name]:
                conditions[name] = list(data[name])
        if data["orcid"]:
            conditions["orcid"] = True
        if data["library_card"]:
            conditions["library_card"] = True
        return {"action": data["action"], "conditions": conditions, "note": data["note"]}


class RestrictedCountriesForm(forms.Form):
    restricted_countries = forms.CharField(
        label=_("Restricted countries"),
        required=False,
        help_text=_(
            "ISO codes separated by spaces. Requests declaring one are refused, and holders from one can no longer "
            "download."
        ),
    )


# --- Flaw reports --------------------------------------------------------------------------------------------


class FlawReportForm(forms.Form):
    """A flaw report on the release's page: the AI flaw report's fields, a file, and the disclosure terms shown
    (their version travels with the form, so terms that moved on meanwhile are refused, not silently accepted).
    The service checks everything again; the form only shapes it."""

    revisions = forms.MultipleChoiceField(
        label=_("Affected revisions"),
        widget=forms.CheckboxSelectMultiple,
        help_text=_("Tick every revision you saw it in."),
    )
    title = forms.CharField(label=_("Title"), max_length=200, help_text=_("One line that names the flaw."))
    category = forms.ChoiceField(label=_("Category"), choices=FlawReport.Category.choices)
    description = forms.CharField(label=_("Description"), widget=forms.Textarea(attrs={"rows": 4}), max_length=10_000)
    reproduction = forms.CharField(
        label=_("How to reproduce it"),
        widget=forms.Textarea(attrs={"rows": 5}),
        max_length=20_000,
        help_text=_("Prompts, settings and decoding parameters (temperature, top-p, seed, maximum length)."),
    )
    observed = forms.CharField(
        label=_("What the model did"), widget=forms.Textarea(attrs={"rows": 3}), max_length=10_000
    )
    expected = forms.CharField(
        label=_("What you expected instead"), widget=forms.Textarea(attrs={"rows": 3}), max_length=10_000
    )
    severity = forms.ChoiceField(label=_("Severity, as you see it"), choices=FlawReport.Severity.choices)
    other_models = forms.ChoiceField(
        label=_("May other models be affected?"), choices=FlawReport.OtherModels.choices, initial="unknown"
    )
    other_models_detail = forms.CharField(
        label=_("Which other models, if you know"),
        widget=forms.Textarea(attrs={"rows": 2}),
        required=False,
        max_length=2000,
    )
    credit_name = forms.CharField(
        label=_("Credit me as"),
        required=False,
        max_length=200,
        help_text=_("The name an advisory about this flaw credits; leave it empty for none."),
    )
    anonymous = forms.BooleanField(
        label=_("Keep me anonymous to the public (reviewers always see who reported)"), required=False
    )
    attachment = forms.FileField(label=_("A file (PDF, PNG or JPEG), optional"), required=False)
    terms_version = forms.IntegerField(widget=forms.HiddenInput)
    accept_terms = forms.BooleanField(
        label=_("I have read and accept these disclosure terms"),
        error_messages={"required": _("Accept the disclosure terms to file a report.")},
    )

    def __init__(self, *args, revisions=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["revisions"].choices = [
            (r.sha, f"{r.sha[:12]} (#{r.number}{', main' if i == 0 else ''})") for i, r in enumerate(revisions)
        ]


class FlawCommentForm(forms.Form):
    body = forms.CharField(label=_("Comment"), widget=forms.Textarea(attrs={"rows": 3}), max_length=10_000)


class FlawTriageForm(forms.Form):
    """A reviewer's triage: the new state, the severity as reviewers see it, an assignee, the original of a
    duplicate, and a note the reporter reads."""

    status = forms.ChoiceField(label=_("State"), choices=FlawReport.Status.choices)
    severity = forms.ChoiceField(
        label=_("Severity, as reviewers see it"), choices=[("", "—"), *FlawReport.Severity.choices], required=False
    )
    assignee = forms.ChoiceField(label=_("Assignee"), required=False)
    duplicate_of = forms.ChoiceField(label=_("Duplicate of"), required=False)
    note = forms.CharField(
        label=_("Note to the reporter"), widget=forms.Textarea(attrs={"rows": 3}), required=False, max_length=10_000
    )

    def __init__(self, *args, triagers=(), others=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["assignee"].choices = [("", "—"), *[(u.email, u.email) for u in triagers]]
        self.fields["duplicate_of"].choices = [("", "—"), *[(r.public_id, r.title) for r in others]]


class ProgressReportForm(forms.Form):
    """A progress report on a grant; the service checks it again (DOIs by syntax)."""

    summary = forms.CharField(
        label=_("What was done with the weights"), max_length=5000, widget=forms.Textarea(attrs={"rows": 5})
    )
    publications = forms.CharField(
        label=_("Publications (DOIs)"),
        required=False,
        max_length=5000,
        help_text=_("One DOI per line, e.g. 10.1234/abcd or https://doi.org/10.1234/abcd."),
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    derived_models = forms.CharField(
        label=_("Models derived from the weights"),
        required=False,
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    incidents = forms.CharField(
        label=_("Incidents"),
        required=False,
        max_length=5000,
        help_text=_("Leaks, misuse, security problems; write none if there were none."),
        widget=forms.Textarea(attrs={"rows": 3}),
    )

    def clean_publications(self):
        try:
            return parse_dois(self.cleaned_data.get("publications", ""))
        except ServiceError as exc:
            raise ValidationError(str(exc), code=exc.code) from None

    def report(self) -> dict:
        return {name: self.cleaned_data[name] for name in ("summary", "publications", "derived_models", "incidents")}


class CloseOutForm(forms.Form):
    """The certification that copies were deleted."""

    deleted_on = forms.DateField(
        label=_("Date the copies were deleted"), widget=forms.DateInput(attrs={"type": "date"})
    )
    locations = forms.IntegerField(
        label=_("Number of places that held copies"),
        min_value=0,
        max_value=1000,
        help_text=_("Machines, clusters, buckets, backups."),
    )
    statement = forms.CharField(
        label=_("Statement"),
        max_length=2000,
        help_text=_("In your own words: what was deleted, where, and how."),
        widget=forms.Textarea(attrs={"rows": 4}),
    )
    scope = forms.ChoiceField(
        widget=forms.HiddenInput, required=False, choices=[("", ""), ("personal", ""), ("lab", "")]
    )


# --- Release documents and what it takes to run a release ---------------------------------------------------


class _DocumentText(forms.Form):
    """A document's text, typed or uploaded (UTF-8 Markdown or plain text), and the revisions it describes."""

    body = forms.CharField(
        label=_("Text (Markdown)"), widget=forms.Textarea(attrs={"rows": 14}), required=False, strip=False
    )
    upload = forms.FileField(
        label=_("Or upload a file"), required=False, help_text=_("UTF-8 Markdown or plain text; replaces the text.")
    )
    notes = forms.CharField(label=_("What changed"), required=False, max_length=500)
    revisions = forms.MultipleChoiceField(
        label=_("Revisions it describes"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("None chosen: main."),
    )

    def __init__(self, *args, release: ModelRelease, **kwargs):
        super().__init__(*args, **kwargs)
        self.release = release
        self.fields["revisions"].choices = [
            (r.sha, f"#{r.number} {r.sha[:12]}") for r in release.revisions.filter(published_at__isnull=False)
        ]

    def clean(self):
        data = super().clean()
        upload = data.get("upload")
        if upload:
            if upload.size > 2_000_000:
                self.add_error("upload", _("Keep it under 2 MB."))
            else:
                try:
                    data["body"] = upload.read().decode("utf-8")
                except UnicodeDecodeError:
                    self.add_error("upload", _("The file is not UTF-8 text."))
        if not (data.get("body") or "").strip() and not self.errors:
            self.add_error("body", _("A document needs some text."))
        return data

    def chosen_revisions(self):
        shas = self.cleaned_data.get("revisions") or []
        if not shas:
            return None
        return list(self.release.revisions.filter(sha__in=shas))


class DocumentForm(_DocumentText):
    kind = forms.ChoiceField(label=_("Kind"), choices=ReleaseDocument.Kind.choices)
    title = forms.CharField(label=_("Title"), max_length=200)
    visibility = forms.ChoiceField(label=_("Who may read it"), choices=ReleaseDocument.Visibility.choices)
    acknowledge_required = forms.BooleanField(
        label=_("Acknowledge before download"),
        required=False,
        help_text=_("Holders must acknowledge the current version before downloading the weights."),
    )
    field_order = ["kind", "title", "visibility", "acknowledge_required", "body", "upload", "notes", "revisions"]


class DocumentSettingsForm(forms.Form):
    title = forms.CharField(label=_("Title"), max_length=200)
    visibility = forms.ChoiceField(label=_("Who may read it"), choices=ReleaseDocument.Visibility.choices)
    acknowledge_required = forms.BooleanField(label=_("Acknowledge before download"), required=False)


class DocumentVersionForm(_DocumentText):
    pass


class FootprintForm(forms.ModelForm):
    """What the release page says about running the release, beyond what the portal computes."""

    class Meta:
        model = ModelRelease
        fields = [
            "weights_dtype",
            "co2_eq_emissions",
            "co2_source",
            "co2_training_type",
            "co2_geographical_location",
            "co2_hardware_used",
        ]
        labels = {
            "weights_dtype": _("Stored precision of the weights"),
            "co2_eq_emissions": _("Training emissions (g CO2eq)"),
            "co2_source": _("Source of the emissions figure"),
            "co2_training_type": _("Training type"),
            "co2_geographical_location": _("Location of training"),
            "co2_hardware_used": _("Hardware used"),
        }
