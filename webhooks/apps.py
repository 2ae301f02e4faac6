from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "webhooks"

    def ready(self):
        from audit.services import follow
        from webhooks.trigger import audit_committed

        follow(audit_committed)
