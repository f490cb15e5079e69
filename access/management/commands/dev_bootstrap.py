import secrets

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from access import catalog_data, services
from access.models import Institution, SigningOfficial, User, VerifiedIdentity

DEV_REVIEWER = "reviewer@localhost"


class Command(BaseCommand):
    help = "Development only: create a local reviewer (and release manager) account once and print how to sign in."

    def handle(self, *args, **options):
        if not settings.DEV_MODE:
            raise CommandError("dev_bootstrap only runs in development mode (PORTAL_DEV_MODE=1, set by `make run`).")
        path = settings.VAR_DIR / "dev-reviewer.txt"
        user = User.objects.filter(email=DEV_REVIEWER).first()
        if user is None or not path.exists():
            password = secrets.token_urlsafe(12)
            user = user or User.objects.create_user(DEV_REVIEWER, password)
            user.set_password(password)
            user.is_staff = True
            user.save()
            services.reviewer_add(user=user, verified=True, actor=services.command_actor("dev_bootstrap"))
            services.release_manager_add(user=user, actor=services.command_actor("dev_bootstrap"))
            path.write_text(password)
            path.chmod(0o600)
        self.stdout.write(
            self.style.SUCCESS(f"Reviewer sign-in: {DEV_REVIEWER} / {path.read_text().strip()}  (stored in {path})")
        )
        self._demo_official()

    def _demo_official(self):
        """Appoint Demo University's demo official once she has signed in through it (her first sign-in creates
        her account); until then, say how."""
        demo = catalog_data.DEMO_INSTITUTION
        institution = Institution.objects.filter(ror_id=demo["ror_id"], confirmed_at__isnull=False).first()
        if institution is None:
            return
        identity = VerifiedIdentity.objects.filter(user__email=demo["official"], institution=institution).first()
        if identity is None:
            self.stdout.write(
                f"Signing official: sign in as {demo['official']} with {institution.name}, then run `make run` again"
            )
            return
        # Once: an appointment an administrator ended later stays ended.
        if not SigningOfficial.objects.filter(institution=institution, user=identity.user).exists():
            services.official_appoint(
                actor=services.command_actor("dev_bootstrap"), institution=institution, user=identity.user
            )
        if SigningOfficial.objects.filter(institution=institution, user=identity.user, ended_at=None).exists():
            self.stdout.write(f"Signing official of {institution.name}: {demo['official']} (/official/)")
