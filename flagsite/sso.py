"""Single sign-on with OpenID Connect for the dashboard and admin (mozilla-django-oidc), configured by
settings.FLAGS_OIDC_* (README "Single sign-on"); what a login grants is projects/sso.py's.

/oidc/authenticate/ sends the browser to the provider (state, nonce and PKCE kept in the session);
/oidc/callback/ takes the code back, and OIDCBackend exchanges it, checks the ID token (signature
against the provider's keys, issuer, audience, nonce), reads the claims (ID token, then userinfo)
and syncs the user. The library's views and backend read their settings through ``get_settings``:
here it answers from FLAGS_OIDC_* and the issuer's discovery document, fetched once per process on
the first login, so nothing is fetched at start-up and no OIDC_* setting exists.

FLAGS_PASSWORD_LOGIN=false leaves SSO as the only way in: the login page offers no form, a password
POST is refused (403), and PasswordBackend accepts no password from anywhere else either.
"""

import dataclasses
import logging
from urllib.parse import urlparse

import jwt
import requests
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core import checks
from django.core.exceptions import SuspiciousOperation
from django.db import DatabaseError
from django.contrib.admin.forms import AdminAuthenticationForm
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.generic import View
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import import_from_settings
from mozilla_django_oidc.views import (
    OIDCAuthenticationCallbackView,
    OIDCAuthenticationRequestView,
)

from audit.actor import Actor
from flags.errors import ServiceError
from projects import sso

logger = logging.getLogger("flagsite.sso")
ENDPOINTS = {  # the library's setting: the discovery document's field and our setting
    "OIDC_OP_AUTHORIZATION_ENDPOINT": ("authorization_endpoint", "FLAGS_OIDC_AUTHORIZATION_ENDPOINT"),
    "OIDC_OP_TOKEN_ENDPOINT": ("token_endpoint", "FLAGS_OIDC_TOKEN_ENDPOINT"),
    "OIDC_OP_USER_ENDPOINT": ("userinfo_endpoint", "FLAGS_OIDC_USERINFO_ENDPOINT"),
    "OIDC_OP_JWKS_ENDPOINT": ("jwks_uri", "FLAGS_OIDC_JWKS_URI"),
}
FAILED_URL = "/admin/login/?sso=failed"
_discovered = {}  # issuer -> its discovery document (this process)


class ProviderError(Exception):
    """The provider could not be reached or answered something unusable."""


def discovery(issuer):
    document = _discovered.get(issuer)
    if document is None:
        url = f"{issuer}/.well-known/openid-configuration"
        try:
            response = requests.get(url, timeout=settings.FLAGS_OIDC_TIMEOUT)
            response.raise_for_status()
            document = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise ProviderError(f"discovery document {url}: {exc}") from None
        if not isinstance(document, dict) or str(document.get("issuer", "")).rstrip("/") != issuer:
            raise ProviderError(f"{url} names another issuer ({document.get('issuer') if isinstance(document, dict) else '?'})")
        _discovered[issuer] = document
    return document


def endpoint(library_name):
    field, ours = ENDPOINTS[library_name]
    explicit = getattr(settings, ours)
    if explicit:
        return explicit
    value = discovery(settings.FLAGS_OIDC_ISSUER).get(field)
    if not value:
        raise ProviderError(f"the discovery document has no {field}; set {ours}")
    return value


def library_setting(attr, *default):
    """mozilla-django-oidc's settings, answered from ours (module docstring)."""
    if attr in ENDPOINTS:
        return endpoint(attr)
    ours = {
        "OIDC_RP_CLIENT_ID": settings.FLAGS_OIDC_CLIENT_ID,
        "OIDC_RP_CLIENT_SECRET": settings.FLAGS_OIDC_CLIENT_SECRET,
        "OIDC_RP_SCOPES": settings.FLAGS_OIDC_SCOPES,
        "OIDC_RP_SIGN_ALGO": settings.FLAGS_OIDC_SIGN_ALGO,
        "OIDC_TIMEOUT": settings.FLAGS_OIDC_TIMEOUT,
        "OIDC_USE_NONCE": True,
        "OIDC_USE_PKCE": True,
        "OIDC_CREATE_USER": True,
        "LOGIN_REDIRECT_URL": "/",
        "LOGIN_REDIRECT_URL_FAILURE": FAILED_URL,
    }
    if attr in ours:
        return ours[attr]
    return import_from_settings(attr, *default)


