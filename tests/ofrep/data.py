"""The flags every OFREP test evaluates, built through flags.services in every environment."""

from audit.actor import Actor
from flags import services
from flags.models import Environment

SYSTEM = Actor.system("ofrep-tests")
COLORS = [{"key": "blue", "weight": 50, "value": "#0000ff"}, {"key": "green", "weight": 50, "value": "#00ff00"}]


def build_flags():
    envs = list(Environment.objects.values_list("key", flat=True))

    def flag(key, *, enabled=True, rules=None, **kwargs):
        return services.flag_create(actor=SYSTEM, key=key, name=key.replace("-", " ").title(),
                                    states={env: {"enabled": enabled, "rules": rules or []} for env in envs},
                                    **kwargs)

    flag("dark-mode")                                                      # STATIC, true
    flag("geo-us", rules=[{"type": "geo", "operator": "in", "value": ["US"]}])  # TARGETING_MATCH / DEFAULT
    flag("off-flag", enabled=False)                                         # DISABLED, false
    killed = flag("killed-flag")
    services.flag_kill(actor=SYSTEM, flag=killed, reason="incident")        # DISABLED (engine: KILLED)
    flag("rollout", rules=[{"type": "percentage", "operator": "less_than", "value": 50}])  # needs a user
    flag("button-color", kind="multivariate", variants=COLORS)             # SPLIT on a string, needs a user
    flag("limits", kind="multivariate", variants=[{"key": "gold", "weight": 1, "value": {"max": 10, "tier": "gold"}}])
    flag("ratio", kind="multivariate", variants=[{"key": "quarter", "weight": 1, "value": 0.25}])
    flag("retries", kind="multivariate", variants=[{"key": "three", "weight": 1, "value": 3}])
    flag("premium-theme", kind="multivariate", rules=[{"type": "custom", "field": "plan", "operator": "equals",
                                                      "value": "premium"}],
         variants=[{"key": "gold", "weight": 1, "value": "gold-theme"}])   # off for non-premium: no value
    flag("theme-off", kind="multivariate", enabled=False, variants=[{"key": "dark", "weight": 1, "value": "dark"}])
