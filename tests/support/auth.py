import time

from allauth.account.internal.flows import login


def login_recently(client, user):
    """Sign in as if through the password form just now, which reviewer decisions require."""
    client.force_login(user)
    session = client.session
    session[login.AUTHENTICATION_METHODS_SESSION_KEY] = [{"method": "password", "at": time.time(), "email": user.email}]
    session[login._AUTHENTICATION_METHODS_USER_SESSION_KEY] = str(user.pk)
    session.save()
    return client
