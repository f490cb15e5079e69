"""The portal's hooks into django-allauth."""

from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from django.core.exceptions import PermissionDenied

from .http import client_ip


class AccountAdapter(DefaultAccountAdapter):
    def get_client_ip(self, request) -> str:
        # The address the API throttle and the audit log use, so the sign-in, sign-up and password-reset limits
        # cannot be escaped (or a victim's spent) by a forged X-Forwarded-For.
        ip = client_ip(request)
        if not ip:
            raise PermissionDenied
        return ip
