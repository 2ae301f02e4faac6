"""Django's browser-session middleware (sessions, the logged-in user, messages), skipped on the
machine endpoints.

SDKs call the evaluation endpoints (FLAGS_KEY_ONLY_PATHS: /api/evaluate, /api/evaluate/bulk,
/api/sdk/snapshot, /ofrep/) with an API key in a header and never send cookies, so loading a
session, a lazy user and message storage for each call is pure cost: about a sixth of an evaluate
request's Django time (bench/rest.py). On those paths these middleware pass the request straight
through, so a session cookie cannot authenticate there: keys only, which also keeps them free of
cookie-borne CSRF. Every other path (admin, pages, the management API) is unchanged.

Subclasses rather than a wrapper, so MIDDLEWARE keeps Django's order and the admin's checks for
these middleware still hold.
"""

from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions


class SkipOnKeyOnlyPaths:
    def __call__(self, request):  # under ASGI both branches return a coroutine for the caller to await
        if request.path_info.startswith(settings.FLAGS_KEY_ONLY_PATHS):
            return self.get_response(request)
        return super().__call__(request)


class SessionMiddleware(SkipOnKeyOnlyPaths, sessions.SessionMiddleware):
    pass


class AuthenticationMiddleware(SkipOnKeyOnlyPaths, auth.AuthenticationMiddleware):
    pass


class MessageMiddleware(SkipOnKeyOnlyPaths, messages.MessageMiddleware):
    pass
