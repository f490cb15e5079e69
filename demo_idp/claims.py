"""What the demo institution asserts about a person, in the ID token and at the userinfo endpoint alike."""

from oauth2_provider.oauth2_validators import OAuth2Validator


class Validator(OAuth2Validator):
    oidc_claim_scope = {
        **OAuth2Validator.oidc_claim_scope,
        "eduperson_scoped_affiliation": "eduperson",
        "eduperson_principal_name": "eduperson",
        "eduperson_assurance": "eduperson",
    }

    # Without a request argument, so the discovery document lists these claims.
    def get_additional_claims(self):
        return {
            "email": lambda request: request.user.email,
            "email_verified": lambda request: True,
            "name": lambda request: request.user.person.name,
            "given_name": lambda request: request.user.person.given_name,
            "family_name": lambda request: request.user.person.family_name,
            "eduperson_scoped_affiliation": lambda request: list(request.user.person.affiliations),
            "eduperson_principal_name": lambda request: request.user.person.principal_name,
            "eduperson_assurance": lambda request: list(request.user.person.assurance),
        }

    def get_claim_dict(self, request):
        return {**super().get_claim_dict(request), "sub": lambda request: request.user.person.subject}
