"""Writes. Views, API classes, Celery tasks, the admin and management commands change state only through
these services, each of which checks who acts. One module per domain; this package re-exports them."""

from ..taskbase import Enqueued
from .audit import audit
from .base import (
    SYSTEM,
    TASK,
    Actor,
    Forbidden,
    InvalidTransition,
    NotFound,
    ServiceError,
    command_actor,
    is_reviewer,
    require_reviewer,
)
from .grants import (
    batch_fill,
    grant_issue,
    grant_refresh_links,
    grant_revoke,
    grant_set_expiry,
    grants_expire,
    grants_reconcile,
)
from .mirrors import mirror_compare, mirror_disable, mirror_verify
from .releases import (
    release_compute_revision,
    release_create,
    release_refresh_revision,
    release_update,
    release_upsert_file,
)
from .requests import (
    REQUEST_FIELDS,
    OpenRequestExists,
    email_verified,
    request_answer,
    request_approve,
    request_ask_info,
    request_reject,
    request_renew,
    request_submit,
    request_withdraw,
    requests_decide_many,
)
from .reviewers import REVIEWERS_GROUP, reviewer_add, reviewer_remove, reviewers
from .tokens import TokenError, token_authenticate, token_create, token_hash, token_revoke

__all__ = [
    "REQUEST_FIELDS",
    "REVIEWERS_GROUP",
    "SYSTEM",
    "TASK",
    "Actor",
    "Enqueued",
    "Forbidden",
    "InvalidTransition",
    "NotFound",
    "OpenRequestExists",
    "ServiceError",
    "TokenError",
    "audit",
    "batch_fill",
    "command_actor",
    "email_verified",
    "grant_issue",
    "grant_refresh_links",
    "grant_revoke",
    "grant_set_expiry",
    "grants_expire",
    "grants_reconcile",
    "is_reviewer",
    "mirror_compare",
    "mirror_disable",
    "mirror_verify",
    "release_compute_revision",
    "release_create",
    "release_refresh_revision",
    "release_update",
    "release_upsert_file",
    "request_answer",
    "request_approve",
    "request_ask_info",
    "request_reject",
    "request_renew",
    "request_submit",
    "request_withdraw",
    "requests_decide_many",
    "require_reviewer",
    "reviewer_add",
    "reviewer_remove",
    "reviewers",
    "token_authenticate",
    "token_create",
    "token_hash",
    "token_revoke",
]
