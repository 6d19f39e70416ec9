-- Deletes reach the projection (handlers/projection.py): a `*_deleted` event keeps the
-- row, marked deleted with the delete's version and time, so that an older change that
-- arrives late (a create, an update) cannot bring the row back. A newer change (a
-- re-create) clears the mark.
ALTER TABLE entity_projection ADD COLUMN deleted boolean NOT NULL DEFAULT false;
