from django.apps import AppConfig


class ExperimentsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "experiments"

    def ready(self):
        from experiments import buffers

        buffers.install()  # events and exposures flush with the analytics counters
