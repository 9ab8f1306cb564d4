-- Witnesses' cosignatures of the audit log's checkpoints (docs/audit.md, "Witnesses"): one
-- line per witness and checkpoint size, checked against the witness's key before it is kept,
-- with the signed checkpoint it cosigns (kept apart from audit_checkpoints, which the log's
-- operator could rewrite).
CREATE TABLE audit_cosignatures (
    witness TEXT NOT NULL,
    size    BIGINT NOT NULL,
    checkpoint TEXT NOT NULL,
    line    TEXT NOT NULL,
    PRIMARY KEY (witness, size)
);
