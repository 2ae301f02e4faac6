"""Failed admin logins are limited by django-axes (settings: FLAGS_LOGIN_FAILURE_LIMIT,
FLAGS_LOGIN_COOLOFF_MINUTES): per client address and per account, a lockout answers 429.

axes' backend refuses an ``authenticate()`` call without a request. Only code outside HTTP calls
it that way (a management command, a script, the test client's ``login()``): there is no client
to count or lock out there, so this backend lets it through to ModelBackend. Every login over
HTTP (the admin's form) passes the request and is counted.
"""

from axes.backends import AxesStandaloneBackend


class LoginLimitBackend(AxesStandaloneBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
