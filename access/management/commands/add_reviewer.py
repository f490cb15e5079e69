from django.core.management.base import BaseCommand, CommandError

from access import services
from access.models import User


class Command(BaseCommand):
    help = "Put an account in the Reviewers group (and the Django admin with --staff)."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--staff", action="store_true", help="also allow the Django admin")
        parser.add_argument("--remove", action="store_true", help="take the account out of the Reviewers group")

    def handle(self, *args, email, staff, remove, **options):
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            raise CommandError(f"no account with email {email}; the person must sign up first")
        if remove:
            services.reviewer_remove(user=user, actor=services.command_actor("add_reviewer"))
            self.stdout.write(f"{user.email} is no longer a reviewer")
            return
        services.reviewer_add(user=user, staff=staff, actor=services.command_actor("add_reviewer"))
        self.stdout.write(self.style.SUCCESS(f"{user.email} is a reviewer"))
