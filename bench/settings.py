"""The portal's settings with a bench-only URLconf (adds a bare redirect view as the Django baseline)."""

from portal.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
