"""Input validation and camelCase output for flags. Serializers validate and shape; never write."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

KEY_REGEX = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
MAX_DESCRIPTION = 10_000  # characters: stored, audited before and after each change, listed with every flag
MAX_TAGS = 100


class Text(serializers.CharField):
    """A string, and only a string (DRF's CharField would turn 5 into "5")."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class Bool(serializers.BooleanField):
    """true or false, and only those (DRF's BooleanField would take "yes", 1, "on")."""

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class StrictSerializer(serializers.Serializer):
    """Refuses unknown fields (a typo like "enabeld" must not be silently ignored).

    ``ignored_fields`` are output-only fields a client may send back from a GET; they are dropped.
    """

    ignored_fields = frozenset()

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = set(data) - set(self.fields) - self.ignored_fields
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in sorted(unknown)})
        return super().to_internal_value(data)


class VariantSerializer(StrictSerializer):
    key = serializers.RegexField(KEY_REGEX)
    weight = serializers.IntegerField(min_value=0, max_value=1_000_000)
    value = serializers.JSONField(required=False, allow_null=True)
    overrides = serializers.ListField(child=serializers.DictField(), required=False)


class StateInputSerializer(StrictSerializer):
    enabled = Bool(required=False)
    rules = serializers.ListField(child=serializers.DictField(), required=False)
    offVariant = Text(max_length=128, required=False, allow_blank=True,
                      help_text="Multivariate flags: the variant served (with its value) while the flag is off "
                                "in this environment (killed, disabled, or no rule matched); blank for none")


class FlagCreateInputSerializer(StrictSerializer):
    key = serializers.RegexField(KEY_REGEX, required=False)
    name = Text(max_length=200)
    description = Text(required=False, allow_blank=True, default="", max_length=MAX_DESCRIPTION)
    tags = serializers.ListField(child=Text(max_length=64), required=False, default=list, max_length=MAX_TAGS)
    kind = serializers.ChoiceField(["boolean", "multivariate"], required=False, default="boolean")
    variants = VariantSerializer(many=True, required=False, default=list)
    salt = Text(max_length=128, required=False, allow_blank=True)
    stickiness = Text(max_length=128, required=False, allow_blank=True)
    environment = Text(required=False)
    enabled = Bool(required=False)
    rules = serializers.ListField(child=serializers.DictField(), required=False)
    offVariant = Text(max_length=128, required=False, allow_blank=True,
                      help_text="Multivariate flags: the variant served (with its value) while the flag is off "
                                "in this environment (killed, disabled, or no rule matched); blank for none")
    states = serializers.DictField(child=StateInputSerializer(), required=False)


class FlagUpdateInputSerializer(StrictSerializer):
    """PUT requires name and enabled (absent optional fields are reset); PATCH takes any subset."""

    ignored_fields = frozenset(
        {"id", "kind", "archived", "createdAt", "updatedAt", "states", "killed", "killedReason",
         "killedBy", "killedAt", "stale"}
    )
    key = Text(required=False)
    name = Text(max_length=200)
    description = Text(allow_blank=True, default="", max_length=MAX_DESCRIPTION)
    tags = serializers.ListField(child=Text(max_length=64), default=list, max_length=MAX_TAGS)
    variants = VariantSerializer(many=True, default=list)
    salt = Text(max_length=128, allow_blank=True, default="")
    stickiness = Text(max_length=128, allow_blank=True, default="")
    environment = Text(required=False)
    enabled = Bool()
    rules = serializers.ListField(child=serializers.DictField(), default=list)
    offVariant = Text(max_length=128, allow_blank=True, default="",
                      help_text="Multivariate flags: the variant served (with its value) while the flag is off "
                                "in this environment (killed, disabled, or no rule matched); blank for none")
    version = serializers.IntegerField(required=False, min_value=0)


class ToggleInputSerializer(StrictSerializer):
    enabled = Bool(required=False, allow_null=True, default=None)


class KillInputSerializer(StrictSerializer):
    reason = Text(max_length=2000)
    environments = serializers.ListField(child=Text(), required=False, allow_empty=False)


class EmptyInputSerializer(StrictSerializer):
    """No fields: an empty body or {} (read anyway, so an oversized or broken body answers 413 / 400)."""


class RestoreInputSerializer(StrictSerializer):
    reason = Text(max_length=2000, required=False, allow_blank=True, default="")
    environments = serializers.ListField(child=Text(), required=False, allow_empty=False)


class FlagStateOutputSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()
    rules = serializers.JSONField()
    offVariant = serializers.CharField(source="off_variant", help_text="Variant served while off; blank for none")
    killed = serializers.BooleanField()
    killedReason = serializers.CharField(source="killed_reason")
    killedBy = serializers.CharField(source="killed_by")
    killedAt = serializers.DateTimeField(source="killed_at", allow_null=True)
    version = serializers.IntegerField()
    updatedAt = serializers.DateTimeField(source="updated_at")


