"""Rates counted in Redis (the `throttle` cache when THROTTLE_CACHE_URL is set, else the default cache)."""

from django.conf import settings
from django.core.cache import caches
from rest_framework import throttling


def _cache():
    return caches["throttle"] if "throttle" in settings.CACHES else caches["default"]


class UserRateThrottle(throttling.UserRateThrottle):
    """Per user (a token counts for its user); anonymous callers are left to the IP throttle."""

    scope = "user"

    @property
    def cache(self):
        return _cache()

    def get_cache_key(self, request, view):
        if not (request.user and request.user.is_authenticated):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class IpRateThrottle(throttling.AnonRateThrottle):
    scope = "ip"

    @property
    def cache(self):
        return _cache()

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
