"""The Django admin is one more entry point: every change to access goes through a service, audited with the
actor `admin:<email>`. Fields that only services change are read-only here."""

from allauth.socialaccount.models import SocialAccount, SocialApp, SocialToken
from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.models import Group
from django.utils.translation import gettext_lazy as _

from . import services
from .decorators import recently_authenticated
from .http import client_ip
from .models import (
    AccessQuestion,
    AccessRequest,
    ApiToken,
    AuditEvent,
    CloseOut,
    DecisionRule,
    DocumentAcknowledgement,
    DownloadEvent,
    Grant,
    Institution,
    InstitutionIdentifier,
    LibraryCard,
    License,
    ModelFile,
    ModelRelease,
    OutboundEmail,
    ProgressReport,
    ReasonTemplate,
    ReleaseDocument,
    ReleaseMirror,
    ReleaseRevision,
    RequestAttachment,
    SigningOfficial,
    UrlBatch,
    User,
    VerifiedIdentity,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    """Accounts. Powers (superuser, groups, permissions) are read-only here: reviewer and release-manager powers
    are given and taken by the actions below, through the services that check who acts and audit it; superusers
    are made with `manage.py createsuperuser` on the server."""

    ordering = ["email"]
    list_display = ["email", "first_name", "last_name", "is_staff", "is_active", "roles"]
    search_fields = ["email", "first_name", "last_name"]
    fieldsets = [
        (None, {"fields": ["email", "password"]}),
        ("Personal info", {"fields": ["first_name", "last_name"]}),
        ("Permissions", {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]}),
        ("Important dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]})]
    readonly_fields = ["is_superuser", "groups", "user_permissions", "last_login", "date_joined"]
    AUDITED = ("is_active", "is_staff")
    actions = ["make_reviewer", "remove_reviewer", "make_release_manager", "remove_release_manager"]

    @admin.display(description=_("Roles"))
    def roles(self, obj):
        names = sorted(group.name for group in obj.groups.all())
        return ", ".join(["superuser", *names] if obj.is_superuser else names)

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("groups")

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        changed = [name for name in form.changed_data if name in self.AUDITED]
        if change and changed:
            # An inactive account loses every download at once; who changed that flag is recorded.
            services.audit(
                actor=admin_actor(request),
                action="user.updated",
                target=obj,
                data={"fields": changed, "is_active": obj.is_active, "is_staff": obj.is_staff},
            )

    def _roles(self, request, queryset, verb, done):
        actor = admin_actor(request)
        try:
            for user in queryset:
                verb(actor=actor, user=user)
        except services.ServiceError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, done)

    @admin.action(description=_("Give reviewer powers"))
    def make_reviewer(self, request, queryset):
        self._roles(request, queryset, services.reviewer_add, _("Reviewer powers given."))

    @admin.action(description=_("Take reviewer powers away"))
    def remove_reviewer(self, request, queryset):
        self._roles(request, queryset, services.reviewer_remove, _("Reviewer powers taken away."))

    @admin.action(description=_("Give release-manager powers"))
    def make_release_manager(self, request, queryset):
        self._roles(request, queryset, services.release_manager_add, _("Release-manager powers given."))

    @admin.action(description=_("Take release-manager powers away"))
    def remove_release_manager(self, request, queryset):
        self._roles(request, queryset, services.release_manager_remove, _("Release-manager powers taken away."))


# Groups carry the powers; their permissions change only through the role services (the actions above).
admin.site.unregister(Group)


def admin_actor(request) -> services.Actor:
    """The admin site asks for a recent password before any change (portal.admin), so its actor has one."""
    return services.Actor(
        user=request.user,
        credential=f"admin:{request.user.email}",
        ip=client_ip(request),
        reauthenticated=recently_authenticated(request),
    )


class ServiceErrorsAdmin(admin.ModelAdmin):
    """Show a service's refusal as a message on the change form instead of a server error."""

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except services.ServiceError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            from django.http import HttpResponseRedirect

            return HttpResponseRedirect(request.get_full_path())


@admin.register(License)
class LicenseAdmin(ServiceErrorsAdmin):
    """A license version is published once (through the service) and never edited: a change is a new version."""

    list_display = ["title", "slug", "version", "published_at"]
    list_filter = ["slug"]
    fields = ["slug", "version", "title", "summary_of_changes", "summary_of_changes_zh_hans", "text", "published_at"]

    def get_readonly_fields(self, request, obj=None):
        return self.fields if obj is not None else ["published_at"]

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        if change:
            return
        created = services.license_publish(
            actor=admin_actor(request),
            slug=obj.slug,
            version=obj.version,
            title=obj.title,
            text=obj.text,
            summary_of_changes=obj.summary_of_changes,
            summary_of_changes_zh_hans=obj.summary_of_changes_zh_hans,
        )
        obj.pk = created.pk
        obj._state.adding = False


@admin.register(AccessQuestion)
class AccessQuestionAdmin(ServiceErrorsAdmin):
    """Questions of releases' access forms, created and changed through the services: once a release has
    requests, a change saves a new version of the question (the portal's release pages do the same)."""

    list_display = ["release", "key", "version", "kind", "required", "position", "retired_at"]
    list_filter = ["release", "kind"]
    fields = [
        "release",
        "key",
        "kind",
        "label_en",
        "label_zh",
        "help_en",
        "help_zh",
        "required",
        "position",
        "options",
        "version",
        "retired_at",
    ]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ["version", "retired_at"]
        if obj.retired_at is not None:
            return self.fields
        return ["release", "key", "version", "retired_at"]

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        names = services.accessforms.QUESTION_FIELDS
        if change:
            original = AccessQuestion.objects.get(pk=obj.pk)
            fields = {name: form.cleaned_data[name] for name in names if name in form.changed_data}
            current = services.question_update(actor=admin_actor(request), question=original, fields=fields)
        else:
            fields = {name: form.cleaned_data[name] for name in names if name in form.cleaned_data}
            current = services.question_create(
                actor=admin_actor(request), release=obj.release, key=obj.key, fields=fields
            )
        obj.pk = current.pk
        obj._state.adding = False


@admin.register(ReleaseRevision)
class ReleaseRevisionAdmin(admin.ModelAdmin):
    """Revisions are published by registering files; none changes afterwards."""

    list_display = ["release", "number", "sha", "published_at"]
    list_filter = ["release"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ModelRelease)
class ModelReleaseAdmin(ServiceErrorsAdmin):
    list_display = ["repo_id", "display_name", "access", "published", "revision"]
    list_filter = ["access", "published"]
    search_fields = ["repo_id", "display_name"]
    # Flaw reports' settings are set on the release's policy page (access.views.manage), by release managers.
    exclude = ["triage_deadline_days", "flaw_reports_from_verified"]

    def get_readonly_fields(self, request, obj=None):
        # What it takes to run it is the release managers' (their documents page, release_set_footprint).
        owned = ["revision", *services.documents.FOOTPRINT_FIELDS]
        return ["repo_id", *owned] if obj is not None else owned

    def save_model(self, request, obj, form, change):
        fields = {
            name: form.cleaned_data[name] for name in services.releases.EDITABLE_FIELDS if name in form.cleaned_data
        }
        if change:
            changes = {name: value for name, value in fields.items() if name in form.changed_data}
            services.release_update(actor=admin_actor(request), release=obj, changes=changes)
        else:
            created = services.release_create(actor=admin_actor(request), fields={"repo_id": obj.repo_id, **fields})
            obj.pk = created.pk
            obj._state.adding = False


class ReadOnlyAdmin(admin.ModelAdmin):
    """Visible to admins, never editable or deletable here: records only services write."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(DecisionRule)
class DecisionRuleAdmin(ReadOnlyAdmin):
    """Rules are set as an ordered list by release managers on the release's rules page or through
    PUT /api/v1/models/{repo_id}/rules (access.services.rules): here they are read, current and retired."""

    list_display = ["release", "position", "action", "conditions", "note", "retired_at", "created_at"]
    list_filter = ["release", "action"]


@admin.register(ModelFile)
class ModelFileAdmin(ReadOnlyAdmin):
    """Files are registered by `register_release`, which hashes what storage holds."""

    list_display = ["path", "release", "revision", "size", "sha256", "piece_size"]
    list_filter = ["release"]
    search_fields = ["path"]


@admin.register(ReleaseDocument)
class ReleaseDocumentAdmin(ReadOnlyAdmin):
    """Documents are written by release managers on their documents page (or the API), versioned and audited."""

    list_display = ["title", "release", "kind", "visibility", "acknowledge_required", "updated_at"]
    list_filter = ["kind", "visibility", "acknowledge_required"]


@admin.register(DocumentAcknowledgement)
class DocumentAcknowledgementAdmin(ReadOnlyAdmin):
    """Holders acknowledge a document's current version on its page or through the API."""

    list_display = ["version", "user", "created_at"]


@admin.register(ReleaseMirror)
class ReleaseMirrorAdmin(ReadOnlyAdmin):
    """Mirrors are enabled by `manage.py verify_mirror`, which reads the mirror's copy of every file."""

    list_display = ["release", "mirror", "status", "revision", "verified_at", "files_checked"]
    list_filter = ["mirror", "status"]


@admin.register(AccessRequest)
class AccessRequestAdmin(ReadOnlyAdmin):
    """Requests are decided on the review pages, where every decision has its rules and its audit event."""

    list_display = ["full_name", "email", "release", "status", "country", "organization_type", "created_at"]
    list_filter = ["status", "release", "organization_type"]
    search_fields = ["full_name", "email", "affiliation"]


class GrantAdminForm(forms.ModelForm):
    revoke = forms.BooleanField(required=False, label=_("Revoke this grant"))
    reason = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}), label=_("Reason (shown to the researcher)")
    )

    class Meta:
        model = Grant
        fields = ["expires_at"]

    def clean(self):
        data = super().clean()
        if data.get("revoke") and not (data.get("reason") or "").strip():
            self.add_error("reason", _("Give a reason; the researcher will see it."))
        return data


