"""First run: migrate, demo data, an admin user and one SDK key per environment, printed.

Credentials created here are kept in artifacts/credentials.json (git-ignored, mode 600) so a second
run prints the same ones instead of minting new keys."""

import json
import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from audit.actor import Actor
from flags import services
from flags.models import ApiKey, Environment


class Command(BaseCommand):
    help = "Migrate, load demo data, create an admin user and SDK keys, and print them."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--base-url", default="http://localhost:3001")
        parser.add_argument("--no-demo", action="store_true", help="skip the demo flags and segments")

    def handle(self, *args, username, base_url, no_demo, **options):
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        if not no_demo:
            call_command("load_demo_data", stdout=self.stdout)
        path = settings.BASE_DIR / "artifacts" / "credentials.json"
        saved = json.loads(path.read_text()) if path.exists() else {}

        User = get_user_model()
        password = saved.get("admin", {}).get("password")
        user = User.objects.filter(username=username).first()
        if user is None:
            password = os.environ.get("FLAGSITE_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
            user = User.objects.create_superuser(username=username, email="", password=password)
        elif not (password and user.check_password(password)):
            password = None  # existing account with a password we did not set: leave it alone

        actor = Actor.cli(command="bootstrap")
        keys = {}
        for env in Environment.objects.all():
            raw = saved.get("sdkKeys", {}).get(env.key)
            if raw and ApiKey.objects.filter(key_hash=services.hash_api_key(raw), revoked_at__isnull=True).exists():
                keys[env.key] = raw
            else:
                _, keys[env.key] = services.api_key_create(actor=actor, name=f"{env.key} SDK key (bootstrap)",
                                                            kind="sdk", environment=env)

        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps({"admin": {"username": username, "password": password}, "sdkKeys": keys},
                                   indent=2))
        path.chmod(0o600)

        out = self.stdout.write
        out("")
        out(f"  Admin:     {base_url}/admin/   user {username}   password "
            f"{password or '(unchanged: set earlier)'}")
        for env_key, raw in keys.items():
            out(f"  SDK key {env_key:<12} {raw}")
        out(f"  Try:       curl -s -X POST {base_url}/api/evaluate -H 'Authorization: Bearer "
            f"{keys.get('development', '')}' -H 'Content-Type: application/json' "
            "-d '{\"flagId\": \"new-checkout\", \"userId\": \"user-123\"}'")
        out(f"  (saved in {path.relative_to(settings.BASE_DIR)})")
        out("")
