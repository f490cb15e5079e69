from django.apps import AppConfig


class DemoIdpConfig(AppConfig):
    name = "demo_idp"
    verbose_name = "Demo University"
    default_auto_field = "django.db.models.BigAutoField"
