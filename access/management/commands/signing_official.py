from django.core.management.base import BaseCommand, CommandError

from access import services
from access.models import Institution, SigningOfficial, User


class Command(BaseCommand):
    help = (
        "Appoint an account a signing official of a confirmed institution (by ROR id), or end the appointment with "
        "--end. The person signs in once through the institution's provider first, which creates the account."
    )

    def add_arguments(self, parser):
        parser.add_argument("ror_id")
        parser.add_argument("email")
        parser.add_argument("--end", action="store_true", help="end the appointment")

    def handle(self, *args, ror_id, email, end, **options):
        institution = Institution.objects.filter(ror_id=ror_id.lower().removeprefix("https://ror.org/")).first()
        if institution is None:
            raise CommandError(f"no institution with ROR id {ror_id}")
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            raise CommandError(f"no account with email {email}; the person must sign in first")
        actor = services.command_actor("signing_official")
        try:
            if end:
                official = SigningOfficial.objects.filter(institution=institution, user=user, ended_at=None).first()
                if official is None:
                    raise CommandError(f"{user.email} is not a signing official of {institution.name}")
                services.official_end(actor=actor, official=official)
                self.stdout.write(f"{user.email} is no longer a signing official of {institution.name}")
                return
            services.official_appoint(actor=actor, institution=institution, user=user)
        except services.ServiceError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"{user.email} is a signing official of {institution.name}"))
