from django.core.management.base import BaseCommand, CommandError

from audit.chain import verify_chain
from audit.checkpoints import CheckpointFileError, read_checkpoints


class Command(BaseCommand):
    help = ("Walk the audit chain under the audit key (and against signed checkpoints with --checkpoints); "
            "exit non-zero naming the first broken entry.")

    def add_arguments(self, parser):
        parser.add_argument("--checkpoints", metavar="FILE",
                            help="checkpoint file (JSON lines, manage.py audit_checkpoint); every checkpoint "
                                 "in it must match the chain: catches truncation and rewrites below them")

    def handle(self, *args, checkpoints=None, **options):
        try:
            records = read_checkpoints(checkpoints) if checkpoints else ()
        except CheckpointFileError as exc:
            raise CommandError(str(exc))
        report = verify_chain(checkpoints=records)
        if not report.ok:
            where = f" at entry #{report.broken_entry_id}" if report.broken_entry_id is not None else ""
            raise CommandError(f"audit chain broken{where}: {report.problem} "
                               f"({report.checked} entries verified before it)")
        if report.keyed_after_id is None:
            keyed = "all keyed"
        else:
            keyed = (f"{report.unkeyed} unkeyed sha256 entries up to #{report.keyed_after_id} from before keying, "
                     f"keyed after it")
        if records:
            newest = report.newest_checkpoint
            against = (f"{report.checkpoints} checkpoints match (newest: entry #{newest['entry']}, "
                       f"{newest['count']} entries, {newest['at']})")
        else:
            against = "no checkpoints checked (--checkpoints FILE also catches truncation)"
        self.stdout.write(self.style.SUCCESS(f"audit chain OK: {report.checked} entries verified ({keyed}); {against}"))