@admin.register(Grant)
class GrantAdmin(ServiceErrorsAdmin):
    form = GrantAdminForm
    list_display = ["user", "release", "issued_at", "expires_at", "revoked_at"]
    list_filter = ["release"]
    readonly_fields = [
        "public_id",
        "user",
        "release",
        "request",
        "issued_at",
        "revoked_at",
        "revoked_by",
        "revoke_reason",
    ]
    fields = [*readonly_fields[:5], "expires_at", "revoked_at", "revoked_by", "revoke_reason", "revoke", "reason"]

    def has_add_permission(self, request):
        return False  # grants are issued by approving a request

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        actor = admin_actor(request)
        if "expires_at" in form.changed_data:
            services.grant_set_expiry(actor=actor, grant=obj, expires_at=form.cleaned_data["expires_at"])
        if form.cleaned_data.get("revoke") and obj.revoked_at is None:
            services.grant_revoke(actor=actor, grant=obj, reason=form.cleaned_data["reason"])


@admin.register(RequestAttachment)
class RequestAttachmentAdmin(ReadOnlyAdmin):
    """Applicants' uploads; reviewers open them from the request's review page (each read is audited)."""

    list_display = ["filename", "request", "question", "content_type", "size", "created_at"]
    exclude = ["storage_key"]


