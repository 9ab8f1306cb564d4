-- The audit log as a transparency log (docs/audit.md).
--
-- A business transaction writes its audit entries here, with no order yet; the sequencer moves
-- them, in one transaction per batch, into audit_log (numbered, hash-chained) and into the
-- Merkle tree, and signs a checkpoint of the new size.
--
-- `id` is the rowid without AUTOINCREMENT: an id may come back after its entry was sequenced
-- and deleted, which is harmless (one writer at a time, so ids follow commit order), and a
-- report does not write sqlite_sequence's page too.
CREATE TABLE audit_pending (
    id     INTEGER PRIMARY KEY,
    at_ms  BIGINT NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);

-- Every complete subtree of the RFC 9162 tree over audit_log: 2^level leaves from leaf
-- idx * 2^level (level 0: the leaf hashes). About two rows per entry; a proof reads at most
-- two per level.
CREATE TABLE audit_tree (
    level BIGINT NOT NULL,
    idx   BIGINT NOT NULL,
    hash  BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;

-- The signed checkpoints, one per sequenced batch: the latest is the tree's size.
CREATE TABLE audit_checkpoints (
    size  BIGINT PRIMARY KEY,
    root  BLOB NOT NULL,
    at_ms BIGINT NOT NULL,
    note  TEXT NOT NULL
);

-- How many entries the hash chain held before the tree: the sequencer hashes exactly these
-- into the tree as its first leaves. Any other entry of audit_log that is in no tree was
-- written past the sequencer, and verification reports it.
INSERT INTO counters (name, value) SELECT 'audit_legacy', COALESCE(MAX(seq), 0) FROM audit_log;
