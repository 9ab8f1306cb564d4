-- Imprint management server schema on PostgreSQL: the same tables, columns and constraints as
-- the SQLite schema after its migration 0003 (migrations/sqlite), in PostgreSQL's types.
-- Times are Unix milliseconds (BIGINT); sealed secrets are BYTEA.

-- Table 700: key identifier -> pre-write key (sealed under the key-encryption key).
CREATE TABLE pre_write_keys (
    key_id     BIGINT PRIMARY KEY,
    key_sealed BYTEA NOT NULL,
    created_ms BIGINT NOT NULL
);

-- Table 500: product code -> key identifier of its current pre-write key.
CREATE TABLE product_codes (
    product_code TEXT PRIMARY KEY,
    key_id       BIGINT NOT NULL REFERENCES pre_write_keys (key_id)
);

CREATE TABLE factories (
    factory_id TEXT PRIMARY KEY,
    name       TEXT NOT NULL
);

-- Table 702: apparatus ID, pass phrase (sealed), key identifier, and where the entry is.
CREATE TABLE auth_info (
    apparatus_id TEXT PRIMARY KEY,
    pass_sealed  BYTEA NOT NULL,
    key_id       BIGINT NOT NULL REFERENCES pre_write_keys (key_id),
    state        TEXT NOT NULL CHECK (state IN ('unissued', 'issued', 'installed')),
    factory_id   TEXT REFERENCES factories (factory_id),
    product_code TEXT REFERENCES product_codes (product_code),
    created_seq  BIGINT NOT NULL
);
CREATE INDEX auth_info_pool ON auth_info (key_id, state, created_seq);

CREATE TABLE server_keys (
    name       TEXT PRIMARY KEY,
    key_sealed BYTEA NOT NULL
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

-- Table 708: what a factory receives. product_serial is empty until installed; nonce_sealed
-- is the record's issue nonce, sealed at rest, for checking its receipt.
CREATE TABLE factory_records (
    apparatus_id   TEXT PRIMARY KEY REFERENCES auth_info (apparatus_id),
    sealed         BYTEA NOT NULL,
    key_id         BIGINT NOT NULL,
    product_serial TEXT,
    factory_id     TEXT NOT NULL REFERENCES factories (factory_id),
    product_code   TEXT NOT NULL,
    lease_id       TEXT REFERENCES leases (lease_id),
    issued_ms      BIGINT NOT NULL,
    nonce_sealed   BYTEA
);
CREATE INDEX factory_records_open ON factory_records (factory_id, product_serial);
CREATE INDEX factory_records_lease ON factory_records (lease_id);

-- Table 704: installed devices. Holds the conversion value (sealed), never the pass phrase.
CREATE TABLE installed_devices (
    apparatus_id      TEXT PRIMARY KEY REFERENCES auth_info (apparatus_id),
    conversion_sealed BYTEA NOT NULL,
    product_serial    TEXT NOT NULL UNIQUE,
    factory_id        TEXT NOT NULL,
    technician        TEXT NOT NULL,
    station           TEXT NOT NULL,
    receipt           TEXT NOT NULL,
    installed_ms      BIGINT NOT NULL,
    revoked_ms        BIGINT
);

CREATE TABLE quotas (
    factory_id   TEXT NOT NULL REFERENCES factories (factory_id),
    product_code TEXT NOT NULL REFERENCES product_codes (product_code),
    quota_limit  BIGINT NOT NULL,
    used         BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (factory_id, product_code)
);

CREATE TABLE users (
    username      TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'technician', 'auditor')),
    factory_id    TEXT REFERENCES factories (factory_id)
);

-- Session tokens are stored as SHA-256 hashes: a database leak does not hand out sessions.
CREATE TABLE sessions (
    token_hash BYTEA PRIMARY KEY,
    username   TEXT NOT NULL REFERENCES users (username),
    expires_at BIGINT NOT NULL
);

-- Authentication challenges: random, single use, short-lived.
CREATE TABLE challenges (
    challenge    BYTEA PRIMARY KEY,
    apparatus_id TEXT NOT NULL,
    expires_at   BIGINT NOT NULL
);

-- The audit log: append-only, each entry hashes the previous one.
CREATE TABLE audit_log (
    seq       BIGINT PRIMARY KEY,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    detail    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL,
    at_ms     BIGINT NOT NULL
);

CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('entry_seq', 0);
