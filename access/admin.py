from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from .models import (
    AccessRequest,
    ApiToken,
    AuditEvent,
    DownloadEvent,
    Grant,
    License,
    ModelFile,
    ModelRelease,
    OutboundEmail,
    ReasonTemplate,
    UrlBatch,
    User,
)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "first_name", "last_name", "is_staff", "is_active"]
    search_fields = ["email", "first_name", "last_name"]
    fieldsets = [
        (None, {"fields": ["email", "password"]}),
        ("Personal info", {"fields": ["first_name", "last_name"]}),
        ("Permissions", {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]}),
        ("Important dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]})]


@admin.register(License)
class LicenseAdmin(admin.ModelAdmin):
    list_display = ["title", "slug", "version", "created_at"]


@admin.register(ModelRelease)
class ModelReleaseAdmin(admin.ModelAdmin):
    list_display = ["repo_id", "display_name", "access", "approval_mode", "published", "revision"]
    list_filter = ["access", "published", "approval_mode"]
    search_fields = ["repo_id", "display_name"]
    readonly_fields = ["revision"]


@admin.register(ModelFile)
class ModelFileAdmin(admin.ModelAdmin):
    list_display = ["path", "release", "size", "sha256"]
    list_filter = ["release"]
    search_fields = ["path"]
    readonly_fields = ["size", "sha256"]


@admin.register(AccessRequest)
class AccessRequestAdmin(admin.ModelAdmin):
    list_display = ["full_name", "email", "release", "status", "country", "organization_type", "created_at"]
    list_filter = ["status", "release", "organization_type"]
    search_fields = ["full_name", "email", "affiliation"]
    readonly_fields = ["public_id", "license_version", "license_accepted_at", "license_accepted_ip", "status"]
    raw_id_fields = ["applicant", "reviewer", "renewal_of"]


@admin.register(Grant)
class GrantAdmin(admin.ModelAdmin):
    list_display = ["user", "release", "issued_at", "expires_at", "revoked_at"]
    list_filter = ["release"]
    readonly_fields = ["public_id", "issued_at", "revoked_at", "revoked_by"]
    raw_id_fields = ["user", "request"]


@admin.register(ReasonTemplate)
class ReasonTemplateAdmin(admin.ModelAdmin):
    list_display = ["title", "kind"]
    list_filter = ["kind"]


class ReadOnlyAdmin(admin.ModelAdmin):
    """Audit records are append-only: visible to admins, never editable or deletable."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


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
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at"]
    readonly_fields = ["prefix", "last_used_at"]
    exclude = ["secret_hash"]


@admin.register(OutboundEmail)
class OutboundEmailAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "template", "to", "subject"]
