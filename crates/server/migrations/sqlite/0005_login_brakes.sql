-- Failed sign-ins, counted per key (a user name's keyed tag, or a client address) in the
-- database, so that every server process brakes the same attacker: the key's theoretical
-- arrival time (GCRA) and the end of its wait, both Unix ms.
CREATE TABLE login_brakes (
    brake_key        TEXT PRIMARY KEY,
    tat_ms           BIGINT NOT NULL,
    blocked_until_ms BIGINT NOT NULL
);
