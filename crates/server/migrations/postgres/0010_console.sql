-- What the console searches and counts without reading whole tables (docs/portal.md, "The
-- console"). None of it is part of an entry's leaf: `subject` and `station` are read from the
-- entry's own detail. (jsonb refuses the escape \u0000, which a detail may hold: such a detail
-- is left without them.)
-- - `subject`, the unit an entry is about, now for every entry about one unit (a report, a
--   refused report, a lock, a revocation), not only reports; `station`, the station that sent it.
-- - The log by actor and by action, newest first.
-- - Table 704 by time (installs per hour, the index covering the query) and by factory (units
--   installed).
UPDATE audit_log SET subject = (detail::jsonb) ->> 'apparatus_id'
    WHERE subject IS NULL AND position('\u0000' in detail) = 0
      AND jsonb_typeof((detail::jsonb) -> 'apparatus_id') = 'string';
ALTER TABLE audit_log ADD COLUMN station TEXT;
UPDATE audit_log SET station = (detail::jsonb) ->> 'station'
    WHERE position('\u0000' in detail) = 0
      AND jsonb_typeof((detail::jsonb) -> 'station') = 'string';
CREATE INDEX audit_log_station ON audit_log (station, seq) WHERE station IS NOT NULL;
CREATE INDEX audit_log_actor ON audit_log (actor, seq);
CREATE INDEX audit_log_action ON audit_log (action, seq);
-- Refused reports of the last hours, newest first, without reading older ones.
CREATE INDEX audit_log_action_time ON audit_log (action, at_ms);
-- A unit's entries newest first (the subject now names field authentications too, many per unit).
DROP INDEX audit_log_subject;
CREATE INDEX audit_log_subject ON audit_log (subject, seq) WHERE subject IS NOT NULL;
CREATE INDEX installed_devices_time ON installed_devices (installed_ms, factory_id, station);
CREATE INDEX installed_devices_factory ON installed_devices (factory_id);
