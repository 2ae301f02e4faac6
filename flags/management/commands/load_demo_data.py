"""Demo segments and flags that use every rule type. Idempotent: what already exists is left alone."""

from django.core.management.base import BaseCommand

from audit.actor import Actor
from flags import services
from flags.models import Environment, Flag
from projects.commands import add_project_argument, project_scope
from segments.models import Segment
from segments.services import segment_create

SEGMENTS = [
    {"key": "premium-users", "name": "Premium users", "description": "Seed shorthand: plan equals premium.",
     "conditions": {"plan": "premium"}},
    {"key": "internal-staff", "name": "Internal staff", "description": "Employees, by e-mail domain.",
     "conditions": [{"type": "custom", "field": "email", "operator": "ends_with", "value": ["@flagsite.dev"],
                     "caseInsensitive": True}]},
]

EVERYWHERE = ("development", "staging", "production")

FLAGS = [
    {"key": "new-checkout", "name": "New checkout", "tags": ["checkout", "rollout"],
     "description": "Gradual rollout: half of all users (percentage, Unleash-compatible buckets).",
     "rules": [{"type": "percentage", "operator": "less_than", "value": 50}]},
    {"key": "eu-cookie-banner", "name": "EU cookie banner", "tags": ["compliance"],
     "description": "Geo: visitors from the EU (context.country, else looked up from context.ip).",
     "rules": [{"type": "geo", "operator": "in", "value": ["DE", "FR", "NL", "ES", "IT", "IE", "PL", "SE"]}]},
    {"key": "mobile-redesign", "name": "Mobile redesign", "tags": ["ui"],
     "description": "Device: phones and tablets (context.device, else from the user agent).",
     "rules": [{"type": "device", "operator": "in", "value": ["mobile", "tablet"]}]},
    {"key": "beta-dashboard", "name": "Beta dashboard", "tags": ["beta", "ui"],
     "description": "Segments: premium users, or internal staff, or two named testers.",
     "rules": [{"type": "any", "rules": [
         {"type": "segment", "operator": "in", "value": ["premium-users"]},
         {"type": "segment", "operator": "in", "value": ["internal-staff"]},
         {"type": "user", "operator": "in", "value": ["user-123", "user-456"]},
     ]}]},
    {"key": "dark-mode", "name": "Dark mode", "tags": ["ui"],
     "description": "Custom operators: app version, signup date, locale, and not on the blocked plans.",
     "rules": [{"type": "all", "rules": [
         {"type": "custom", "field": "appVersion", "operator": "semver_gt", "value": "2.0.0"},
         {"type": "custom", "field": "signupDate", "operator": "after", "value": "2023-01-01"},
         {"type": "custom", "field": "locale", "operator": "starts_with", "value": ["en", "de"]},
         {"type": "custom", "field": "age", "operator": "gte", "value": 18},
         {"type": "not", "rule": {"type": "custom", "field": "plan", "operator": "in",
                                  "value": ["suspended", "trial-expired"]}},
     ]}]},
    {"key": "pricing-experiment", "name": "Pricing page A/B test", "tags": ["experiment"],
     "description": "Multivariate: control vs. treatment, 50/50, sticky by userId.",
     "kind": "multivariate",
     "variants": [{"key": "control", "weight": 50, "value": {"price": 9.99, "layout": "classic"}},
                  {"key": "treatment", "weight": 50, "value": {"price": 8.99, "layout": "cards"}}],
     "rules": []},
    {"key": "checkout-upsell", "name": "Checkout upsell", "tags": ["checkout"],
     "description": "Prerequisite: only where new-checkout is on, and only outside the US for now.",
     "rules": [{"type": "flag", "field": "new-checkout", "operator": "enabled"},
               {"type": "geo", "operator": "not_in", "value": ["US"]}]},
    {"key": "search-v2", "name": "Search v2", "tags": ["search", "rollout"],
     "description": "Named users, plus 10% of everyone else, never for bots.",
     "rules": [{"type": "any", "rules": [
         {"type": "user", "operator": "in", "value": ["user-123"]},
         {"type": "percentage", "operator": "less_than", "value": 10},
     ]}, {"type": "device", "operator": "is_not", "value": "bot"}]},
    {"key": "legacy-export", "name": "Legacy export", "tags": ["deprecated"],
     "description": "Disabled everywhere: evaluates off with reason DISABLED.", "enabled": False, "rules": []},
]


class Command(BaseCommand):
    help = "Load demo segments and flags (every rule type). Safe to run again."

    def add_arguments(self, parser):
        add_project_argument(parser)

    def handle(self, *args, project, **options):
        with project_scope(project):
            self.load()

    def load(self):
        actor = Actor.cli(command="demo-data")
        created = 0
        for segment in SEGMENTS:
            if not Segment.objects.filter(key=segment["key"]).exists():
                segment_create(actor=actor, **segment)
                created += 1
        envs = [e.key for e in Environment.objects.all()]
        for spec in FLAGS:
            if Flag.objects.filter(key=spec["key"]).exists():
                continue
            state = {"enabled": spec.get("enabled", True), "rules": spec["rules"]}
            services.flag_create(
                actor=actor, key=spec["key"], name=spec["name"], description=spec["description"],
                tags=spec["tags"], kind=spec.get("kind", "boolean"), variants=spec.get("variants", ()),
                states={env: state for env in envs},
            )
            created += 1
        self.stdout.write(self.style.SUCCESS(
            f"demo data: {created} created, {len(SEGMENTS) + len(FLAGS) - created} already present"))
