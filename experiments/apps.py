from django.apps import AppConfig


class ExperimentsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "experiments"

    def ready(self):
        from experiments import buffers, services
        from flags import snapshot

        buffers.install()  # events and exposures flush with the analytics counters
        snapshot.payload_parts["experiments"] = services.running_experiments
        if buffers.experiments_changed not in snapshot.reload_hooks:
            snapshot.reload_hooks.append(buffers.experiments_changed)
