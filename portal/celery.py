import os

from celery import Celery
from celery.schedules import crontab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

app.conf.beat_schedule = {
    "reconcile-grants": {"task": "access.tasks.grants_reconcile", "schedule": 60.0},
    "expire-grants": {"task": "access.tasks.grants_expire", "schedule": 3600.0},
    "reviewer-digest": {"task": "access.tasks.reviewer_digest", "schedule": crontab(hour=7, minute=0)},
}