class PasswordBackend(ModelBackend):
    """Django's ModelBackend (passwords and model permissions); no password is accepted while
    FLAGS_PASSWORD_LOGIN is off."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if not settings.FLAGS_PASSWORD_LOGIN:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


class OIDCBackend(OIDCAuthenticationBackend):
    """Answers only the callback's authenticate() (it passes the nonce), and only with FLAGS_OIDC on."""

    get_settings = staticmethod(library_setting)

    def __init__(self, *args, **kwargs):
        # The library reads its endpoints here, i.e. on every authenticate() and session lookup of
        # any backend; ours are read when a login needs them.
        self.UserModel = get_user_model()

    def authenticate(self, request, **kwargs):
        if not settings.FLAGS_OIDC or request is None or "nonce" not in kwargs:
            return None
        self.OIDC_OP_TOKEN_ENDPOINT = endpoint("OIDC_OP_TOKEN_ENDPOINT")
        self.OIDC_OP_USER_ENDPOINT = endpoint("OIDC_OP_USER_ENDPOINT")
        self.OIDC_OP_JWKS_ENDPOINT = endpoint("OIDC_OP_JWKS_ENDPOINT")
        self.OIDC_RP_CLIENT_ID = settings.FLAGS_OIDC_CLIENT_ID
        self.OIDC_RP_CLIENT_SECRET = settings.FLAGS_OIDC_CLIENT_SECRET
        self.OIDC_RP_SIGN_ALGO = settings.FLAGS_OIDC_SIGN_ALGO
        self.OIDC_RP_IDP_SIGN_KEY = None
        return super().authenticate(request, **kwargs)

    def retrieve_matching_jwk(self, token):
        """The provider's key for this token: by key id, or by algorithm when the token names none
        (a provider with one signing key may leave "kid" out)."""
        header = jwt.get_unverified_header(token)
        try:
            response = requests.get(self.OIDC_OP_JWKS_ENDPOINT, timeout=settings.FLAGS_OIDC_TIMEOUT)
            response.raise_for_status()
            keys = response.json().get("keys", [])
        except (requests.RequestException, ValueError, AttributeError) as exc:
            raise ProviderError(f"keys {self.OIDC_OP_JWKS_ENDPOINT}: {exc}") from None
        keys = [key for key in keys if isinstance(key, dict) and key.get("use", "sig") == "sig"
                and key.get("alg", header.get("alg")) == header.get("alg")
                and ("kid" not in header or key.get("kid") == header["kid"])]
        if len(keys) != 1:
            raise SuspiciousOperation(f"{len(keys)} keys of the provider match the token's header {header}")
        return jwt.PyJWK(keys[0])

    def verify_token(self, token, **kwargs):
        """The library checks the signature and nonce; the issuer and audience are checked here."""
        payload = super().verify_token(token, **kwargs)
        issuer = settings.FLAGS_OIDC_ISSUER
        if issuer and str(payload.get("iss", "")).rstrip("/") != issuer:
            raise SuspiciousOperation(f"token from issuer {payload.get('iss')!r}, expected {issuer!r}")
        audience = payload.get("aud")
        audience = [audience] if isinstance(audience, str) else list(audience or ())
        if settings.FLAGS_OIDC_CLIENT_ID not in audience:
            raise SuspiciousOperation(f"token for audience {audience}, not this client")
        return payload

    def get_userinfo(self, access_token, id_token, payload):
        """The ID token's claims, completed by the userinfo endpoint's (some providers put the
        groups in one, some in the other)."""
        return {**payload, **super().get_userinfo(access_token, id_token, payload)}

    def get_or_create_user(self, access_token, id_token, payload):
        claims = self.get_userinfo(access_token, id_token, payload)
        actor = dataclasses.replace(Actor.from_request(self.request), label="sso")
        return sso.login_sync(actor=actor, claims=claims)


