"""schemathesis generates requests from /api/schema and checks that the live portal never answers 5xx and that
responses conform to the schema, anonymously and with a granted researcher's token."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from access import services
from tests.factories import AccessRequestFactory, ReleaseFactory, UserFactory, add_file

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


@pytest.fixture
def portal(live_server, local_storage, settings):
    settings.SITE_URL = live_server.url
    open_release = ReleaseFactory(repo_id="facebook/opt-125m", access="open")
    add_file(open_release, "config.json", b"{}")
    gated = ReleaseFactory(repo_id="facebook/opt-175b", access="gated")
    add_file(gated, "checkpoint_last-model_part-0-shard0.pt", b"weights")
    reviewer = UserFactory()
    services.reviewer_add(actor=services.command_actor("add_reviewer"), user=reviewer)
    alice = UserFactory()
    request = AccessRequestFactory(applicant=alice, release=gated)
    services.request_approve(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True), access_request=request
    )
    services.grant_issue(request_id=request.pk)
    AccessRequestFactory(release=gated)
    token = services.token_create(
        actor=services.Actor(user=alice, credential="session", reauthenticated=True), name="fuzz"
    )[1]
    reviewer_token = services.token_create(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True), name="fuzz", review=True
    )[1]
    return {"url": live_server.url, "token": token, "reviewer_token": reviewer_token}


FUZZ = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def fuzz_every_operation(base_url, headers=None):
    """Each operation of the schema gets its own generated examples; failures are collected, not stopped at."""
    schema = schemathesis.openapi.from_url(f"{base_url}/api/schema")
    failures, operations = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @FUZZ
        @given(case=operation.as_strategy())
        def run(case):
            case.call_and_validate(headers=headers, checks=CHECKS, timeout=10)

        try:
            run()
        except Exception as exc:  # hypothesis re-raises the check's failure with the reproducing case
            failures.append(f"{operation.label}: {exc}")
    assert operations >= 10
    assert not failures, "\n\n".join(failures)


def test_api_anonymously(portal):
    fuzz_every_operation(portal["url"])


def test_api_as_a_granted_researcher(portal):
    fuzz_every_operation(portal["url"], {"Authorization": f"Bearer {portal['token']}"})


def test_api_as_a_reviewer(portal):
    fuzz_every_operation(portal["url"], {"Authorization": f"Bearer {portal['reviewer_token']}"})