@admin.register(ReasonTemplate)
class ReasonTemplateAdmin(admin.ModelAdmin):
    list_display = ["title", "kind"]
    list_filter = ["kind"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "action", "actor", "credential", "target_type", "target_id", "ip"]
    list_filter = ["action"]
    search_fields = ["action", "target_id", "actor__email"]


@admin.register(DownloadEvent)
class DownloadEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "release", "file", "user", "via", "ip"]
    list_filter = ["via", "release"]


@admin.register(UrlBatch)
class UrlBatchAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "grant", "status", "expires_at"]
    exclude = ["urls"]


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    list_display = ["name", "user", "prefix", "scope", "created_at", "last_used_at", "expires_at", "revoked_at"]
    exclude = ["secret_hash"]
    actions = ["revoke"]

    @admin.action(description=_("Revoke selected tokens"))
    def revoke(self, request, queryset):
        for token in queryset:
            services.token_revoke(actor=admin_actor(request), token=token)
        self.message_user(request, _("Tokens revoked."), messages.SUCCESS)

    def has_change_permission(self, request, obj=None):
        # Actions need the change permission; the form itself stays read-only (no editable fields).
        return obj is None and super(ReadOnlyAdmin, self).has_change_permission(request, obj)


@admin.register(OutboundEmail)
class OutboundEmailAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "template", "to", "subject"]


