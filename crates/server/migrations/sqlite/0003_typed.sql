-- Typed columns, and what several writers need.
-- - Times are integers (Unix milliseconds), in columns named *_ms; they were text.
-- - The issue nonce of each factory record is kept, sealed at rest, so that checking a receipt
--   is one HMAC instead of opening the server's own record. Records issued before this have
--   none, and are checked by opening them, as before.
-- - The entry sequence is a counter row: writers take numbers from it under the database's
--   lock instead of reading MAX() and racing.

ALTER TABLE pre_write_keys ADD COLUMN created_ms BIGINT NOT NULL DEFAULT 0;
UPDATE pre_write_keys SET created_ms = CAST(created_at AS INTEGER);
ALTER TABLE pre_write_keys DROP COLUMN created_at;

ALTER TABLE factory_records ADD COLUMN issued_ms BIGINT NOT NULL DEFAULT 0;
UPDATE factory_records SET issued_ms = CAST(issued_at AS INTEGER);
ALTER TABLE factory_records DROP COLUMN issued_at;
ALTER TABLE factory_records ADD COLUMN nonce_sealed BLOB;

ALTER TABLE installed_devices ADD COLUMN installed_ms BIGINT NOT NULL DEFAULT 0;
UPDATE installed_devices SET installed_ms = CAST(installed_at AS INTEGER);
ALTER TABLE installed_devices DROP COLUMN installed_at;
ALTER TABLE installed_devices ADD COLUMN revoked_ms BIGINT;
UPDATE installed_devices SET revoked_ms = CAST(revoked_at AS INTEGER) WHERE revoked_at IS NOT NULL;
ALTER TABLE installed_devices DROP COLUMN revoked_at;

ALTER TABLE audit_log ADD COLUMN at_ms BIGINT NOT NULL DEFAULT 0;
UPDATE audit_log SET at_ms = CAST(at AS INTEGER);
ALTER TABLE audit_log DROP COLUMN at;

CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) SELECT 'entry_seq', COALESCE(MAX(created_seq), 0) FROM auth_info;
CREATE INDEX factory_records_lease ON factory_records (lease_id);
