import secrets

from django.conf import settings
from django.db import models


def new_subject() -> str:
    return secrets.token_hex(16)


class Person(models.Model):
    """Someone of Demo University: who signs in (`user`, whose username is the email) and what the university
    asserts about them."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="person")
    # The OpenID Connect `sub`: opaque and stable, never the database id.
    subject = models.CharField(max_length=64, unique=True, default=new_subject)
    name = models.CharField(max_length=200)
    given_name = models.CharField(max_length=100)
    family_name = models.CharField(max_length=100)
    principal_name = models.CharField(max_length=254, unique=True)
    affiliations = models.JSONField(default=list)
    assurance = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return self.user.email
