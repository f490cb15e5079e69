from django.core.management.base import BaseCommand, CommandError

from access import services
from access.models import Institution, InstitutionIdentifier


class Command(BaseCommand):
    help = (
        "Create or change an institution (keyed by its ROR id) and confirm it: its email domains, the issuers of its "
        "own OpenID Providers and its IdPs' entity ids (as CILogon names them). Lists given replace the stored ones."
    )

    def add_arguments(self, parser):
        parser.add_argument("ror_id", help="e.g. 02mhbdp94 or https://ror.org/02mhbdp94")
        parser.add_argument("--name", help="required when creating")
        parser.add_argument("--domain", action="append", dest="domains", help="an email domain (repeatable)")
        parser.add_argument(
            "--issuer", action="append", dest="issuers", help="an OpenID Provider's issuer (repeatable)"
        )
        parser.add_argument("--idp", action="append", dest="idps", help="an IdP entity id (repeatable)")
        state = parser.add_mutually_exclusive_group()
        state.add_argument("--confirm", action="store_true", help="confirm it: it verifies affiliations from now on")
        state.add_argument("--unconfirm", action="store_true", help="withdraw the confirmation")

    def handle(self, *args, ror_id, name, domains, issuers, idps, confirm, unconfirm, **options):
        actor = services.command_actor("institution")
        key = ror_id.strip().lower().removeprefix("https://ror.org/")
        institution = Institution.objects.filter(ror_id=key).first()
        try:
            if institution is None:
                if not name:
                    raise CommandError("--name is required to create an institution")
                institution = services.institution_create(
                    actor=actor,
                    ror_id=ror_id,
                    name=name,
                    email_domains=domains or [],
                    issuers=issuers or [],
                    idp_entity_ids=idps or [],
                )
            else:
                institution = services.institution_update(
                    actor=actor,
                    institution=institution,
                    name=name,
                    email_domains=domains,
                    issuers=issuers,
                    idp_entity_ids=idps,
                )
            if confirm or unconfirm:
                services.institution_confirm(actor=actor, institution=institution, confirmed=confirm)
        except services.ServiceError as exc:
            raise CommandError(str(exc)) from None
        Kind = InstitutionIdentifier.Kind
        state = "confirmed" if institution.is_confirmed else "not confirmed"
        self.stdout.write(
            self.style.SUCCESS(f"{institution.name} ({institution.ror_id}), {state}")
            + f"\n  email domains: {', '.join(institution.identifiers_of(Kind.EMAIL_DOMAIN)) or '-'}"
            + f"\n  issuers: {', '.join(institution.identifiers_of(Kind.OIDC_ISSUER)) or '-'}"
            + f"\n  IdP entity ids: {', '.join(institution.identifiers_of(Kind.IDP_ENTITY_ID)) or '-'}"
        )