def login_context(request, **extra):
    return {"sso_enabled": settings.FLAGS_OIDC, "sso_label": settings.FLAGS_OIDC_BUTTON_LABEL,
            "password_login": settings.FLAGS_PASSWORD_LOGIN, "sso_failed": request.GET.get("sso") == "failed",
            **extra}


def _login_page(request, status, **extra):
    """The login page without the admin's form view (a refused POST, an unreachable provider)."""
    context = {**admin.site.each_context(request), **login_context(request, **extra),
               "title": "Log in", "next": request.GET.get("next", "")}
    return TemplateResponse(request, "admin/login.html", context, status=status)


class DashboardLoginForm(AdminAuthenticationForm):
    """The admin's form, also letting in project members who are not staff (they use the dashboard
    of their projects: projects.policy.may_use_dashboard; the admin itself still refuses them)."""

    def confirm_login_allowed(self, user):
        from projects import policy

        if user.is_active and not user.is_staff and policy.may_use_dashboard(user):
            return
        super().confirm_login_allowed(user)


@never_cache
@csrf_protect
def login(request):
    """The admin's login page, which is also the dashboard's (LOGIN_URL): the password form unless
    FLAGS_PASSWORD_LOGIN is off, and the SSO button when FLAGS_OIDC is on. A member who is not
    staff goes to the dashboard, never to the admin's index (which would refuse them)."""
    if request.method == "POST" and not settings.FLAGS_PASSWORD_LOGIN:
        logger.warning("password login refused (FLAGS_PASSWORD_LOGIN is off)")
        return _login_page(request, 403, sso_error="Password sign-in is switched off: sign in with single sign-on.")
    admin.site.login_form = DashboardLoginForm  # the admin's own login view, with the form above
    response = admin.site.login(request, extra_context=login_context(request))
    user = getattr(request, "user", None)
    if response.status_code == 302 and user is not None and user.is_authenticated and not user.is_staff \
            and response.get("Location", "").startswith("/admin/"):
        return HttpResponseRedirect("/")
    return response


class AuthenticateView(OIDCAuthenticationRequestView):
    get_settings = staticmethod(library_setting)

    def __init__(self, **kwargs):
        View.__init__(self, **kwargs)  # the library reads the endpoint here; ours when a login starts

    def get(self, request):
        if not settings.FLAGS_OIDC:
            raise Http404("Single sign-on is not configured.")
        try:
            self.OIDC_OP_AUTH_ENDPOINT = endpoint("OIDC_OP_AUTHORIZATION_ENDPOINT")
        except ProviderError as exc:
            logger.error("single sign-on: the provider cannot be used: %s", exc)
            return _login_page(request, 503, sso_error="The sign-in provider cannot be reached; try again shortly.")
        self.OIDC_RP_CLIENT_ID = settings.FLAGS_OIDC_CLIENT_ID
        return super().get(request)


class CallbackView(OIDCAuthenticationCallbackView):
    get_settings = staticmethod(library_setting)

    def get(self, request):
        if not settings.FLAGS_OIDC:
            raise Http404("Single sign-on is not configured.")
        try:
            return super().get(request)
        except (ProviderError, requests.RequestException, SuspiciousOperation, sso.MappingError, ServiceError,
                DatabaseError) as exc:
            logger.error("single sign-on failed: %s", exc)  # the user sees "did not complete", the log why
            return self.login_failure()

    def login_success(self):
        response = super().login_success()
        self.request.session.set_expiry(settings.FLAGS_OIDC_SESSION_SECONDS)
        return response


urlpatterns = [
    path("authenticate/", AuthenticateView.as_view(), name="oidc_authentication_init"),
    path("callback/", CallbackView.as_view(), name="oidc_authentication_callback"),
]


# -- configuration checks: `manage.py check`, which migrate and bootstrap run --------------------

