import logging

from django.apps import AppConfig

security_logger = logging.getLogger("flagsite.security")


def _login_failed(sender, credentials=None, request=None, **kwargs):
    """Failed session logins (admin, pages): who and from where, never the password (Django has
    already replaced sensitive credentials; only the username is read here)."""
    username = (credentials or {}).get("username", "")
    ip = request.META.get("REMOTE_ADDR") if request is not None else None
    security_logger.warning("authentication failed: login username=%r ip=%s", str(username)[:150], ip)


class OpsConfig(AppConfig):
    name = "flagsite.ops"
    label = "ops"
    verbose_name = "Operations"

    def ready(self):
        from django.contrib.auth.signals import user_login_failed

        user_login_failed.connect(_login_failed, dispatch_uid="flagsite.ops.login_failed")

        from django.core import checks

        from flagsite import sso

        checks.register(sso.check_settings)  # single sign-on's configuration (flagsite/sso.py)
        checks.register(sso.check_mapped_projects, checks.Tags.database)
