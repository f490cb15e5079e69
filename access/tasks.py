"""Celery's entry points. Each task is defined beside the service it runs (see access.taskbase); this module
names them all so the worker registers them and callers have one place to find them."""

from .counts import download_counts_flush_task as download_counts_flush
from .counts import download_days_rollup_task as download_days_rollup
from .services.advisories import advisory_notify, advisory_reminders
from .services.cards import card_notify as library_card_notify
from .services.cards import official_notify
from .services.documents import document_acknowledge_notify
from .services.flaws import flaw_report_notify
from .services.grants import batch_sign_task as batch_sign
from .services.grants import grant_issue_task as grant_issue
from .services.grants import grants_expire_task as grants_expire
from .services.grants import grants_reconcile_task as grants_reconcile
from .services.labs import lab_notify
from .services.notifications import request_notify, reviewer_digest, reviewers_notify
from .services.reminders import needs_info_sweep
from .services.reverification import grant_suspension_notify
from .services.reverification import reverify_sweep_task as reverify_sweep
from .services.stewardship import closeout_notify
from .services.stewardship import closeouts_remind_task as closeouts_remind
from .webhooks import webhook_deliver, webhooks_sweep

__all__ = [
    "advisory_notify",
    "advisory_reminders",
    "batch_sign",
    "closeout_notify",
    "closeouts_remind",
    "document_acknowledge_notify",
    "download_counts_flush",
    "download_days_rollup",
    "flaw_report_notify",
    "grant_issue",
    "grant_suspension_notify",
    "grants_expire",
    "grants_reconcile",
    "lab_notify",
    "library_card_notify",
    "needs_info_sweep",
    "official_notify",
    "request_notify",
    "reverify_sweep",
    "reviewer_digest",
    "reviewers_notify",
    "webhook_deliver",
    "webhooks_sweep",
]