def _url_error(name, value):
    parts = urlparse(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return f"{name} must be an http(s) URL, not {value!r}."
    if settings.FLAGS_PRODUCTION and parts.scheme != "https":
        return f"{name} must use https when FLAGS_PRODUCTION=true."
    return None


def check_settings(app_configs=None, **kwargs):
    errors = []

    def error(message, hint=None, id="flagsite.E201"):
        errors.append(checks.Error(message, hint=hint, id=id))

    if not settings.FLAGS_PASSWORD_LOGIN and not settings.FLAGS_OIDC:
        error("FLAGS_PASSWORD_LOGIN is off and single sign-on (FLAGS_OIDC) is not on: nobody could sign in.",
              "Set FLAGS_OIDC=true and configure the provider, or FLAGS_PASSWORD_LOGIN=true.", "flagsite.E200")
    if not settings.FLAGS_OIDC:
        return errors
    endpoints = [ours for _field, ours in ENDPOINTS.values()]
    if not settings.FLAGS_OIDC_ISSUER and not all(getattr(settings, name) for name in endpoints):
        error("FLAGS_OIDC is on but FLAGS_OIDC_ISSUER is not set.",
              f"Set FLAGS_OIDC_ISSUER to the provider's issuer URL (or all of {', '.join(endpoints)}).")
    for name in ["FLAGS_OIDC_ISSUER", *endpoints]:
        if getattr(settings, name) and (problem := _url_error(name, getattr(settings, name))):
            error(problem)
    if not settings.FLAGS_OIDC_CLIENT_ID:
        error("FLAGS_OIDC is on but FLAGS_OIDC_CLIENT_ID is not set.",
              "Register Flagsite with the provider and set FLAGS_OIDC_CLIENT_ID (and FLAGS_OIDC_CLIENT_SECRET).")
    algorithm = settings.FLAGS_OIDC_SIGN_ALGO
    if not algorithm.startswith(("RS", "ES", "HS")):
        error(f"FLAGS_OIDC_SIGN_ALGO {algorithm!r} is not supported.", "Use RS256 (most providers), ES256 or HS256.")
    elif algorithm.startswith("HS") and not settings.FLAGS_OIDC_CLIENT_SECRET:
        error(f"FLAGS_OIDC_SIGN_ALGO {algorithm} verifies tokens with the client secret: set FLAGS_OIDC_CLIENT_SECRET.")
    if "openid" not in settings.FLAGS_OIDC_SCOPES.split():
        error(f"FLAGS_OIDC_SCOPES {settings.FLAGS_OIDC_SCOPES!r} lacks 'openid'.")
    for name in ("FLAGS_OIDC_USERNAME_CLAIM", "FLAGS_OIDC_GROUPS_CLAIM"):
        if not getattr(settings, name).strip():
            error(f"{name} is empty.")
    try:
        sso.group_roles()
    except sso.MappingError as exc:
        error(str(exc), "See README 'Single sign-on' for the format.", "flagsite.E202")
    return errors


def refuse_bad_settings():
    """Start-up of a web process: the same errors as `manage.py check`, as a refusal to start."""
    errors = check_settings()
    if errors:
        raise SystemExit("flagsite: refusing to start: " + " ".join(f"{e.msg} {e.hint or ''}".strip() for e in errors))


def check_mapped_projects(app_configs=None, databases=None, **kwargs):
    """Warns of grants for projects that do not exist (they are skipped at login). Needs the database."""
    if not settings.FLAGS_OIDC or not databases:
        return []
    from projects.models import Project

    try:
        mapping = sso.group_roles()
        known = set(Project.objects.values_list("key", flat=True))
    except (sso.MappingError, DatabaseError):
        return []  # reported by check_settings / not migrated yet
    missing = sorted({g["project"] for grants in mapping.values() for g in grants} - known)
    return [checks.Warning(f"FLAGS_OIDC_GROUP_ROLES grants roles in projects that do not exist: {', '.join(missing)}.",
                           hint="Create them, or fix the keys; until then those grants are skipped.",
                           id="flagsite.W203")] if missing else []
