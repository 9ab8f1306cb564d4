-- Pre-write keys held in a PKCS#11 token: the row keeps the key's label in the token and an
-- empty key_sealed; a key in file custody keeps key_sealed and no label.
ALTER TABLE pre_write_keys ADD COLUMN token_label TEXT;
