from django.apps import AppConfig
from django.db.models.signals import post_delete, post_migrate, post_save

from . import cache

# Saves that change nothing the download gate decides on.
BOOKKEEPING_FIELDS = {"last_login", "last_used_at", "updated_at", "issued_email_sent_at", "expiry_warned_at"}


def _ensure_reviewers_group(sender, **kwargs):
    from .services.reviewers import reviewers_group

    reviewers_group()


def _decision_inputs_changed(sender, update_fields=None, **kwargs):
    """Any saved or deleted token, user, grant, release, file or license: processes drop what they cached (see
    access.cache). A signal, so the admin, services and plain ORM saves alike invalidate."""
    if update_fields and set(update_fields) <= BOOKKEEPING_FIELDS:
        return
    cache.changed()


class AccessConfig(AppConfig):
    name = "access"
    verbose_name = "Model access"

    def ready(self):
        from . import logs, metrics  # noqa: F401  (connect their Celery signal handlers)
        from .api import schema  # noqa: F401  (registers the OpenAPI description of token auth)
        from .models import ApiToken, Grant, LabMembership, LabSeat, License, ModelFile, ModelRelease, User

        post_migrate.connect(_ensure_reviewers_group, sender=self)
        for model in (ApiToken, Grant, LabMembership, LabSeat, License, ModelFile, ModelRelease, User):
            post_save.connect(_decision_inputs_changed, sender=model, dispatch_uid=f"decision-{model.__name__}")
            post_delete.connect(_decision_inputs_changed, sender=model, dispatch_uid=f"decision-del-{model.__name__}")
