-- Offline leases: signed bundles of records a station may use through an outage.

-- Server-wide keys (the lease signing key), sealed under the key-encryption key.
CREATE TABLE server_keys (
    name       TEXT PRIMARY KEY,
    key_sealed BLOB NOT NULL
);

CREATE TABLE leases (
    lease_id     TEXT PRIMARY KEY,
    factory_id   TEXT NOT NULL REFERENCES factories (factory_id),
    product_code TEXT NOT NULL,
    issued_at    BIGINT NOT NULL,
    not_after    BIGINT NOT NULL,
    record_count BIGINT NOT NULL,
    expired_at   BIGINT
);

ALTER TABLE factory_records ADD COLUMN lease_id TEXT REFERENCES leases (lease_id);
