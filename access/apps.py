from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _ensure_reviewers_group(sender, **kwargs):
    from .services.reviewers import reviewers_group

    reviewers_group()


class AccessConfig(AppConfig):
    name = "access"
    verbose_name = "Model access"

    def ready(self):
        from . import logs, metrics  # noqa: F401  (connect their Celery signal handlers)
        from .api import schema  # noqa: F401  (registers the OpenAPI description of token auth)

        post_migrate.connect(_ensure_reviewers_group, sender=self)
