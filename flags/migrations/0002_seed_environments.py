from django.db import migrations

ENVIRONMENTS = [("development", "Development", 0), ("staging", "Staging", 1), ("production", "Production", 2)]


def seed(apps, schema_editor):
    Environment = apps.get_model("flags", "Environment")
    for key, name, order in ENVIRONMENTS:
        Environment.objects.get_or_create(key=key, defaults={"name": name, "sort_order": order})


def unseed(apps, schema_editor):
    apps.get_model("flags", "Environment").objects.filter(key__in=[e[0] for e in ENVIRONMENTS]).delete()


class Migration(migrations.Migration):
    dependencies = [("flags", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
