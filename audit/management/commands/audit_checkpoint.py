from django.core.management.base import BaseCommand, CommandError

from audit.checkpoints import export_checkpoint


class Command(BaseCommand):
    help = ("Sign a checkpoint of the audit chain (newest entry, its hash, entry count, time) and export it: "
            "FLAGS_AUDIT_CHECKPOINT_FILE, the log, FLAGS_AUDIT_CHECKPOINT_WEBHOOK. Celery beat does it periodically.")

    def add_arguments(self, parser):
        parser.add_argument("--file", help="append to this file instead of FLAGS_AUDIT_CHECKPOINT_FILE")

    def handle(self, *args, file=None, **options):
        result = export_checkpoint(file=file)
        record = result.record
        self.stdout.write(f"checkpoint: entry #{record['entry']}, {record['count']} entries, {record['at']}"
                          + (f" -> {result.file}" if result.file else "")
                          + (f" -> webhook {result.webhook_status}" if result.webhook_status else ""))
        if result.errors:
            raise CommandError("checkpoint not exported to " + "; ".join(result.errors))
