"""PostgreSQL: audit entries are append-only in the database too. A trigger refuses UPDATE and
DELETE of any row, and TRUNCATE unless the session first says `SET flagsite.audit_truncate =
'allow'` (a deliberate wipe, e.g. the test database's flush between tests; `manage.py flush` by
mistake fails). The table owner can still drop the trigger: the keyed chain and the checkpoints
are what prove tampering (README "Audit threat model"). Other databases: nothing to do."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION audit_entry_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' AND current_setting('flagsite.audit_truncate', true) = 'allow' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'audit entries are append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_entry_append_only BEFORE UPDATE OR DELETE ON audit_auditentry
    FOR EACH ROW EXECUTE FUNCTION audit_entry_append_only();
CREATE TRIGGER audit_entry_no_truncate BEFORE TRUNCATE ON audit_auditentry
    FOR EACH STATEMENT EXECUTE FUNCTION audit_entry_append_only();
"""
DROP = """
DROP TRIGGER IF EXISTS audit_entry_no_truncate ON audit_auditentry;
DROP TRIGGER IF EXISTS audit_entry_append_only ON audit_auditentry;
DROP FUNCTION IF EXISTS audit_entry_append_only();
"""


def run(sql):
    def apply(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, None)  # several statements: no parameters
    return apply


class Migration(migrations.Migration):
    dependencies = [("audit", "0004_actor_user_kept")]
    operations = [migrations.RunPython(run(CREATE), run(DROP))]
