"""The reviewer and release-manager roles: permissions held through the Reviewers and Release managers groups."""

from __future__ import annotations

from allauth.account.models import EmailAddress
from django.contrib.auth.models import Group, Permission
from django.db import transaction

from ..audit import audit
from ..models import User
from .base import Actor, require_role_admin

REVIEWERS_GROUP = "Reviewers"
RELEASE_MANAGERS_GROUP = "Release managers"


def _group(name: str, codename: str) -> Group:
    group, _ = Group.objects.get_or_create(name=name)
    permission = Permission.objects.get(codename=codename, content_type__app_label="access")
    group.permissions.add(permission)
    return group


def reviewers_group() -> Group:
    return _group(REVIEWERS_GROUP, "review_accessrequest")


def release_managers_group() -> Group:
    return _group(RELEASE_MANAGERS_GROUP, "manage_release")


def reviewer_add(*, actor: Actor, user: User, staff: bool = False, verified: bool = False) -> User:
    """Give reviewer powers (the Reviewers group); only administrators and operators' commands may."""
    require_role_admin(actor)
    with transaction.atomic():
        user.groups.add(reviewers_group())
        if staff and not user.is_staff:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
        if verified:
            EmailAddress.objects.update_or_create(
                user=user, email=user.email, defaults={"verified": True, "primary": True}
            )
        audit(actor=actor, action="reviewer.added", target=user, data={"email": user.email, "staff": staff})
    return user


def reviewer_remove(*, actor: Actor, user: User) -> User:
    require_role_admin(actor)
    with transaction.atomic():
        user.groups.remove(reviewers_group())
        audit(actor=actor, action="reviewer.removed", target=user, data={"email": user.email})
    return user


def reviewers() -> list[User]:
    return list(User.objects.filter(is_active=True, groups__name=REVIEWERS_GROUP).distinct().order_by("email"))


def release_manager_add(*, actor: Actor, user: User) -> User:
    """Release managers edit releases' access forms, move them to new license versions and publish revisions."""
    require_role_admin(actor)
    with transaction.atomic():
        user.groups.add(release_managers_group())
        audit(actor=actor, action="release_manager.added", target=user, data={"email": user.email})
    return user


def release_manager_remove(*, actor: Actor, user: User) -> User:
    require_role_admin(actor)
    with transaction.atomic():
        user.groups.remove(release_managers_group())
        audit(actor=actor, action="release_manager.removed", target=user, data={"email": user.email})
    return user
