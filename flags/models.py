"""Flags domain: fields and constraints only. Every write goes through flags/services.py."""

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

from projects.models import DEFAULT
from projects.scope import ProjectScopedManager


def project_field(related_name):
    """The owning project, by key (projects/models.py); existing rows and unscoped writes: default."""
    return models.ForeignKey("projects.Project", to_field="key", db_column="project_key", default=DEFAULT,
                             on_delete=models.PROTECT, related_name=related_name)

KEY_REGEX = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
key_validator = RegexValidator(
    KEY_REGEX, "Use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit."
)


class Environment(models.Model):
    project = project_field("environments")
    key = models.SlugField(max_length=64)
    name = models.CharField(max_length=128)
    version = models.PositiveBigIntegerField(default=0)
    sort_order = models.PositiveIntegerField(default=0)

    objects = ProjectScopedManager()
    all_objects = models.Manager()

    class Meta:
        ordering = ["sort_order", "key"]
        default_manager_name = "all_objects"
        constraints = [models.UniqueConstraint(fields=["project", "key"], name="unique_environment_key")]

    def __str__(self):
        return self.key


class Flag(models.Model):
    class Kind(models.TextChoices):
        BOOLEAN = "boolean", "Boolean"
        MULTIVARIATE = "multivariate", "Multivariate"

    project = project_field("flags")
    key = models.CharField(max_length=128, validators=[key_validator])
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    tags = models.JSONField(default=list, blank=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.BOOLEAN)
    variants = models.JSONField(default=list, blank=True)
    # engine hashing inputs (docs/rules.md); blank = the engine's defaults (flag key, userId)
    salt = models.CharField(max_length=128, blank=True, default="")
    stickiness = models.CharField(max_length=128, blank=True, default="")
    archived = models.BooleanField(default=False, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ProjectScopedManager()
    all_objects = models.Manager()

    class Meta:
        ordering = ["key"]
        default_manager_name = "all_objects"
        constraints = [models.UniqueConstraint(fields=["project", "key"], name="unique_flag_key")]

    def __str__(self):
        return self.key


class FlagState(models.Model):
    flag = models.ForeignKey(Flag, on_delete=models.CASCADE, related_name="states")
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="flag_states")
    enabled = models.BooleanField(default=False)
    rules = models.JSONField(default=list, blank=True)
    killed = models.BooleanField(default=False)
    killed_reason = models.TextField(blank=True, default="")
    killed_by = models.CharField(max_length=200, blank=True, default="")
    killed_at = models.DateTimeField(null=True, blank=True)
    # a multivariate flag's variant served (with its value) while off here: killed, disabled or no
    # rule matched (docs/rules.md "Off variant"); blank = none (variant and value null)
    off_variant = models.CharField(max_length=128, blank=True, default="")
    version = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["environment__sort_order", "flag__key"]
        constraints = [models.UniqueConstraint(fields=["flag", "environment"], name="unique_flag_state")]

    def __str__(self):
        return self.environment.name  # a state is shown on its flag's page: "Production"


class ApiKey(models.Model):
    class Kind(models.TextChoices):
        SDK = "sdk", "SDK key (one environment: evaluate and snapshot)"
        MANAGEMENT = "management", "Management token (acts as a user)"
        RELAY = "relay", "Relay token (an edge relay: reads snapshots and key hashes, writes counts)"

    # SDK keys: their environment's project; management tokens: the project they are narrowed to
    # (the default project for tokens made before projects; `narrowed` False = every project)
    project = project_field("api_keys")
    narrowed = models.BooleanField(default=False)
    # relay tokens: the environment keys (of `project`) whose snapshots the relay may read; [] = all
    relay_environments = models.JSONField(default=list, blank=True)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    environment = models.ForeignKey(
        Environment, null=True, blank=True, on_delete=models.CASCADE, related_name="api_keys"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="api_keys"
    )
    prefix = models.CharField(max_length=12, db_index=True)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = ProjectScopedManager()
    all_objects = models.Manager()

    class Meta:
        ordering = ["-created_at"]
        default_manager_name = "all_objects"
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(kind="sdk", environment__isnull=False)
                    | models.Q(kind="management", user__isnull=False)
                    | models.Q(kind="relay", environment__isnull=True, user__isnull=True)
                ),
                name="api_key_owner_matches_kind",
            )
        ]

    @property
    def active(self):
        return self.revoked_at is None

    def __str__(self):
        return f"{self.name} ({self.prefix}...)"


class RelayBatch(models.Model):
    """A batch a relay posted to /api/relay/ingest, by its id: a retried batch is applied once."""

    batch_id = models.CharField(max_length=64, unique=True)
    relay_key = models.ForeignKey(ApiKey, null=True, on_delete=models.SET_NULL, related_name="relay_batches")
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self):
        return self.batch_id
