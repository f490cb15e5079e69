"""`make run`'s email backend: every process (web and workers) appends its emails to one file, which
scripts/dev-run prints on its console as they come. Django's console backend writes to each process's own
stdout, and the Celery workers' stdout is their log file: request, decision and lab emails ended up there."""

import fcntl

from django.conf import settings
from django.core.mail.backends.console import EmailBackend as ConsoleBackend


class EmailBackend(ConsoleBackend):
    """The console backend's output, appended to DEV_MAIL_LOG whole (one lock per batch, so the emails of
    two processes never interleave). For development only."""

    def send_messages(self, email_messages):
        if not email_messages:
            return 0
        settings.DEV_MAIL_LOG.parent.mkdir(parents=True, exist_ok=True)
        with open(settings.DEV_MAIL_LOG, "a", encoding="utf-8") as stream:
            fcntl.flock(stream, fcntl.LOCK_EX)
            self.stream = stream
            try:
                return super().send_messages(email_messages)
            finally:
                stream.flush()
                fcntl.flock(stream, fcntl.LOCK_UN)
