"""portal.urls plus `/bench/bare-redirect/<path>`: a view that does nothing but answer a fixed 302.

It runs through the same middleware stack as the portal's views, so it is the floor for any Django redirect
on this machine; bench_redirect.py compares the gated redirect against it in the same run.
"""

from django.http import HttpResponseRedirect
from django.urls import path

from portal.urls import handler404, handler500
from portal.urls import urlpatterns as portal_urlpatterns

BARE_LOCATION = "http://127.0.0.1:9/storage/fixed"


def bare_redirect(request, path):
    response = HttpResponseRedirect(BARE_LOCATION)
    response["Cache-Control"] = "no-store"
    return response


urlpatterns = [path("bench/bare-redirect/<path:path>", bare_redirect, name="bench-bare-redirect"), *portal_urlpatterns]

__all__ = ["handler404", "handler500", "urlpatterns"]
