-- Scan-job queries (schedulers/scan/). {table}, {key}, {flag}, {watermark} and
-- {key_type} are filled with identifiers validated and quoted at load time, or with the
-- key column's type as the catalog names it; values always travel as $n parameters.

-- scan_table --
-- $1 is the quoted name: to_regclass folds an unquoted name to lower case. The schema
-- is the one the name resolves to: search_path puts pg_catalog first.
SELECT c.oid, n.nspname AS schema
FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass($1)

-- scan_columns --
SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull AS not_null
FROM pg_attribute AS a
WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped

-- scan_flag_page --
-- A NULL key cannot be a keyset position: such rows are counted by scan_flag_null_keys.
SELECT t.{key} AS key, t.{key}::text AS key_text, t.xmin::text::bigint AS version,
       to_json(t) AS row
FROM {table} AS t
WHERE t.{flag} AND t.{key} IS NOT NULL AND ($2::{key_type} IS NULL OR t.{key} > $2::{key_type})
ORDER BY t.{key}
LIMIT $1

-- scan_flag_null_keys --
SELECT count(*) FROM {table} AS t WHERE t.{flag} AND t.{key} IS NULL

-- scan_flag_mark --
-- Only rows still at the version that was emitted: a row changed since keeps its flag
-- and is emitted again, with its new version, by a later scan.
UPDATE {table} AS t SET {flag} = false
FROM unnest($1::{key_type}[], $2::bigint[]) AS u(key, version)
WHERE t.{key} = u.key AND t.xmin::text::bigint = u.version

-- scan_watermark_page --
-- Only rows written by transactions older than every transaction still in flight: one
-- that commits later can never carry a smaller xid, so the watermark never passes it.
SELECT t.{key} AS key, t.{key}::text AS key_text, t.{watermark}::text::bigint AS version,
       to_json(t) AS row
FROM {table} AS t
WHERE t.{watermark} < pg_snapshot_xmin(pg_current_snapshot()) AND t.{key} IS NOT NULL
  AND ($2::text IS NULL OR (t.{watermark}, t.{key}) > ($2::text::xid8, $3::text::{key_type}))
ORDER BY t.{watermark}, t.{key}
LIMIT $1

-- scan_watermark_null_keys --
-- Rows with a NULL key that the watermark has not passed yet ($1: its xid, or NULL).
SELECT count(*) FROM {table} AS t
WHERE t.{key} IS NULL AND t.{watermark} < pg_snapshot_xmin(pg_current_snapshot())
  AND ($1::text IS NULL OR t.{watermark} > $1::text::xid8)

-- scan_watermark_keyless --
-- Whether any row has no key, NULL or empty, passed by the watermark or not: one never
-- emitted, so the record they share (source_row '') stays while one exists.
SELECT EXISTS (SELECT FROM {table} AS t WHERE t.{key} IS NULL OR t.{key}::text = '')

-- scan_watermark_get --
SELECT position FROM scan_watermarks WHERE job = $1

-- scan_watermark_set --
INSERT INTO scan_watermarks (job, position) VALUES ($1, $2)
ON CONFLICT (job) DO UPDATE SET position = EXCLUDED.position, updated_at = now()

-- scan_outbox_page --
SELECT id, entity, key, version, payload
FROM {table}
WHERE emitted_at IS NULL AND id > $2
ORDER BY id
LIMIT $1

-- scan_outbox_mark --
UPDATE {table} SET emitted_at = now() WHERE id = ANY($1::bigint[])

-- scan_rejects_start --
-- When this run began (records it does not see again are stale) and whether the job
-- has any records at all.
SELECT now() AS started, EXISTS (SELECT FROM scan_rejected_rows WHERE job = $1) AS known

-- scan_rejects_record --
-- One row per (job, source row): meeting the same bad row again updates it in place.
INSERT INTO scan_rejected_rows AS r (job, source_row, key, reason, mode, source_table)
SELECT $1, u.source_row, u.key, u.reason, $2, $3
FROM unnest($4::text[], $5::text[], $6::text[]) AS u(source_row, key, reason)
ON CONFLICT (job, source_row) DO UPDATE
SET key = EXCLUDED.key, reason = EXCLUDED.reason, mode = EXCLUDED.mode,
    source_table = EXCLUDED.source_table, times_seen = r.times_seen + 1, last_seen = now()

-- scan_rejects_resolve --
DELETE FROM scan_rejected_rows WHERE job = $1 AND source_row = ANY($2::text[])

-- scan_rejects_sweep --
DELETE FROM scan_rejected_rows WHERE job = $1 AND last_seen < $2
