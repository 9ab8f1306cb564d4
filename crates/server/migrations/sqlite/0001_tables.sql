-- Imprint management server schema. Portable SQL (SQLite now, PostgreSQL later): no
-- AUTOINCREMENT, no SQLite-only types; BLOB holds sealed secrets, TEXT identifiers.

-- Table 700: key identifier -> pre-write key (sealed under the key-encryption key).
CREATE TABLE pre_write_keys (
    key_id      BIGINT PRIMARY KEY,
    key_sealed  BLOB NOT NULL,
    created_at  TEXT NOT NULL
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
    pass_sealed  BLOB NOT NULL,
    key_id       BIGINT NOT NULL REFERENCES pre_write_keys (key_id),
    state        TEXT NOT NULL CHECK (state IN ('unissued', 'issued', 'installed')),
    factory_id   TEXT REFERENCES factories (factory_id),
    product_code TEXT REFERENCES product_codes (product_code),
    created_seq  BIGINT NOT NULL
);
CREATE INDEX auth_info_pool ON auth_info (key_id, state, created_seq);

-- Table 708: what a factory receives: apparatus ID, sealed record, product serial (empty until
-- installed), key identifier.
CREATE TABLE factory_records (
    apparatus_id   TEXT PRIMARY KEY REFERENCES auth_info (apparatus_id),
    sealed         BLOB NOT NULL,
    key_id         BIGINT NOT NULL,
    product_serial TEXT,
    factory_id     TEXT NOT NULL REFERENCES factories (factory_id),
    product_code   TEXT NOT NULL,
    issued_at      TEXT NOT NULL
);
CREATE INDEX factory_records_open ON factory_records (factory_id, product_serial);

-- Table 704: installed devices. Holds the conversion value (sealed), never the pass phrase.
CREATE TABLE installed_devices (
    apparatus_id      TEXT PRIMARY KEY REFERENCES auth_info (apparatus_id),
    conversion_sealed BLOB NOT NULL,
    product_serial    TEXT NOT NULL UNIQUE,
    factory_id        TEXT NOT NULL,
    technician        TEXT NOT NULL,
    station           TEXT NOT NULL,
    receipt           TEXT NOT NULL,
    installed_at      TEXT NOT NULL,
    revoked_at        TEXT
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
    token_hash BLOB PRIMARY KEY,
    username   TEXT NOT NULL REFERENCES users (username),
    expires_at BIGINT NOT NULL
);

-- Authentication challenges: random, single use, short-lived.
CREATE TABLE challenges (
    challenge    BLOB PRIMARY KEY,
    apparatus_id TEXT NOT NULL,
    expires_at   BIGINT NOT NULL
);

-- The audit log: append-only, each entry hashes the previous one.
CREATE TABLE audit_log (
    seq       BIGINT PRIMARY KEY,
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    detail    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
