"""On PostgreSQL the database itself refuses to change or delete audit entries.

UPDATE is refused except when it only clears foreign keys (ON DELETE SET NULL of a user,
key or agent that was deleted). DELETE is refused unless the transaction has set
``SET LOCAL warden.audit_purge = 'on'`` (see audit.services.audit_purge_allowed), which only
the retention task and organisation deletion do. Other databases rely on the model guards.
"""

from __future__ import annotations

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION warden_audit_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF current_setting('warden.audit_purge', true) = 'on' THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'audit entries are append-only: delete refused'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (NEW.actor_user_id IS NULL OR NEW.actor_user_id = OLD.actor_user_id)
       AND (NEW.actor_key_id IS NULL OR NEW.actor_key_id = OLD.actor_key_id)
       AND (NEW.agent_id IS NULL OR NEW.agent_id = OLD.agent_id)
       AND (to_jsonb(NEW) - 'actor_user_id' - 'actor_key_id' - 'agent_id')
           = (to_jsonb(OLD) - 'actor_user_id' - 'actor_key_id' - 'agent_id') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit entries are append-only: update refused'
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS warden_audit_append_only ON audit_auditentry;
CREATE TRIGGER warden_audit_append_only
    BEFORE UPDATE OR DELETE ON audit_auditentry
    FOR EACH ROW EXECUTE FUNCTION warden_audit_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS warden_audit_append_only ON audit_auditentry;
DROP FUNCTION IF EXISTS warden_audit_append_only();
"""


def create_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_idempotency_key")]

    operations = [migrations.RunPython(create_trigger, drop_trigger)]
