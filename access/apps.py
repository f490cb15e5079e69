from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.db.models.signals import post_migrate


def _ensure_reviewers_group(sender, **kwargs):
    from .services.reviewers import reviewers_group

    reviewers_group()


def _watch_gate_writes(sender, connection, **kwargs):
    """Every database connection tells the gate's loader when it writes what the gate reads (access.gate.loader):
    services, the admin, plain ORM calls and queryset updates alike."""
    from .gate import loader

    loader.watch(connection)


class AccessConfig(AppConfig):
    name = "access"
    verbose_name = "Model access"

    def ready(self):
        from . import checks, logs, metrics  # noqa: F401  (register the checks; connect Celery signal handlers)
        from .api import schema  # noqa: F401  (registers the OpenAPI description of token auth)

        post_migrate.connect(_ensure_reviewers_group, sender=self)
        connection_created.connect(_watch_gate_writes, dispatch_uid="access-gate-writes")
