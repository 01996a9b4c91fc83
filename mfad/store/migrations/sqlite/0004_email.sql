-- mfad schema v4 (SQLite): security email codes and the outbox that mails them.
-- A pending or active security email is a devices row (method 'email', address in data).

-- One-time codes, stored only as an HMAC under the secrets key ("<kid>:<hex>").
CREATE TABLE email_codes (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    purpose    TEXT    NOT NULL,              -- signin | binding | verify
    ref        TEXT    NOT NULL DEFAULT '',   -- challenge id hash (signin) or device id (binding)
    code_mac   TEXT    NOT NULL DEFAULT '',
    created_at REAL    NOT NULL,
    expires_at REAL    NOT NULL,
    tries_left INTEGER NOT NULL,
    state      TEXT    NOT NULL DEFAULT 'live', -- live | used | spent | superseded
    used_at    REAL
);
CREATE INDEX email_codes_user ON email_codes(user_id, created_at);
-- A new code kills the previous one: at most one live code per user.
CREATE UNIQUE INDEX email_codes_one_live ON email_codes(user_id) WHERE state = 'live';

-- Messages waiting for (or done with) the mail server. The body holds the clear
-- code, so it is sealed (AES-GCM, AAD "email_outbox.sealed_body:<id>") and set to
-- NULL as soon as the message is settled.
CREATE TABLE email_outbox (
    id              INTEGER PRIMARY KEY,
    code_id         INTEGER REFERENCES email_codes(id) ON DELETE SET NULL,
    user_id         INTEGER REFERENCES users(id) ON DELETE CASCADE,
    sealed_body     TEXT,
    state           TEXT    NOT NULL DEFAULT 'queued', -- queued | sent | failed | expired | cancelled
    created_at      REAL    NOT NULL,
    expires_at      REAL    NOT NULL,
    next_attempt_at REAL    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    claimed_until   REAL,
    claimed_by      TEXT,
    finished_at     REAL,
    last_error      TEXT
);
CREATE INDEX email_outbox_due ON email_outbox(next_attempt_at) WHERE state = 'queued';
CREATE INDEX email_outbox_finished ON email_outbox(finished_at) WHERE state <> 'queued';
