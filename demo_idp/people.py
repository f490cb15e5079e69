"""The people of Demo University and the portal's client registration: made on the first start, kept after."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import check_password
from django.db import transaction
from oauth2_provider.models import get_application_model

from demo_idp.files import private_file, random_password, random_secret, write_private
from demo_idp.models import Person

DOMAIN = "uni.example"
DEFAULT_ASSURANCE = ["https://refeds.org/assurance/IAP/medium"]
DEMO_PEOPLE = [
    {
        "email": f"ada.lovelace@{DOMAIN}",
        "name": "Ada Lovelace",
        "affiliations": [f"faculty@{DOMAIN}", f"member@{DOMAIN}", f"employee@{DOMAIN}"],
    },
    {
        "email": f"sam.student@{DOMAIN}",
        "name": "Sam Student",
        "affiliations": [f"student@{DOMAIN}", f"member@{DOMAIN}"],
    },
    # The portal's staff appoint her a signing official of Demo University once she has signed in.
    {
        "email": f"olive.official@{DOMAIN}",
        "name": "Olive Official",
        "affiliations": [f"staff@{DOMAIN}", f"member@{DOMAIN}", f"employee@{DOMAIN}"],
    },
]


@transaction.atomic
def person_save(
    *,
    email: str,
    name: str,
    affiliations: list[str],
    password: str | None,
    principal_name: str | None = None,
    assurance: list[str] | None = None,
) -> Person:
    """Create the person with this email, or update what the university asserts about them. The password is set
    when given; None keeps the one they have."""
    email = email.strip().lower()
    given_name, _, family_name = name.strip().rpartition(" ")
    if not given_name:
        given_name, family_name = family_name, ""
    user, _ = get_user_model().objects.get_or_create(username=email, defaults={"email": email})
    if password is not None:
        user.set_password(password)
        user.save(update_fields=["password"])
    person, _ = Person.objects.update_or_create(
        user=user,
        defaults={
            "name": name.strip(),
            "given_name": given_name,
            "family_name": family_name,
            "principal_name": principal_name or email,
            "affiliations": list(affiliations),
            "assurance": list(DEFAULT_ASSURANCE if assurance is None else assurance),
        },
    )
    return person


def read_people(path) -> dict[str, str]:
    """people.txt as {email: password}."""
    people = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        if line.strip() and not line.startswith("#"):
            email, password = line.split()
            people[email] = password
    return people


def people_ensure() -> dict[str, str]:
    """The demo people exist with the passwords in people.txt; a person missing from the file (the first start)
    gets a new password, written there. Returns {email: password}."""
    path = settings.PEOPLE_FILE
    passwords = read_people(path)
    known = set(passwords)
    existing = set(
        get_user_model()
        .objects.filter(username__in=[p["email"] for p in DEMO_PEOPLE])
        .values_list("username", flat=True)
    )
    for person in DEMO_PEOPLE:
        passwords.setdefault(person["email"], random_password())
    if set(passwords) != known:  # written first: a start that fails after this one keeps the same passwords
        lines = ["# Demo University: demo sign-in for the portal's `make run` (email, password)"]
        lines += [f"{email} {password}" for email, password in passwords.items()]
        write_private(path, "\n".join(lines) + "\n")
    for person in DEMO_PEOPLE:
        email = person["email"]
        # Hashing a password takes a while: only a new password, or a new database, sets one.
        password = passwords[email] if email not in known or email not in existing else None
        person_save(**person, password=password)
    return passwords


def redirect_uris(portal_url: str) -> list[str]:
    """allauth's callback under the portal URL; on a loopback address, under both of its spellings, as a browser
    may open the portal at either."""
    parts = urlsplit(portal_url.rstrip("/"))
    urls = [portal_url.rstrip("/") + settings.PORTAL_REDIRECT_PATH]
    loopback = {"127.0.0.1": "localhost", "localhost": "127.0.0.1"}
    if parts.hostname in loopback:
        netloc = loopback[parts.hostname] + (f":{parts.port}" if parts.port else "")
        urls.append(urlunsplit((parts.scheme, netloc, parts.path, "", "")) + settings.PORTAL_REDIRECT_PATH)
    return urls


@transaction.atomic
def client_ensure(*, portal_url: str):
    """The portal's client: confidential, authorization code with PKCE, consent-free, ID tokens signed with RS256.

    A second start keeps the secret (client_secret beside the key) and follows a changed portal URL."""
    application_model = get_application_model()
    secret = private_file(settings.CLIENT_SECRET_FILE, random_secret).strip()
    fields = {
        "name": "Model access portal (demo)",
        "client_type": application_model.CLIENT_CONFIDENTIAL,
        "authorization_grant_type": application_model.GRANT_AUTHORIZATION_CODE,
        "redirect_uris": " ".join(redirect_uris(portal_url)),
        "skip_authorization": True,
        "algorithm": application_model.RS256_ALGORITHM,
    }
    application = application_model.objects.filter(client_id=settings.CLIENT_ID).first()
    if application is None:
        application = application_model(client_id=settings.CLIENT_ID)
    for name, value in fields.items():
        setattr(application, name, value)
    if not application.client_secret or not check_password(secret, application.client_secret):
        application.client_secret = secret  # hashed on save
    application.save()
    return application
