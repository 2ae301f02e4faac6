"""Analytics per project: every rollup and activity row gets its project. Rows counted before
projects belong to the default project; rows of another project were counted under the environment
ref "<project>.<environment>" (projects/scope.py): they move to that project, under the plain key."""

from django.db import migrations, models


def split_refs(apps, schema_editor):
    for name in ("EvaluationRollup", "UniqueUsersRollup"):
        model = apps.get_model("analytics", name)
        for row in list(model.objects.filter(environment__contains=".").only("pk", "environment")):
            project, _, environment = row.environment.rpartition(".")
            model.objects.filter(pk=row.pk).update(project=project, environment=environment)


def join_refs(apps, schema_editor):
    for name in ("EvaluationRollup", "UniqueUsersRollup"):
        model = apps.get_model("analytics", name)
        for row in list(model.objects.exclude(project="default").only("pk", "project", "environment")):
            model.objects.filter(pk=row.pk).update(environment=f"{row.project}.{row.environment}")


class Migration(migrations.Migration):

    dependencies = [
        ('analytics', '0001_initial'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='evaluationrollup',
            name='evaluation_rollup_unique',
        ),
        migrations.RemoveConstraint(
            model_name='uniqueusersrollup',
            name='unique_users_rollup_unique',
        ),
        migrations.RemoveIndex(
            model_name='evaluationrollup',
            name='rollup_flag_period_idx',
        ),
        migrations.RemoveIndex(
            model_name='evaluationrollup',
            name='rollup_period_idx',
        ),
        migrations.RemoveIndex(
            model_name='uniqueusersrollup',
            name='users_flag_period_idx',
        ),
        migrations.AddField(
            model_name='evaluationrollup',
            name='project',
            field=models.CharField(default='default', max_length=64),
        ),
        migrations.AddField(
            model_name='flagactivity',
            name='project',
            field=models.CharField(default='default', max_length=64),
        ),
        migrations.AddField(
            model_name='uniqueusersrollup',
            name='project',
            field=models.CharField(default='default', max_length=64),
        ),
        migrations.AlterField(
            model_name='flagactivity',
            name='flag_key',
            field=models.CharField(max_length=128),
        ),
        migrations.RunPython(split_refs, join_refs),
        migrations.AddIndex(
            model_name='evaluationrollup',
            index=models.Index(fields=['project', 'flag_key', 'granularity', 'period_start'], name='rollup_flag_period_idx'),
        ),
        migrations.AddIndex(
            model_name='evaluationrollup',
            index=models.Index(fields=['project', 'granularity', 'period_start'], name='rollup_period_idx'),
        ),
        migrations.AddIndex(
            model_name='uniqueusersrollup',
            index=models.Index(fields=['project', 'flag_key', 'granularity', 'period_start'], name='users_flag_period_idx'),
        ),
        migrations.AddConstraint(
            model_name='evaluationrollup',
            constraint=models.UniqueConstraint(fields=('project', 'granularity', 'period_start', 'environment', 'flag_key', 'variant', 'enabled'), name='evaluation_rollup_unique'),
        ),
        migrations.AddConstraint(
            model_name='flagactivity',
            constraint=models.UniqueConstraint(fields=('project', 'flag_key'), name='flag_activity_unique'),
        ),
        migrations.AddConstraint(
            model_name='uniqueusersrollup',
            constraint=models.UniqueConstraint(fields=('project', 'granularity', 'period_start', 'environment', 'flag_key'), name='unique_users_rollup_unique'),
        ),
    ]