class ActionsOnlyAdmin(ReadOnlyAdmin):
    """Read-only, with actions (which need the change permission) that call services."""

    def has_change_permission(self, request, obj=None):
        return obj is None and super(ReadOnlyAdmin, self).has_change_permission(request, obj)


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ActionsOnlyAdmin):
    """Endpoints are registered on the portal's Webhooks page, which shows the signing secret once."""

    list_display = ["url", "owner", "release", "active", "failing_since", "disabled_at", "created_at"]
    list_filter = ["active"]
    exclude = ["secret_salt"]
    actions = ["switch_on", "switch_off"]

    @admin.action(description=_("Switch selected endpoints on"))
    def switch_on(self, request, queryset):
        self._set_active(request, queryset, True)

    @admin.action(description=_("Switch selected endpoints off"))
    def switch_off(self, request, queryset):
        self._set_active(request, queryset, False)

    def _set_active(self, request, queryset, active):
        for endpoint in queryset:
            services.webhook_endpoint_set_active(actor=admin_actor(request), endpoint=endpoint, active=active)
        self.message_user(request, _("Endpoints updated."), messages.SUCCESS)


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    fields = readonly_fields = ["created_at", "succeeded", "response_code", "latency_ms", "error"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ActionsOnlyAdmin):
    """The delivery log: every attempt with its time, response code and latency."""

    list_display = ["created_at", "event_type", "endpoint", "status", "attempts", "response_code", "latency_ms"]
    list_filter = ["status", "event_type"]
    inlines = [WebhookAttemptInline]
    actions = ["redeliver"]

    @admin.action(description=_("Redeliver selected deliveries"))
    def redeliver(self, request, queryset):
        for delivery in queryset:
            try:
                services.webhook_redeliver(actor=admin_actor(request), delivery=delivery)
            except services.ServiceError as exc:
                self.message_user(request, str(exc), messages.ERROR)
                return
        self.message_user(request, _("Deliveries queued again."), messages.SUCCESS)


# --- Institutions and verified identities ---------------------------------------------------------------------

Kind = InstitutionIdentifier.Kind


class InstitutionAdminForm(forms.ModelForm):
    email_domains = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}), help_text=_("One per line, such as uni.example")
    )
    issuers = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        label=_("OpenID Connect issuers"),
        help_text=_("The issuer URL of each of the institution's own OpenID Providers, one per line"),
    )
    idp_entity_ids = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        label=_("Identity provider entity ids"),
        help_text=_("The SAML entity id of each of its identity providers, as CILogon names them in `idp`"),
    )
    confirmed = forms.BooleanField(
        required=False,
        help_text=_("Confirmed: its domains and providers verify affiliations. Check that they are the institution's."),
    )

    class Meta:
        model = Institution
        fields = ["ror_id", "name"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["email_domains"] = "\n".join(self.instance.identifiers_of(Kind.EMAIL_DOMAIN))
            self.initial["issuers"] = "\n".join(self.instance.identifiers_of(Kind.OIDC_ISSUER))
            self.initial["idp_entity_ids"] = "\n".join(self.instance.identifiers_of(Kind.IDP_ENTITY_ID))
            self.initial["confirmed"] = self.instance.is_confirmed


@admin.register(Institution)
class InstitutionAdmin(ServiceErrorsAdmin):
    """Institutions are created, changed and confirmed through their services (administrators only, audited)."""

    form = InstitutionAdminForm
    list_display = ["name", "ror_id", "confirmed_at", "domains"]
    search_fields = ["name", "ror_id", "identifiers__value"]
    fields = [
        "ror_id",
        "name",
        "email_domains",
        "issuers",
        "idp_entity_ids",
        "confirmed",
        "confirmed_at",
        "confirmed_by",
    ]
    readonly_fields = ["confirmed_at", "confirmed_by"]

    @admin.display(description=_("Email domains"))
    def domains(self, obj):
        return ", ".join(obj.identifiers_of(Kind.EMAIL_DOMAIN))

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("identifiers")

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "ror_id"] if obj is not None else self.readonly_fields

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        actor = admin_actor(request)
        data = form.cleaned_data
        lists = {name: data.get(name, "").split() for name in ("email_domains", "issuers", "idp_entity_ids")}
        if change:
            institution = services.institution_update(
                actor=actor, institution=Institution.objects.get(pk=obj.pk), name=data["name"], **lists
            )
        else:
            institution = services.institution_create(actor=actor, ror_id=data["ror_id"], name=data["name"], **lists)
        services.institution_confirm(actor=actor, institution=institution, confirmed=data.get("confirmed", False))
        obj.pk = institution.pk
        obj._state.adding = False

    def save_related(self, request, form, formsets, change):
        pass  # the services wrote the identifiers


