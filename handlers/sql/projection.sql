-- The built-in projection (handlers/projection.py).

-- projection_upsert --
-- Keeps the newest state per (entity, key): by version where both sides have one,
-- by occurred_at otherwise. An older event never overwrites a newer row, and a delete
-- is a row marked deleted, so an older event cannot bring it back either.
INSERT INTO entity_projection AS p (entity, key, version, occurred_at, payload, event_id, source,
                                    deleted)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::timestamptz[], $5::jsonb[],
                     $6::text[], $7::text[], $8::boolean[])
ON CONFLICT (entity, key) DO UPDATE
SET version = EXCLUDED.version,
    occurred_at = EXCLUDED.occurred_at,
    payload = EXCLUDED.payload,
    event_id = EXCLUDED.event_id,
    source = EXCLUDED.source,
    deleted = EXCLUDED.deleted,
    updated_at = now()
WHERE CASE
        WHEN EXCLUDED.version IS NOT NULL AND p.version IS NOT NULL
            THEN EXCLUDED.version >= p.version
        ELSE EXCLUDED.occurred_at >= p.occurred_at
      END
