-- Demo tables for `make run`: customers found by a flag, orders by a transaction-id
-- watermark. Applied with psql; safe to run again.
CREATE TABLE IF NOT EXISTS demo_customers (
    id          integer PRIMARY KEY,
    name        text NOT NULL,
    tier        text NOT NULL DEFAULT 'free',
    needs_sync  boolean NOT NULL DEFAULT true
);

CREATE TABLE IF NOT EXISTS demo_orders (
    id           integer PRIMARY KEY,
    customer_id  integer NOT NULL,
    total_cents  integer NOT NULL,
    status       text NOT NULL DEFAULT 'new',
    changed_xid  xid8 NOT NULL DEFAULT pg_current_xact_id()
);

CREATE OR REPLACE TRIGGER demo_orders_changed
BEFORE INSERT OR UPDATE ON demo_orders
FOR EACH ROW EXECUTE FUNCTION cronstream_set_changed_xid();

-- Flag a customer again whenever the application changes it, and say so.
CREATE OR REPLACE FUNCTION demo_customers_flag() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.needs_sync IS NOT DISTINCT FROM OLD.needs_sync THEN
        NEW.needs_sync := true;
        PERFORM pg_notify('demo_customers_changed', NEW.id::text);
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER demo_customers_flagged
BEFORE UPDATE ON demo_customers
FOR EACH ROW EXECUTE FUNCTION demo_customers_flag();

INSERT INTO demo_customers (id, name, tier)
SELECT n, 'customer ' || n, CASE WHEN n % 3 = 0 THEN 'pro' ELSE 'free' END
FROM generate_series(1, 50) AS n
ON CONFLICT DO NOTHING;

INSERT INTO demo_orders (id, customer_id, total_cents)
SELECT n, 1 + n % 50, 100 * n FROM generate_series(1, 100) AS n
ON CONFLICT DO NOTHING;
