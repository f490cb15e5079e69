from django.core.management.base import BaseCommand

from demo_idp.people import person_save


class Command(BaseCommand):
    help = "Add a person to Demo University (or update one with the same email)."

    def add_arguments(self, parser):
        parser.add_argument("--email", required=True)
        parser.add_argument("--name", required=True)
        parser.add_argument("--password", required=True)
        parser.add_argument(
            "--affiliation",
            action="append",
            default=[],
            help="an eduPersonScopedAffiliation such as faculty@uni.example; repeat for several",
        )
        parser.add_argument("--principal-name", help="eduPersonPrincipalName (default: the email)")
        parser.add_argument(
            "--assurance",
            action="append",
            default=None,
            help="an eduPersonAssurance value; repeat for several (default: REFEDS IAP/medium)",
        )

    def handle(self, *args, **options):
        person = person_save(
            email=options["email"],
            name=options["name"],
            affiliations=options["affiliation"],
            password=options["password"],
            principal_name=options["principal_name"],
            assurance=options["assurance"],
        )
        self.stdout.write(f"{person.user.email} sub={person.subject}")
