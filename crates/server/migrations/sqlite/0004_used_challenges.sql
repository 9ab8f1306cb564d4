-- Authentication challenges are no longer stored when made: each carries its expiry and a tag
-- under a key derived from the key-encryption key. What is stored is their use: a challenge
-- answered once is kept until it expires, so a second answer finds it.
DROP TABLE challenges;
CREATE TABLE used_challenges (
    challenge  BLOB PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
