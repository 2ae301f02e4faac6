from django.db import migrations, models


def seed(apps, schema_editor):
    apps.get_model("projects", "Project").objects.get_or_create(key="default", defaults={"name": "Default"})


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Project",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("key", models.SlugField(max_length=64, unique=True)),
                ("name", models.CharField(max_length=128)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
            ],
            options={"ordering": ["key"]},
        ),
        migrations.RunPython(seed, migrations.RunPython.noop),
    ]
