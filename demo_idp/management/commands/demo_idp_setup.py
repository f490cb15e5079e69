from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from demo_idp.people import DEMO_PEOPLE, client_ensure, people_ensure


class Command(BaseCommand):
    help = "Migrate, then make sure the portal's client and the demo people exist; print how to sign in."

    def handle(self, *args, **options):
        call_command("migrate", interactive=False, verbosity=0)
        client_ensure(portal_url=settings.PORTAL_URL)
        passwords = people_ensure()
        self.stdout.write(f"Demo University (demo sign-in for the portal's `make run`): {settings.ISSUER}")
        for person in DEMO_PEOPLE:
            role = person["affiliations"][0].split("@")[0]
            self.stdout.write(f"  {person['email']}  password: {passwords[person['email']]}  ({role})")
