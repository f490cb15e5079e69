from django.core.management.base import BaseCommand, CommandError

from access import services
from access.models import User


class Command(BaseCommand):
    help = (
        "Put an account in the Reviewers group (and the Django admin with --staff), or with --release-manager in "
        "the Release managers group (access forms, license versions, revisions)."
    )

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--staff", action="store_true", help="also allow the Django admin")
        parser.add_argument("--remove", action="store_true", help="take the account out of the Reviewers group")
        parser.add_argument("--release-manager", action="store_true", help="the Release managers group instead")

    def handle(self, *args, email, staff, remove, release_manager, **options):
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            raise CommandError(f"no account with email {email}; the person must sign up first")
        actor = services.command_actor("add_reviewer")
        if release_manager:
            if remove:
                services.release_manager_remove(user=user, actor=actor)
                self.stdout.write(f"{user.email} is no longer a release manager")
            else:
                services.release_manager_add(user=user, actor=actor)
                self.stdout.write(self.style.SUCCESS(f"{user.email} is a release manager"))
            return
        if remove:
            services.reviewer_remove(user=user, actor=services.command_actor("add_reviewer"))
            self.stdout.write(f"{user.email} is no longer a reviewer")
            return
        services.reviewer_add(user=user, staff=staff, actor=services.command_actor("add_reviewer"))
        self.stdout.write(self.style.SUCCESS(f"{user.email} is a reviewer"))
