-- Scheduler support: a NOTIFY when cron_jobs changes (picked up without a restart), the
-- default outbox table, and a trigger function for watermark-mode tables.

CREATE FUNCTION cronstream_notify_jobs_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cronstream_jobs', coalesce(NEW.name, OLD.name));
    RETURN NULL;
END
$$;

CREATE TRIGGER cron_jobs_changed
AFTER INSERT OR UPDATE OR DELETE ON cron_jobs
FOR EACH ROW EXECUTE FUNCTION cronstream_notify_jobs_changed();

-- Outbox mode: write a row here in the transaction that changes your data.
CREATE TABLE outbox (
    id          bigserial   PRIMARY KEY,
    entity      text        NOT NULL,
    key         text        NOT NULL,
    version     bigint,
    payload     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    emitted_at  timestamptz
);
CREATE INDEX outbox_pending ON outbox (id) WHERE emitted_at IS NULL;

-- Watermark mode: a table gets `changed_xid xid8 NOT NULL DEFAULT pg_current_xact_id()`
-- and `CREATE TRIGGER ... BEFORE INSERT OR UPDATE ... FOR EACH ROW EXECUTE FUNCTION
-- cronstream_set_changed_xid()` (INSERT too: a copied row must not keep an old xid).
CREATE FUNCTION cronstream_set_changed_xid() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.changed_xid := pg_current_xact_id();
    RETURN NEW;
END
$$;
