-- Scan-job queries (schedulers/scanner.py). {table}, {key}, {flag}, {watermark} and
-- {key_type} are filled with identifiers validated and quoted at load time, or with the
-- key column's type as the catalog names it; values always travel as $n parameters.

-- scan_column_type --
SELECT format_type(a.atttypid, a.atttypmod)
FROM pg_attribute AS a
WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped

-- scan_flag_page --
SELECT t.{key} AS key, t.{key}::text AS key_text, t.xmin::text::bigint AS version,
       to_jsonb(t) AS row
FROM {table} AS t
WHERE t.{flag} AND ($2::{key_type} IS NULL OR t.{key} > $2::{key_type})
ORDER BY t.{key}
LIMIT $1

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
       to_jsonb(t) AS row
FROM {table} AS t
WHERE t.{watermark} < pg_snapshot_xmin(pg_current_snapshot())
  AND ($2::text IS NULL OR (t.{watermark}, t.{key}) > ($2::text::xid8, $3::text::{key_type}))
ORDER BY t.{watermark}, t.{key}
LIMIT $1

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
