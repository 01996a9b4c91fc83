-- mfad schema v2 (SQLite): user sessions issued by sign-in (gRPC), stored only as hashes.
CREATE TABLE user_sessions (
    id_hash          TEXT    PRIMARY KEY,            -- SHA-256 of the token; the token is never stored
    user_id          INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    scope            TEXT    NOT NULL,               -- 'full' or 'enrolment'
    caller           TEXT    NOT NULL,               -- the caller the session was issued to
    created_at       REAL    NOT NULL,
    expires_at       REAL    NOT NULL,
    second_factor_at REAL                            -- last second factor completed; NULL = never
);
CREATE INDEX user_sessions_user ON user_sessions(user_id);
CREATE INDEX user_sessions_expiry ON user_sessions(expires_at);
