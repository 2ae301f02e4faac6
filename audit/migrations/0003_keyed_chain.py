"""Key the chain from its current head on: existing entries keep their plain sha256 hashes (no
entry is rewritten); the head row records, sealed under the audit key, the last of them."""

from django.db import migrations, models

GENESIS = "0" * 64


def seal_boundary(apps, schema_editor):
    from audit.services import keyed_seal

    Head = apps.get_model("audit", "AuditChainHead")
    head, _ = Head.objects.get_or_create(id=1, defaults={"last_hash": GENESIS})
    head.keyed_after_id, head.keyed_after_hash = head.last_entry_id, head.last_hash
    head.keyed_seal = keyed_seal(head.keyed_after_id, head.keyed_after_hash)
    head.save()


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_chain_head")]
    operations = [
        migrations.AddField("auditchainhead", "keyed_after_id", models.BigIntegerField(null=True)),
        migrations.AddField("auditchainhead", "keyed_after_hash", models.CharField(default=GENESIS, max_length=64)),
        migrations.AddField("auditchainhead", "keyed_seal", models.CharField(default="", max_length=64)),
        migrations.RunPython(seal_boundary, migrations.RunPython.noop),
    ]
