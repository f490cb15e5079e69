"""Who may act with powers: trusted credentials are a closed list (tasks, commands, decision rules); every other
credential is checked against the person behind it, and powers change only through the role services."""

from __future__ import annotations

import pytest

from access import services
from access.models import AuditEvent
from access.selectors import is_release_manager, is_reviewer
from access.services.reviewers import reviewers_group
from tests.factories import AccessRequestFactory, ReleaseFactory, UserFactory, add_file
from tests.support.auth import login_recently

pytestmark = pytest.mark.django_db


@pytest.fixture
def gated(local_storage):
    release = ReleaseFactory(repo_id="facebook/opt-175b", access="gated")
    add_file(release, "weights.bin", b"weights")
    return release


@pytest.fixture
def admin_user(db):
    return UserFactory(email="admin@portal.example", is_staff=True, is_superuser=True)


def session(user, *, recent=True):
    return services.Actor(user=user, credential="session", reauthenticated=recent)


@pytest.mark.parametrize("credential", ["system", "anonymous", "relay", "auto-approval", "task", "rule", "x:y"])
def test_it_checks_a_reviewer_acting_with_a_credential_it_does_not_know(gated, reviewer, alice, credential):
    request = AccessRequestFactory(applicant=alice, release=gated)
    actor = services.Actor(user=reviewer, credential=credential, reauthenticated=True)
    with pytest.raises(services.Forbidden):
        services.request_approve(actor=actor, access_request=request)
    request.refresh_from_db()
    assert request.status == "pending"


def test_an_actor_built_without_a_credential_is_anonymous(gated, reviewer, alice):
    request = AccessRequestFactory(applicant=alice, release=gated)
    assert services.Actor(user=reviewer).credential == "anonymous"
    with pytest.raises(services.Forbidden):
        services.request_reject(actor=services.Actor(user=reviewer), access_request=request, reason="No.")


@pytest.mark.parametrize("credential", ["task:grant_issue", "command:register_release", "rule:email-domain"])
def test_the_portals_own_code_is_trusted(credential):
    assert services.Actor(credential=credential).is_trusted


@pytest.mark.parametrize("credential", ["task:", "command", "rule:a b", "session", "admin:x@y", "token:3", "tasks:x"])
def test_nothing_else_is_trusted(credential):
    assert not services.Actor(credential=credential).is_trusted


def test_reviewer_powers_are_given_only_by_an_administrator_with_a_recent_password(admin_user, reviewer, alice):
    refused = [
        session(reviewer),  # a reviewer is not an administrator
        session(admin_user, recent=False),
        services.Actor(user=admin_user, credential="token:1"),
        services.task_actor("grant_issue"),
        services.rule_actor("email-domain"),
        services.Actor(user=admin_user, credential="system", reauthenticated=True),
    ]
    for actor in refused:
        with pytest.raises(services.Forbidden):
            services.reviewer_add(actor=actor, user=alice)
        with pytest.raises(services.Forbidden):
            services.release_manager_add(actor=actor, user=alice)
    assert not is_reviewer(alice) and not is_release_manager(alice)
    about_alice = AuditEvent.objects.filter(data__email=alice.email).order_by("id")
    assert not about_alice.exists()

    services.reviewer_add(actor=session(admin_user), user=alice)
    services.release_manager_add(actor=services.command_actor("add_reviewer"), user=alice)
    alice = type(alice).objects.get(pk=alice.pk)  # permissions are cached on the object
    assert is_reviewer(alice) and is_release_manager(alice)
    with pytest.raises(services.Forbidden):
        services.reviewer_remove(actor=session(reviewer), user=alice)
    assert list(about_alice.values_list("action", "credential")) == [
        ("reviewer.added", "session"),
        ("release_manager.added", "command:add_reviewer"),
    ]


def test_the_admin_gives_powers_only_through_the_services(client, admin_user, alice):
    login_recently(client, admin_user)
    url = f"/admin/access/user/{alice.pk}/change/"
    assert client.get(url).status_code == 200
    reviewers = reviewers_group()
    response = client.post(
        url,
        {
            "email": alice.email,
            "first_name": "",
            "last_name": "",
            "is_active": "on",
            "is_superuser": "on",
            "groups": [reviewers.pk],
            "user_permissions": [],
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    alice.refresh_from_db()
    assert not alice.is_superuser and not alice.groups.exists() and not is_reviewer(alice)
    # The Reviewers group's permissions are not editable in the admin either.
    assert client.get(f"/admin/auth/group/{reviewers.pk}/change/").status_code == 404

    response = client.post(
        "/admin/access/user/", {"action": "make_reviewer", "_selected_action": [alice.pk]}, follow=True
    )
    assert response.status_code == 200
    alice = type(alice).objects.get(pk=alice.pk)
    assert is_reviewer(alice)
    event = AuditEvent.objects.get(action="reviewer.added")
    assert event.credential == "admin:admin@portal.example" and event.actor == admin_user


def test_a_staff_member_who_is_not_a_superuser_cannot_give_powers(client, alice):
    from django.contrib.auth.models import Permission

    staff = UserFactory(email="staff@portal.example", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="change_user"))
    login_recently(client, staff)
    response = client.post(
        "/admin/access/user/", {"action": "make_reviewer", "_selected_action": [alice.pk]}, follow=True
    )
    assert "Only administrators may change who reviews" in response.content.decode()
    assert not is_reviewer(type(alice).objects.get(pk=alice.pk))


def test_release_files_and_revisions_are_changed_only_by_release_managers(gated, reviewer):
    manager = UserFactory(email="mia@portal.example")
    services.release_manager_add(actor=services.command_actor("add_reviewer"), user=manager)
    for actor in (session(reviewer), services.Actor(user=manager, credential="system"), session(manager, recent=False)):
        with pytest.raises(services.Forbidden):
            services.release_upsert_file(
                actor=actor, release=gated, path="extra.bin", size=1, sha256="a" * 64, storage_key="k/extra.bin"
            )
        with pytest.raises(services.Forbidden):
            services.release_publish(actor=actor, release=gated)
    services.release_upsert_file(
        actor=session(manager), release=gated, path="extra.bin", size=1, sha256="a" * 64, storage_key="k/extra.bin"
    )
    revision = services.release_publish(actor=session(manager), release=gated, notes="More")
    assert revision is not None
    events = AuditEvent.objects.filter(actor=manager).values_list("action", flat=True)
    assert list(events) == ["release.file_added", "release.revision_published"]
