"""The portal's own deployment checks, and `make run`'s email backend."""

import contextlib
import threading

from django.core import mail
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from access.checks import contact_email_check


def test_it_warns_a_deployment_without_a_contact_address(settings):
    settings.CONTACT_EMAIL = ""
    (warning,) = contact_email_check(None)
    assert warning.id == "access.W001" and "CONTACT_EMAIL" in warning.msg
    settings.CONTACT_EMAIL = "access@lab.example"
    assert contact_email_check(None) == []


def test_check_deploy_reports_it(settings, capsys):
    settings.CONTACT_EMAIL = ""
    # Errors of other deployment settings are the test settings' business.
    with contextlib.suppress(SystemCheckError):
        call_command("check", deploy=True, fail_level="CRITICAL")
    assert "access.W001" in capsys.readouterr().err


def test_make_runs_email_backend_appends_every_processs_emails_to_one_file(settings, tmp_path):
    settings.EMAIL_BACKEND = "access.devmail.EmailBackend"
    settings.DEV_MAIL_LOG = tmp_path / "var" / "mail.log"

    def send(n):
        mail.send_mail(f"Your request {n}", "Body line\n", "portal@example.org", ["alice@uni.example"])

    threads = [threading.Thread(target=send, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    text = settings.DEV_MAIL_LOG.read_text()
    assert sorted(line for line in text.splitlines() if line.startswith("Subject:")) == [
        f"Subject: Your request {n}" for n in range(4)
    ]
