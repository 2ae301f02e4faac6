from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from audit.actor import Actor
from flags import services
from flags.errors import ServiceError


class Command(BaseCommand):
    """An operator's command: it acts as the system, so it may mint a management token for any user
    (services.check_api_key_user); in the admin a non-superuser may mint one only for themselves."""

    help = "Create an API key and print it (only its hash is stored: this is the one time it is shown)."

    def add_arguments(self, parser):
        parser.add_argument("--kind", choices=["sdk", "management"], required=True)
        parser.add_argument("--environment", help="environment key (SDK keys)")
        parser.add_argument("--user", help="username the token acts as (management tokens)")
        parser.add_argument("--name", help="a label for the key")

    def handle(self, *args, kind, environment, user, name, **options):
        account = None
        if user:
            account = get_user_model().objects.filter(username=user).first()
            if account is None:
                raise CommandError(f"Unknown user '{user}'.")
        label = name or (f"{environment} SDK key" if kind == "sdk" else f"{user} management token")
        try:
            api_key, raw_key = services.api_key_create(
                actor=Actor.cli(), name=label, kind=kind, environment=environment, user=account)
        except ServiceError as exc:
            raise CommandError(str(exc))
        self.stdout.write(raw_key)
        self.stderr.write(f"created {kind} key {api_key.prefix}... ({label}); store it now, it is not shown again")
