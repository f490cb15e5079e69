"""Structured logs: a request id on every line, and with LOG_FORMAT=json one JSON object per line.

The id comes from the caller's X-Request-ID (when it is a sane token) or is made up, is echoed in the response,
and travels with every task the request enqueues (`TransactionAwareTask.enqueue` puts it in the message headers;
the worker restores it around the task), so one id follows an approval from the click to the grant email.
Imports nothing of the portal's: logging is configured before the apps are loaded.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime

from celery import signals

_request_id: ContextVar[str] = ContextVar("request_id", default="")
VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Attributes every LogRecord has; anything else was passed as `extra` and goes into the JSON object.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "request_id"}


def current_request_id() -> str:
    return _request_id.get()


def new_request_id(offered: str | None = None) -> str:
    return offered if offered and VALID_ID.match(offered) else uuid.uuid4().hex


def bind(request_id: str):
    """Make request_id current; returns the token to `unbind` with."""
    return _request_id.set(request_id)


def unbind(token) -> None:
    _request_id.reset(token)


class RequestIdFilter(logging.Filter):
    def filter(self, record):
        record.request_id = _request_id.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record):
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or _request_id.get() or None,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value if isinstance(value, str | int | float | bool | type(None)) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


# --- Celery: the id of whoever enqueued the task ---------------------------------------------------------

_task_tokens: dict[str, object] = {}
task_log = logging.getLogger("portal.task")


@signals.task_prerun.connect
def _restore_request_id(task_id=None, task=None, **kwargs):
    offered = getattr(task.request, "request_id", None) or (task.request.headers or {}).get("request_id")
    _task_tokens[task_id] = bind(new_request_id(offered))
    task_log.info("task started", extra={"task": task.name, "task_id": task_id})


@signals.task_postrun.connect
def _clear_request_id(task_id=None, task=None, state=None, **kwargs):
    task_log.info("task finished", extra={"task": task.name, "task_id": task_id, "state": state})
    token = _task_tokens.pop(task_id, None)
    if token is not None:
        unbind(token)
