-- mfad schema v1 (SQLite). Times are UNIX epoch seconds (REAL), UTC.
-- Ids are AUTOINCREMENT so a deleted row's id is never handed out again (as with
-- PostgreSQL identity columns): a stale device id must never address a new device,
-- and the AES-GCM associated data binds a sealed secret to its row id.
CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT    NOT NULL UNIQUE,
    password_hash TEXT,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    REAL    NOT NULL,
    updated_at    REAL    NOT NULL
);

CREATE TABLE devices (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    method        TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    created_at    REAL    NOT NULL,
    confirmed_at  REAL,
    last_used_at  REAL,
    expires_at    REAL,
    sealed_secret TEXT,
    digits        INTEGER,
    period        INTEGER,
    algorithm     TEXT,
    last_step     INTEGER NOT NULL DEFAULT -1,   -- the TOTP replay guard
    drift         INTEGER NOT NULL DEFAULT 0,
    data          TEXT                           -- method-specific JSON
);
CREATE INDEX devices_user ON devices(user_id);
-- "One of each": at most one TOTP device and one security email per user.
CREATE UNIQUE INDEX devices_single_method ON devices(user_id, method) WHERE method IN ('totp', 'email');

CREATE TABLE user_limits (
    user_id         INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    failures        INTEGER NOT NULL DEFAULT 0,
    total_failures  INTEGER NOT NULL DEFAULT 0,
    lockouts        INTEGER NOT NULL DEFAULT 0,
    locked_until    REAL,
    hard_locked     INTEGER NOT NULL DEFAULT 0,
    last_wrong_hash TEXT,
    updated_at      REAL    NOT NULL
);

CREATE TABLE source_limits (
    user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    source        TEXT    NOT NULL,
    failures      INTEGER NOT NULL DEFAULT 0,
    blocked_until REAL,
    updated_at    REAL    NOT NULL,
    PRIMARY KEY (user_id, source)
);

CREATE TABLE source_buckets (
    source     TEXT PRIMARY KEY,
    tokens     REAL NOT NULL,
    updated_at REAL NOT NULL
);

CREATE TABLE challenges (
    id_hash    TEXT    PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    purpose    TEXT    NOT NULL,
    methods    TEXT    NOT NULL,
    created_at REAL    NOT NULL,
    expires_at REAL    NOT NULL,
    tries_left INTEGER NOT NULL,
    source     TEXT,
    protocol   TEXT    NOT NULL,
    consumed   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX challenges_expiry ON challenges(expires_at);

CREATE TABLE remembered (
    series       TEXT    PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash   TEXT    NOT NULL,
    counter      INTEGER NOT NULL,
    label        TEXT    NOT NULL,
    created_at   REAL    NOT NULL,
    expires_at   REAL    NOT NULL,
    last_used_at REAL
);
CREATE INDEX remembered_user ON remembered(user_id);

CREATE TABLE policy (
    id                       INTEGER PRIMARY KEY CHECK (id = 1),
    mfa_required             TEXT    NOT NULL,
    allowed_methods          TEXT    NOT NULL,
    self_service             INTEGER NOT NULL,
    remember_device          INTEGER NOT NULL,
    remember_days            INTEGER NOT NULL,
    sensitive_reauth_seconds INTEGER NOT NULL,
    require_backup_method    INTEGER NOT NULL,
    updated_at               REAL    NOT NULL
);

CREATE TABLE caller_tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT    NOT NULL UNIQUE,
    role         TEXT    NOT NULL,
    token_hash   TEXT    NOT NULL UNIQUE,
    created_at   REAL    NOT NULL,
    revoked      INTEGER NOT NULL DEFAULT 0
);

-- No foreign key: the audit trail outlives the users it mentions.
CREATE TABLE audit (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       REAL NOT NULL,
    event    TEXT NOT NULL,
    outcome  TEXT NOT NULL,
    user_id  INTEGER,
    username TEXT,
    method   TEXT,
    protocol TEXT,
    source   TEXT,
    reason   TEXT,
    actor    TEXT,
    detail   TEXT
);
CREATE INDEX audit_user ON audit(user_id, id);
CREATE INDEX audit_event ON audit(event, id);
