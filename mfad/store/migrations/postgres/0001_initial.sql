-- mfad schema v1 (PostgreSQL). Times are UNIX epoch seconds (REAL), UTC.
CREATE TABLE users (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      TEXT    NOT NULL UNIQUE,
    password_hash TEXT,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    DOUBLE PRECISION    NOT NULL,
    updated_at    DOUBLE PRECISION    NOT NULL
);

CREATE TABLE devices (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    method        TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    created_at    DOUBLE PRECISION    NOT NULL,
    confirmed_at  DOUBLE PRECISION,
    last_used_at  DOUBLE PRECISION,
    expires_at    DOUBLE PRECISION,
    sealed_secret TEXT,
    digits        INTEGER,
    period        INTEGER,
    algorithm     TEXT,
    last_step     BIGINT  NOT NULL DEFAULT -1,   -- the TOTP replay guard
    drift         INTEGER NOT NULL DEFAULT 0,
    data          TEXT                           -- method-specific JSON
);
CREATE INDEX devices_user ON devices(user_id);
-- "One of each": at most one TOTP device and one security email per user.
CREATE UNIQUE INDEX devices_single_method ON devices(user_id, method) WHERE method IN ('totp', 'email');

CREATE TABLE user_limits (
    user_id         BIGINT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    failures        INTEGER NOT NULL DEFAULT 0,
    total_failures  INTEGER NOT NULL DEFAULT 0,
    lockouts        INTEGER NOT NULL DEFAULT 0,
    locked_until    DOUBLE PRECISION,
    hard_locked     INTEGER NOT NULL DEFAULT 0,
    last_wrong_hash TEXT,
    updated_at      DOUBLE PRECISION    NOT NULL
);

CREATE TABLE source_limits (
    user_id       BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    source        TEXT    NOT NULL,
    failures      INTEGER NOT NULL DEFAULT 0,
    blocked_until DOUBLE PRECISION,
    updated_at    DOUBLE PRECISION    NOT NULL,
    PRIMARY KEY (user_id, source)
);

CREATE TABLE source_buckets (
    source     TEXT PRIMARY KEY,
    tokens     DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE challenges (
    id_hash    TEXT    PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    purpose    TEXT    NOT NULL,
    methods    TEXT    NOT NULL,
    created_at DOUBLE PRECISION    NOT NULL,
    expires_at DOUBLE PRECISION    NOT NULL,
    tries_left INTEGER NOT NULL,
    source     TEXT,
    protocol   TEXT    NOT NULL,
    consumed   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX challenges_expiry ON challenges(expires_at);

CREATE TABLE remembered (
    series       TEXT    PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash   TEXT    NOT NULL,
    counter      INTEGER NOT NULL,
    label        TEXT    NOT NULL,
    created_at   DOUBLE PRECISION    NOT NULL,
    expires_at   DOUBLE PRECISION    NOT NULL,
    last_used_at DOUBLE PRECISION
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
    updated_at               DOUBLE PRECISION    NOT NULL
);

CREATE TABLE caller_tokens (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         TEXT    NOT NULL UNIQUE,
    role         TEXT    NOT NULL,
    token_hash   TEXT    NOT NULL UNIQUE,
    created_at   DOUBLE PRECISION    NOT NULL,
    revoked      INTEGER NOT NULL DEFAULT 0
);

-- No foreign key: the audit trail outlives the users it mentions.
CREATE TABLE audit (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       DOUBLE PRECISION NOT NULL,
    event    TEXT NOT NULL,
    outcome  TEXT NOT NULL,
    user_id  BIGINT,
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
