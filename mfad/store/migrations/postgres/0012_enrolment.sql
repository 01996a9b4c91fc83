-- mfad schema v12 (PostgreSQL): one-time enrolment codes and the policy's enrolment_proof.
-- What a user with no device must present before binding the first one at sign-in:
-- 'none' (the password alone, as before), 'access_code' or 'email_code'.
ALTER TABLE policy ADD COLUMN enrolment_proof TEXT NOT NULL DEFAULT 'none';

-- An enrolment session that still owes that proof names it here (NULL: nothing owed).
ALTER TABLE user_sessions ADD COLUMN proof_owed TEXT;

-- A user's enrolment code (one at most: issuing replaces it), stored only as an HMAC under
-- the secrets key ("<kid>:<hex>") bound to the row id. Wrong tries are spent atomically
-- before the comparison; used_at is set once, by a conditional update.
CREATE TABLE enrolment_codes (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    BIGINT  NOT NULL UNIQUE REFERENCES users(id) ON DELETE CASCADE,
    code_mac   TEXT    NOT NULL DEFAULT '',
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    tries_left INTEGER NOT NULL,
    issued_by  TEXT,
    used_at    DOUBLE PRECISION
);
CREATE INDEX enrolment_codes_expiry ON enrolment_codes(expires_at);
