-- Queries of the migration runner (cronstream/pg/migrate.py).

-- migrations_lock --
SELECT pg_advisory_lock(hashtext('cronstream.migrate'))

-- migrations_unlock --
SELECT pg_advisory_unlock(hashtext('cronstream.migrate'))

-- migrations_create_table --
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)

-- migrations_table_exists --
SELECT to_regclass('schema_migrations') IS NOT NULL

-- migrations_applied --
SELECT version, name, checksum FROM schema_migrations ORDER BY version

-- migrations_record --
INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)