@admin.register(VerifiedIdentity)
class VerifiedIdentityAdmin(ReadOnlyAdmin):
    """What providers asserted at each account's last sign-in; written only by sign-ins, removed by the owner."""

    list_display = ["user", "provider", "institution", "orcid", "last_seen_at"]
    list_filter = ["provider"]
    search_fields = ["user__email", "subject", "orcid"]


class SigningOfficialAdminForm(forms.ModelForm):
    class Meta:
        model = SigningOfficial
        fields = ["institution", "user"]


@admin.register(SigningOfficial)
class SigningOfficialAdmin(ServiceErrorsAdmin):
    """Signing officials are appointed (add) and their appointment ended (the action) through the service:
    administrators only, audited, emailed."""

    form = SigningOfficialAdminForm
    list_display = ["user", "institution", "created_at", "appointed_by", "ended_at"]
    list_filter = ["institution"]
    search_fields = ["user__email", "institution__name", "institution__ror_id"]
    autocomplete_fields = ["user"]
    actions = ["end_appointments"]

    def has_change_permission(self, request, obj=None):
        return obj is None

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        return ["institution", "user", "appointed_by", "ended_at", "ended_by"] if obj is not None else []

    def save_model(self, request, obj, form, change):
        official = services.official_appoint(
            actor=admin_actor(request), institution=form.cleaned_data["institution"], user=form.cleaned_data["user"]
        )
        obj.pk = official.pk
        obj._state.adding = False

    @admin.action(description=_("End the chosen appointments"))
    def end_appointments(self, request, queryset):
        for official in queryset.filter(ended_at__isnull=True):
            try:
                services.official_end(actor=admin_actor(request), official=official)
            except services.ServiceError as exc:
                self.message_user(request, str(exc), messages.ERROR)


@admin.register(LibraryCard)
class LibraryCardAdmin(ReadOnlyAdmin):
    """Cards are issued and revoked by the institution's signing officials (access.services.cards)."""

    list_display = ["user", "institution", "issued_by", "issued_at", "expires_at", "all_releases", "revoked_at"]
    list_filter = ["institution"]
    search_fields = ["user__email", "public_id"]


# Links to providers are made by signing in and removed by their owner (access.services.identities); providers
# are configured by OIDC_PROVIDERS, never as rows.
admin.site.unregister(SocialApp)
admin.site.unregister(SocialToken)
admin.site.unregister(SocialAccount)


@admin.register(SocialAccount)
class SocialAccountAdmin(ReadOnlyAdmin):
    list_display = ["user", "provider", "uid", "last_login"]
    list_filter = ["provider"]
    search_fields = ["user__email", "uid"]


@admin.register(ProgressReport)
class ProgressReportAdmin(ReadOnlyAdmin):
    """Filed by holders (access.services.stewardship); reviewers read them on the grant's page."""

    list_display = ["grant", "author", "created_at", "renewal"]
    search_fields = ["author__email", "grant__public_id"]


@admin.register(CloseOut)
class CloseOutAdmin(ReadOnlyAdmin):
    """Asked when access ends and certified by the person asked (access.services.stewardship)."""

    list_display = ["grant", "user", "scope", "reason", "asked_at", "completed_at"]
    list_filter = ["scope", "reason"]
    search_fields = ["user__email", "grant__public_id"]
