-- A user an admin disabled: when (Unix ms), or NULL. A disabled user cannot sign in and has
-- no session (disabling ends them).
ALTER TABLE users ADD COLUMN disabled_ms BIGINT;