class FlagOutputSerializer(serializers.Serializer):
    """A flag with the selected environment's state inline and every environment under ``states``.

    Needs ``context["environment"]`` and the flag's states prefetched with their environment.
    """

    id = serializers.CharField(source="key")
    key = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField())
    kind = serializers.CharField()
    variants = serializers.JSONField()
    salt = serializers.CharField()
    stickiness = serializers.CharField()
    archived = serializers.BooleanField()
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")
    environment = serializers.CharField(source="selected_state.environment.key")
    enabled = serializers.BooleanField(source="selected_state.enabled")
    rules = serializers.JSONField(source="selected_state.rules")
    offVariant = serializers.CharField(source="selected_state.off_variant",
                                       help_text="Variant served while off; blank for none")
    killed = serializers.BooleanField(source="selected_state.killed")
    killedReason = serializers.CharField(source="selected_state.killed_reason")
    killedBy = serializers.CharField(source="selected_state.killed_by")
    killedAt = serializers.DateTimeField(source="selected_state.killed_at", allow_null=True)
    version = serializers.IntegerField(source="selected_state.version")
    states = serializers.SerializerMethodField()
    stale = serializers.SerializerMethodField()

    @extend_schema_field(serializers.BooleanField())
    def get_stale(self, flag):
        """Not evaluated in any environment for 30 days (marked by the analytics beat task)."""
        if not hasattr(self, "_stale_keys"):  # one query per list, not per flag
            from analytics.selectors import stale_flag_keys

            self._stale_keys = stale_flag_keys()
        return flag.key in self._stale_keys

    @extend_schema_field(serializers.DictField(child=FlagStateOutputSerializer()))
    def get_states(self, flag):
        return {state.environment.key: FlagStateOutputSerializer(state).data for state in flag.states.all()}

    def to_representation(self, flag):
        environment = self.context["environment"]
        flag.selected_state = next(s for s in flag.states.all() if s.environment.key == environment)
        return super().to_representation(flag)


class EvaluationOutputSerializer(serializers.Serializer):
    flagId = serializers.CharField()
    enabled = serializers.BooleanField()
    variant = serializers.CharField(allow_null=True)
    value = serializers.JSONField(allow_null=True)
    reason = serializers.CharField()
    rule = serializers.IntegerField(allow_null=True)
    environment = serializers.CharField()
    version = serializers.IntegerField()


class EvaluateInputSerializer(serializers.Serializer):
    """Documentation only: the hot path validates by hand (see flags.apis.parse_evaluation)."""

    flagId = serializers.CharField()
    userId = serializers.CharField()
    context = serializers.DictField(required=False)


class EvaluateBulkInputSerializer(serializers.Serializer):
    flagIds = serializers.ListField(child=serializers.CharField(), required=False)
    userId = serializers.CharField()
    context = serializers.DictField(required=False)


class EvaluateBulkOutputSerializer(serializers.Serializer):
    environment = serializers.CharField()
    version = serializers.IntegerField()
    flags = serializers.DictField(child=EvaluationOutputSerializer())


# ---- explain: why a user gets what they get (POST /api/flags/{key}/explain) ------------------------

@extend_schema_field(serializers.CharField(allow_null=True))
class UserId(serializers.Field):
    """A user id as evaluation takes it: a string (a number is read as its text, as evaluate does)."""

    default_error_messages = {"invalid": "Expected a string."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (str, int, float)):
            self.fail("invalid")
        return data if isinstance(data, str) else str(data)

    def to_representation(self, value):
        return value


class ExplainInputSerializer(StrictSerializer):
    userId = UserId(required=False, allow_null=True, default=None)
    context = serializers.DictField(required=False, allow_null=True, default=dict)
    environments = serializers.ListField(child=Text(max_length=64), required=False, allow_empty=False,
                                         max_length=100, help_text="Environment keys (default: every environment)")


class RuleTraceSerializer(serializers.Serializer):
    """One rule tried: its validator path, whether it matched, and why (nested rules under `rules`)."""

    path = serializers.CharField(help_text="rules[1].rules[0], or segments.<key>.conditions[0] inside a segment")
    type = serializers.CharField(allow_null=True)
    operator = serializers.CharField(allow_null=True, required=False)
    segment = serializers.CharField(required=False, help_text="On a segment's own node: its key")
    matched = serializers.BooleanField()
    attribute = serializers.CharField(required=False, help_text="What the rule looked at (context field, userId, "
                                      "flag:<prerequisite>)")
    value = serializers.JSONField(required=False, allow_null=True, help_text="The value it saw")
    message = serializers.CharField(help_text="Why, in words")
    variants = serializers.BooleanField(required=False, help_text="The rule carries variants")
    rules = serializers.ListField(child=serializers.DictField(), required=False, help_text="Nested rules tried")


class ExplanationOutputSerializer(EvaluationOutputSerializer):
    decidingRule = serializers.CharField(allow_null=True, help_text="Path of the rule that decided: the failing "
                                         "rule (RULE_MISMATCH) or the matched rule that decided on a match; null "
                                         "when killed, disabled, without rules or not found")
    summary = serializers.CharField()
    rules = RuleTraceSerializer(many=True, help_text="The top-level rules tried, in order")


class ExplainOutputSerializer(serializers.Serializer):
    flagId = serializers.CharField()
    userId = serializers.CharField(allow_null=True)
    archived = serializers.BooleanField(help_text="Archived flags are not evaluated: FLAG_NOT_FOUND everywhere")
    environments = serializers.DictField(child=ExplanationOutputSerializer(),
                                         help_text="Environment key -> its explanation, side by side")
