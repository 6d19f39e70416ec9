"""A table with a column of each type the Debezium Postgres connector gives a semantic
type, and the projection it must become: the table as Postgres renders it with
`to_jsonb(row)`, except where the README says cronstream's JSON differs, and why."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

import asyncpg

TABLE = "typed"
# The key is numeric(12,2): the projection's key is its ::text, as a scanner's would be.
CREATE = f"""
CREATE EXTENSION IF NOT EXISTS ltree;
CREATE EXTENSION IF NOT EXISTS hstore;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE {TABLE} (
  id numeric(12,2) PRIMARY KEY, amount numeric(12,2), loose numeric, wide numeric(40,20),
  price money, f4 real, f8 double precision, flag boolean, bit1 bit(1), bits bit(10),
  vbits bit varying(20), txt text, js json, jsb jsonb, doc xml, uid uuid, day date,
  t time, t3 time(3), ttz timetz, ts timestamp, ts3 timestamp(3), tstz timestamptz,
  span interval, raw bytea, pt point, path ltree, hs hstore, ip inet, r int4range,
  mood mood, moods mood[], tsv tsvector, ints int[], texts text[], amounts numeric(12,2)[],
  days date[], uids uuid[], tstzs timestamptz[], docs jsonb[], small smallint, big bigint,
  oid_ oid
);
ALTER TABLE {TABLE} REPLICA IDENTITY FULL;
"""
ROWS = f"""
INSERT INTO {TABLE} VALUES
 (1.00, 123.45, 3.14159265358979323846264338327950288,
  -12345678901234567890.12345678901234567890, 12.34, 1.5, 1e300, true, B'1', B'1010000001',
  B'101', 'hello', '{{"a": [1, 2.50, null]}}', '{{"n": 420, "x": 1.50, "s": "é"}}',
  '<a>b</a>', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-02-29', '12:34:56.789012',
  '12:34:56.789', '12:34:56.5+02', '2024-02-29 12:34:56.789012', '2024-02-29 12:34:56.789',
  '2024-02-29 12:34:56.789012+01', '1 year 2 mons 3 days 04:05:06.78', '\\x00ff10',
  '(1.5,-2.25)', 'a.b.c', 'a=>1, b=>NULL', '192.168.0.1/24', '[1,10)', 'happy',
  '{{sad,happy}}', 'a fat cat', '{{1,2,NULL}}', '{{"x",NULL,"y z"}}', '{{1.50,-2.00,NULL}}',
  '{{2024-01-01,infinity}}', '{{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}}',
  '{{"2024-01-01 00:00:00+00"}}', ARRAY['{{"a": 1}}'::jsonb], -32768, 9223372036854775807, 42),
 (-2.50, -0.01, 'NaN', 0.00000000000000000001, -0.5, 'NaN', '-Infinity', false, B'0',
  B'0000000000', B'', '', 'null', '[]', '<a/>', '00000000-0000-0000-0000-000000000000',
  'infinity', '00:00', '23:59:59.999', '00:00:00+00', 'infinity', '-infinity', '-infinity',
  '-1 days +02:03:00', '', '(0,0)', 'top', '', '::1', 'empty', 'sad', '{{}}', '', '{{}}', '{{}}',
  '{{}}', '{{}}', '{{}}', '{{}}', '{{}}', 0, -9223372036854775808, 0),
 (3.00, NULL, 'Infinity', NULL, NULL, 'Infinity', NULL, NULL, NULL, NULL, NULL, NULL, '"s"',
  '1e400', NULL, NULL, '-infinity', '24:00:00', NULL, NULL, '0044-03-15 12:00 BC', NULL,
  '294276-12-31 23:59:59+00', '1 mon', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (99999.99, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)
"""
ROW_COUNT = 4

# Where cronstream's JSON of a column (schemas on) is not to_jsonb's: the SQL of what it
# is instead, each with its reason (README "Debezium", "Column types").
DIFFERENCES = {
    # Debezium's precise decimal mode cannot carry numeric NaN and infinities: null.
    "loose": "CASE WHEN loose IN ('NaN', 'Infinity', '-Infinity') THEN NULL"
    " ELSE to_jsonb(loose) END",
    "price": "to_jsonb(price::numeric)",  # money: its amount, not its locale's text
    "bit1": "to_jsonb(bit1 = B'1')",  # bit(1) arrives as a boolean
    "vbits": "to_jsonb(lpad(vbits::text, 20, '0'))",  # bit varying: its declared length
    "ttz": "to_jsonb(ttz AT TIME ZONE 'UTC')",  # timetz: in UTC, as Debezium sends it
    # interval: seconds, a month counted as 30.4375 days as Debezium counts it.
    "span": "to_jsonb('PT' || trim_scale((extract(year FROM span) * 12"
    " + extract(month FROM span)) * 2629800 + extract(day FROM span) * 86400"
    " + extract(hour FROM span) * 3600 + extract(minute FROM span) * 60"
    " + extract(second FROM span))::text || 'S')",
    "raw": "to_jsonb(encode(raw, 'base64'))",  # bytes stay base64
    # point: x, y (and wkb, srid)
    "pt": "CASE WHEN pt IS NOT NULL THEN jsonb_build_object('x', pt[0], 'y', pt[1]) END",
    "oid_": "to_jsonb(oid_::bigint)",  # oid: a number
}


def _exact(text: str) -> Any:
    return json.loads(text, parse_float=Decimal)


async def projected_and_expected(
    connection: asyncpg.Connection,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The projection's payloads by key, and each row's expected JSON by its ::text key."""
    overrides = ", ".join(f"'{column}', {sql}" for column, sql in DIFFERENCES.items())
    rows = await connection.fetch(
        f"SELECT id::text AS key, (to_jsonb(tbl) || jsonb_build_object({overrides}))::text AS row"
        f" FROM {TABLE} AS tbl"
    )
    expected = {row["key"]: _exact(row["row"]) for row in rows}
    projected = await connection.fetch(
        "SELECT key, payload::text AS payload FROM entity_projection WHERE entity = $1", TABLE
    )
    return {row["key"]: _exact(row["payload"]) for row in projected}, expected


def differences(projected: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """(projected, expected) by column, where they differ; a point's wkb checked apart."""
    point = projected.get("pt")
    if isinstance(point, dict):
        wkb = base64.b64decode(point.pop("wkb"))
        assert len(wkb) == 21 and wkb[:5] == b"\x01\x01\x00\x00\x00", point  # WKB point
        assert point.pop("srid") is None
    columns = set(projected) | set(expected)
    pairs = {c: (projected.get(c, "<absent>"), expected.get(c, "<absent>")) for c in columns}
    return {c: pair for c, pair in pairs.items() if pair[0] != pair[1]}
