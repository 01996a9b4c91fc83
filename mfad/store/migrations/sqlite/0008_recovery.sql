-- mfad schema v8 (SQLite): recovery codes.
-- A user's set is a devices row (method 'recovery'): it counts as a method type for
-- lockout_risk, and at most one set exists per user ("one of each").
DROP INDEX devices_single_method;
CREATE UNIQUE INDEX devices_single_method ON devices(user_id, method) WHERE method IN ('totp', 'email', 'recovery');

-- The codes of a set, stored only as an HMAC under the secrets key ("<kid>:<hex>"),
-- bound to the row id. used_at is set once, by a conditional update.
CREATE TABLE recovery_codes (
    id        INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused, like the other ids a MAC binds to
    device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    code_mac  TEXT    NOT NULL DEFAULT '',
    used_at   REAL
);
CREATE INDEX recovery_codes_device ON recovery_codes(device_id);

-- The outbox also carries notices (no code: "a recovery code was used").
ALTER TABLE email_outbox ADD COLUMN kind TEXT NOT NULL DEFAULT 'code';
