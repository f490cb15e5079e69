"""System checks of the portal's own settings (`manage.py check --deploy` runs the deployment ones)."""

from django.conf import settings
from django.core import checks

W_CONTACT_EMAIL = "access.W001"


@checks.register(checks.Tags.security, deploy=True)
def contact_email_check(app_configs, **kwargs):
    """Rejected applicants and grant holders are sent to "Contact the reviewers": without an address, that link
    leads to a page that has none."""
    if settings.CONTACT_EMAIL:
        return []
    return [
        checks.Warning(
            "CONTACT_EMAIL is not set: the help page has no address for questions about requests and decisions.",
            hint="Set CONTACT_EMAIL to the reviewers' address (docs/operators.md).",
            id=W_CONTACT_EMAIL,
        )
    ]
