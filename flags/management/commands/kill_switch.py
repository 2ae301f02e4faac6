from django.core.management.base import BaseCommand, CommandError

from audit.actor import Actor
from flags import publish, services
from flags.errors import ServiceError
from flags.selectors import flag_get
from projects.commands import add_project_argument, project_scope


class Command(BaseCommand):
    help = "Kill a flag (evaluates off, reason KILLED) in every environment or the ones named."

    def add_arguments(self, parser):
        parser.add_argument("flag", help="flag key")
        parser.add_argument("--reason", help="why (recorded in the audit log); required to kill, optional to restore")
        parser.add_argument("--environment", "-e", action="append", dest="environments", metavar="ENV",
                            help="environment key; repeat for several (default: all environments)")
        add_project_argument(parser)
        parser.add_argument("--restore", action="store_true", help="undo the kill instead")
        parser.add_argument("--actor", help="who you act for; recorded after your OS user, e.g. \"cli:root as admin\" "
                                             "(default: the OS user alone)")

    def handle(self, *args, project, **options):
        with project_scope(project):
            self.kill(**options)

    def kill(self, *, flag, reason, environments, restore, actor, **options):
        if not restore and not (reason or "").strip():  # a restore needs no reason; a kill does
            raise CommandError("--reason is required to kill a flag (say why; it is recorded in the audit log)")
        try:
            target = flag_get(flag)
            publish.warm_up()  # an emergency's notice leaves right after the commit
            who = Actor.cli(actor)
            if restore:
                states = services.flag_restore(actor=who, flag=target, environments=environments, reason=reason or "")
                verb = "restored"
            else:
                states = services.flag_kill(actor=who, flag=target, reason=reason, environments=environments)
                verb = "killed"
        except ServiceError as exc:
            raise CommandError(str(exc).replace("\n", " "))
        envs = ", ".join(s.environment.key for s in states) or "no environment (none was killed)"
        self.stdout.write(self.style.SUCCESS(f"{flag} {verb} in {envs}"))
