import secrets

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from access import services
from access.models import User

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
