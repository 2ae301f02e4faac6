from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from audit.actor import Actor
from projects.commands import add_project_argument, project_scope
from flags import services
from flags.errors import ServiceError


class Command(BaseCommand):
    """An operator's command: it acts as the system, so it may mint a management token for any user
    (services.check_api_key_user); in the admin a non-superuser may mint one only for themselves."""

    help = "Create an API key and print it (only its hash is stored: this is the one time it is shown)."

    def add_arguments(self, parser):
        parser.add_argument("--kind", choices=["sdk", "management", "relay"], required=True)
        parser.add_argument("--environment", help="environment key (SDK keys)")
        parser.add_argument("--user", help="username the token acts as (management tokens)")
        parser.add_argument("--name", help="a label for the key")
        add_project_argument(parser)
        parser.add_argument("--relay-environment", action="append", dest="relay_environments", default=[],
                            help="relay tokens: an environment whose snapshots the relay may read "
                                 "(repeat for several; none: every environment of --project)")
        parser.add_argument("--narrow", action="store_true",
                            help="management tokens: work in --project only (other projects answer 404)")

    def handle(self, *args, project, **options):
        with project_scope(project):
            self.create(**options)

    def create(self, *, kind, environment, user, name, narrow, relay_environments=(), **options):
        account = None
        if user:
            account = get_user_model().objects.filter(username=user).first()
            if account is None:
                raise CommandError(f"Unknown user '{user}'.")
        label = name or (f"{environment} SDK key" if kind == "sdk" else "relay token" if kind == "relay"
                         else f"{user} management token")
        try:
            api_key, raw_key = services.api_key_create(
                actor=Actor.cli(), name=label, kind=kind, environment=environment, user=account, narrowed=narrow,
                relay_environments=relay_environments or None)
        except ServiceError as exc:
            raise CommandError(str(exc))
        self.stdout.write(raw_key)
        self.stderr.write(f"created {kind} key {api_key.prefix}... ({label}); store it now, it is not shown again")
