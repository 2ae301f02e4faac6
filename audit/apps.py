from django.apps import AppConfig


class AuditConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "audit"

    def ready(self):
        from audit import auth_changes

        auth_changes.connect()  # privilege changes of users and groups go into the audit chain
