-- mfad schema v10 (SQLite): users provisioned from a directory, and group policy rules.
-- directory: the [[directory.*]] name that provisioned the user (NULL: a local user);
-- display_name, profile_email: profile data as the directory last told it (never a
-- security email); groups: a JSON list of the directory's groups at the last sign-in.
ALTER TABLE users ADD COLUMN directory TEXT;
ALTER TABLE users ADD COLUMN display_name TEXT;
ALTER TABLE users ADD COLUMN profile_email TEXT;
ALTER TABLE users ADD COLUMN groups TEXT NOT NULL DEFAULT '[]';
CREATE INDEX users_directory ON users(directory) WHERE directory IS NOT NULL;

-- Ordered rules on top of the global policy: the first that matches wins. NULL fields keep
-- the global value; match lists are JSON (empty: any).
CREATE TABLE policy_rules (
    position        INTEGER PRIMARY KEY,
    name            TEXT    NOT NULL UNIQUE,
    match_groups    TEXT    NOT NULL DEFAULT '[]',
    match_clients   TEXT    NOT NULL DEFAULT '[]',
    mfa_required    TEXT,
    allowed_methods TEXT,
    remember_device INTEGER,
    remember_days   INTEGER,
    updated_at      REAL    NOT NULL
);
