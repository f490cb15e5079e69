import factory
from django.utils import timezone

from access import services
from access.models import AccessRequest, License, ModelRelease, User
from access.storage import get_storage

# Files are registered as the operator's `register_release` command registers them.
REGISTRAR = services.command_actor("register_release")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@uni.example")
    password = factory.PostGenerationMethodCall("set_password", "correct horse battery staple")

    @factory.post_generation
    def verified(self, create, extracted, **kwargs):
        """Users have a verified email unless created with verified=False."""
        from allauth.account.models import EmailAddress

        self.save()
        if create and extracted is not False:
            EmailAddress.objects.create(user=self, email=self.email, verified=True, primary=True)


class LicenseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = License
        django_get_or_create = ["slug", "version"]

    slug = "test-noncommercial"
    version = "1.0"
    title = "Test Non-Commercial License"
    text = "Use for non-commercial research only."


class ReleaseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ModelRelease

    repo_id = factory.Sequence(lambda n: f"testorg/model-{n}")
    display_name = factory.LazyAttribute(lambda o: o.repo_id.split("/")[1])
    parameters = 125_000_000
    access = "open"
    license = factory.Maybe(
        factory.LazyAttribute(lambda o: o.access == "gated"), factory.SubFactory(LicenseFactory), None
    )


def add_file(release, path, content: bytes, *, piece_size: int | None = None):
    """Store bytes through the configured storage and record the file with its pieces, as the commands do."""
    import io

    key = f"{release.repo_id}/{path}"
    digest = get_storage().save(key, io.BytesIO(content), piece_size=piece_size)
    services.release_upsert_file(
        actor=REGISTRAR,
        release=release,
        path=path,
        size=digest.size,
        sha256=digest.sha256,
        storage_key=key,
        piece_size=digest.piece_size,
        pieces=digest.pieces,
    )
    services.release_refresh_revision(actor=REGISTRAR, release=release)
    return release.files.get(path=path)


# A complete, valid set of answers to the request form.
ANSWERS = {
    "full_name": "Alice Example",
    "affiliation": "University of Examples",
    "organization_type": "academic",
    "country": "NL",
    "role": "PhD student",
    "intended_use": "We study calibration and memorisation in large language models across scales, using "
    "held-out reasoning benchmarks; results will be published openly.",
    "publications": "",
}


class AccessRequestFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AccessRequest

    applicant = factory.SubFactory(UserFactory)
    release = factory.SubFactory(ReleaseFactory, access="gated")
    full_name = "Alice Example"
    email = factory.LazyAttribute(lambda o: o.applicant.email)
    affiliation = "University of Examples"
    organization_type = "academic"
    country = "NL"
    role = "PhD student"
    intended_use = "Studying calibration of large language models on held-out reasoning benchmarks."
    license = factory.LazyAttribute(lambda o: o.release.license)
    license_version = factory.LazyAttribute(lambda o: o.release.license.version)
    license_accepted_at = factory.LazyFunction(timezone.now)
    license_accepted_ip = "127.0.0.1"
    noncommercial_attested = True


def grant_for(user, release, reviewer):
    """An approved request and its issued grant, through the same services the reviewer's click runs."""
    request = AccessRequestFactory(applicant=user, release=release)
    services.request_approve(
        actor=services.Actor(user=reviewer, credential="session", reauthenticated=True), access_request=request
    )
    return services.grant_issue(request_id=request.pk)


def token_secret(user, name="test", **kwargs) -> str:
    return services.token_create(
        actor=services.Actor(user=user, credential="session", reauthenticated=True), name=name, **kwargs
    )[1]


def add_question(release, key, kind="short_text", **fields):
    """One of a release's own questions, through the service a release manager's form calls."""
    return services.question_create(
        actor=services.command_actor("tests"),
        release=release,
        key=key,
        fields={"kind": kind, "label_en": fields.pop("label_en", key.replace("_", " ").capitalize()), **fields},
    )


# Small files of the kinds an upload question takes, recognised by their first bytes.
PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
