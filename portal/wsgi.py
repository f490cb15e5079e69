import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
django.setup(set_prefix=False)

from portal.handlers import PortalApplication  # noqa: E402 - after setup, as get_wsgi_application does

application = PortalApplication()
