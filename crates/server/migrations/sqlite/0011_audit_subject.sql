-- The unit an audit entry is about (a report's apparatus ID), indexed, so that the proofs of
-- a unit's installation are found without reading the log. Not part of the entry's leaf: it
-- is read from the entry's own detail.
ALTER TABLE audit_log ADD COLUMN subject TEXT;
UPDATE audit_log SET subject = json_extract(detail, '$.apparatus_id')
    WHERE action = 'report' AND json_valid(detail);
CREATE INDEX audit_log_subject ON audit_log (subject) WHERE subject IS NOT NULL;
