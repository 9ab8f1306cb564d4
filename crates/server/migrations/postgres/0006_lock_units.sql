-- Locked units: a product may ask stations to lock each unit after its closed-loop check
-- (protocol Lock), and table 704 keeps when a unit's lock was reported.
ALTER TABLE product_codes ADD COLUMN lock_units BIGINT NOT NULL DEFAULT 0 CHECK (lock_units IN (0, 1));
ALTER TABLE installed_devices ADD COLUMN locked_ms BIGINT;
