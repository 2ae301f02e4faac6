from django.core.management.base import BaseCommand

from changes import services


class Command(BaseCommand):
    help = ("Apply the scheduled changes now due, each once (what Celery beat and the embedded runner do "
            "every FLAGS_SCHEDULED_CHANGES_INTERVAL seconds); safe to run beside them.")

    def handle(self, *args, **options):
        decided = services.apply_due()
        for change_id, status in decided:
            self.stdout.write(f"#{change_id} {status}")
        self.stdout.write(f"{len(decided)} scheduled change(s) decided")
